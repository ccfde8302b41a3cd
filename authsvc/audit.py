"""The audit trail: one auth_events row per thing that happened to an account."""

import contextlib

from flask import g, has_request_context, request

from authsvc.extensions import db
from authsvc.models import AuthEvent
from authsvc.telemetry import count_event

EVENTS = (
    "signup",
    "signin",
    "signin_failed",
    "signin_disabled",
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
    "user_created",
    "key_rotated",
    "key_retired",
    "sessions_purged",
    "mfa_enrollment_started",
    "mfa_enabled",
    "mfa_disabled",
    "mfa_reset",
    "mfa_challenged",
    "mfa_failed",
    "mfa_password_failed",
    "signin_mfa",
    "recovery_code_used",
    "recovery_codes_regenerated",
    "verification_sent",
    "email_verified",
    "password_reset_requested",
    "password_reset",
    "email_change_requested",
    "email_change_failed",
    "email_changed",
    "mail_given_up",
    "signin_passkey",
    "passkey_added",
    "passkey_removed",
    "passkey_renamed",
    "passkey_refused",
    "passkey_clone_suspected",
    "signin_oauth",
    "signup_oauth",
    "identity_linked",
    "identity_unlinked",
    "pre_registration_removed",
    "oauth_access_denied",
    "oauth_provider_error",
    "oauth_provider_unavailable",
    "oauth_account_exists",
    "oauth_email_missing",
    "oauth_invalid_grant",
    "oauth_identity_taken",
    "oauth_forbidden",
    "client_created",
    "client_deleted",
    "clients_listed",
)


def client_address():
    """Return the client's address (after any trusted proxies), at most 64 characters."""
    return (request.remote_addr or "")[:64] or None


def client_agent():
    """Return the printable part of the User-Agent as the client sent it, at most 512 characters.

    WSGI hands headers over decoded as Latin-1; bytes that form valid UTF-8
    (what clients send) are decoded as such, so "é" stays "é", not "Ã©".
    """
    agent = request.user_agent.string
    with contextlib.suppress(UnicodeError):  # not UTF-8: the Latin-1 reading stays
        agent = agent.encode("latin-1").decode("utf-8")
    agent = "".join(c for c in agent if c.isprintable())
    return agent[:512] or None


def record(event, user_id=None, session_id=None, key_id=None, client_id=None):
    """Add an event to the current transaction; the caller's commit writes it.

    An event made in a request comes from the API; one made by the mail
    relay's thread says so (it sets g.audit_source); any other comes from an
    operator's `flask --app authsvc ...` command.
    """
    assert event in EVENTS, event
    row = AuthEvent(
        event=event, user_id=user_id, session_id=session_id, key_id=key_id, client_id=client_id
    )
    if has_request_context():
        row.source = "api"
        row.ip, row.user_agent = client_address(), client_agent()
        row.request_id = g.get("request_id")
    else:
        row.source = g.get("audit_source", "cli")
    db.session.add(row)
    count_event(event)
