"""The audit trail: one auth_events row per thing that happened to an account."""

from flask import g, has_request_context, request

from authsvc.extensions import db
from authsvc.models import AuthEvent
from authsvc.telemetry import count_event

EVENTS = (
    "signup",
    "signin",
    "signin_failed",
    "signout",
    "refresh",
    "refresh_reuse",
    "rate_limited",
    "session_revoked",
    "signout_everywhere",
    "password_changed",
    "password_change_failed",
    "account_deleted",
    "user_updated",
    "user_deleted",
    "verification_sent",
    "email_verified",
    "password_reset_requested",
    "password_reset",
    "email_change_requested",
    "email_change_failed",
    "email_changed",
    "mail_given_up",
)


def client_address():
    """Return the client's address (after any trusted proxies), at most 64 characters."""
    return (request.remote_addr or "")[:64] or None


def client_agent():
    """Return the printable part of the User-Agent, at most 512 characters."""
    agent = "".join(c for c in request.user_agent.string if c.isprintable())
    return agent[:512] or None


def record(event, user_id=None, session_id=None):
    """Add an event to the current transaction; the caller's commit writes it."""
    assert event in EVENTS, event
    row = AuthEvent(event=event, user_id=user_id, session_id=session_id)
    if has_request_context():
        row.ip, row.user_agent = client_address(), client_agent()
        row.request_id = g.get("request_id")
    db.session.add(row)
    count_event(event)
