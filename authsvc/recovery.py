"""Blueprint "recovery": password reset, verified addresses and email change, by mail.

The flows are functions the JSON views and the HTML pages (pages.py) share;
the relay calls prepare_reset() to turn a reset request into a reset mail.
"""

import sqlalchemy as sa
from flask import current_app
from flask_jwt_extended import current_user
from sqlalchemy.exc import IntegrityError

from authsvc import audit, mail, mailtokens
from authsvc.bearer import token_required
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import (
    limit_email_change,
    limit_reset_request,
    limit_verification_resend,
    take_mail_quota,
)
from authsvc.models import MailOutbox, User
from authsvc.parsing import Blueprint
from authsvc.passwords import hash_password, refuse_weak_password, verify_password
from authsvc.schemas import EmailChangeSchema, EmailSchema, ResetConfirmSchema, TokenSchema
from authsvc.tokens import revoke_sessions_of

bp = Blueprint(
    "recovery", __name__, description="Password reset, verified addresses, email change."
)

RESET_REQUEST = "password_reset_request"
INVALID_TOKEN = Problem(
    400, "invalid_token", "This link is unknown, used or expired; ask for a new one."
)
EMAIL_TAKEN = Problem(409, "email_taken", "An account with this email already exists.")
outbox = MailOutbox.__table__


def link(setting, token):
    """Return a link from PASSWORD_RESET_URL or EMAIL_VERIFY_URL, never from the Host header."""
    return current_app.config[setting].replace("{token}", token)


def lifetime(setting):
    """Say how long a mailed token lives, in words: '60 minutes', '24 hours'."""
    seconds = current_app.config[setting]
    if seconds % 3600 == 0 and seconds >= 7200:
        return f"{seconds // 3600} hours"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def send_verification(user):
    """Mail a new verification link to a user's address (nothing under MAIL_URL=none)."""
    if not mail.enabled():
        return
    token = mailtokens.issue(user.id, "verify_email", user.email)
    mail.queue(
        "verify_email",
        user.email,
        link=link("EMAIL_VERIFY_URL", token),
        valid_for=lifetime("EMAIL_VERIFY_TTL"),
    )


def refuse_unverified(user):
    """Refuse the signin of an unverified address, mailing it a new link within the limit."""
    if mail.enabled() and take_mail_quota(user.email):
        send_verification(user)
        audit.record("verification_sent", user.id)
        db.session.commit()
    raise Problem(
        403,
        "email_not_verified",
        "Verify your email address first; the link was mailed to it.",
    )


def prepare_reset(row, claim, address):
    """Turn a claimed reset request into a reset mail, or drop it: the relay's half of a reset.

    Only a real, enabled account gets a token; its older reset tokens die.
    Return the mail's kind and payload, or (None, None) if there is no mail.
    """
    user = db.session.scalar(sa.select(User).where(User.email == address))
    mine = sa.and_(outbox.c.id == row.id, outbox.c.claim == claim)
    if user is None or user.disabled:
        db.session.execute(outbox.delete().where(mine))
        db.session.commit()
        return None, None
    mailtokens.kill(user.id, "password_reset")
    token = mailtokens.issue(user.id, "password_reset", address)
    payload = mail.new_payload(
        address,
        link=link("PASSWORD_RESET_URL", token),
        valid_for=lifetime("PASSWORD_RESET_TTL"),
    )
    db.session.execute(
        outbox.update()
        .where(mine)
        .values(kind="password_reset", message=mail.seal_payload(payload))
    )
    audit.record("password_reset_requested", user.id)
    db.session.commit()
    return "password_reset", payload


def _live_or_refuse(token, *purposes):
    """Return a live token's row and its user, or refuse with invalid_token."""
    row = mailtokens.live(token, purposes)
    user = db.session.get(User, row.user_id) if row is not None else None
    if user is None:
        raise INVALID_TOKEN
    return row, user


def check_reset_token(token):
    """Refuse a reset token that is not live (the pages' check before showing a form)."""
    _live_or_refuse(token, "password_reset")


def check_address_token(token):
    """Refuse a verification or email-change token that is not live."""
    _live_or_refuse(token, "verify_email", "email_change")


def reset_password(token, new_password):
    """Set a new password with a reset token; a weak password leaves the token live."""
    row, user = _live_or_refuse(token, "password_reset")
    refuse_weak_password(new_password, user.email, field="newPassword")
    if not mailtokens.use(row):
        raise INVALID_TOKEN
    user.password_hash = hash_password(new_password)
    if row.email == user.email:
        user.email_verified = True
    revoke_sessions_of(user.id)
    mailtokens.kill_on_new_password(user.id)
    if mail.enabled():
        mail.queue("password_changed", user.email)
    audit.record("password_reset", user.id)


def confirm_address(token):
    """Verify an address, or complete an email change, with a mailed token."""
    row, user = _live_or_refuse(token, "verify_email", "email_change")
    if row.purpose == "verify_email" and row.email != user.email:
        raise INVALID_TOKEN  # mailed to an address the account no longer has
    if not mailtokens.use(row):
        raise INVALID_TOKEN
    if row.purpose == "email_change":
        return _change_email(user, row.email)
    user.email_verified = True
    audit.record("email_verified", user.id)


def _change_email(user, new_email):
    """Move an account to a proven address; the old one gets a notice."""
    old_email = user.email
    user.email, user.email_verified = new_email, True
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()  # the token stays unused
        raise EMAIL_TAKEN from None
    mailtokens.kill(user.id, "password_reset", email=old_email)
    if mail.enabled():
        mail.queue("email_changed", old_email, new_email=new_email)
    audit.record("email_changed", user.id)


def accepted():
    """Return an empty 202."""
    response = current_app.response_class(status=202)
    del response.headers["Content-Type"]
    return response


@bp.post("/auth/password-reset")
@bp.arguments(EmailSchema)
@bp.response(202)
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@bp.alt_response(503, response="SERVICE_UNAVAILABLE")
@limit_reset_request
def request_password_reset(body):
    """Mail a reset link if the address has an account; answer the same either way.

    The same work is done on both paths: one outbox row holding the address.
    The relay, in the background, looks the account up.
    """
    mail.require_mail()
    mail.queue(RESET_REQUEST, body["email"])
    db.session.commit()
    return accepted()


@bp.post("/auth/password-reset/confirm")
@bp.arguments(ResetConfirmSchema)
@bp.response(204)
@bp.alt_response(400, response="BAD_REQUEST")
def confirm_password_reset(body):
    """Set a new password with a reset token; every session ends."""
    reset_password(body["token"], body["new_password"])
    db.session.commit()


@bp.post("/auth/verify-email")
@bp.arguments(TokenSchema)
@bp.response(204)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(409, response="CONFLICT")
def verify_email(body):
    """Verify an address, or complete an email change, with the token from the mail."""
    confirm_address(body["token"])
    db.session.commit()


@bp.post("/auth/verify-email/resend")
@bp.response(202)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@bp.alt_response(503, response="SERVICE_UNAVAILABLE")
@token_required()
@limit_verification_resend
def resend_verification():
    """Mail the caller a new verification link; earlier links keep working."""
    mail.require_mail()
    user = db.session.get(User, current_user.id)
    if user.email_verified:
        raise Problem(409, "already_verified", "This address is verified already.")
    send_verification(user)
    audit.record("verification_sent", user.id, current_user.session_id)
    db.session.commit()
    return accepted()


@bp.post("/users/me/email")
@bp.response(202)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@bp.alt_response(503, response="SERVICE_UNAVAILABLE")
@token_required()
@bp.arguments(EmailChangeSchema)
@limit_email_change
def request_email_change(body):
    """Mail a confirmation link to a new address; nothing changes until it is used."""
    mail.require_mail()
    user = db.session.get(User, current_user.id)
    if not verify_password(body["current_password"], user.password_hash):
        audit.record("email_change_failed", user.id, current_user.session_id)
        db.session.commit()
        raise Problem(403, "invalid_password", "The current password is wrong.")
    new_email = body["new_email"]
    if new_email == user.email:
        raise Problem(
            422,
            "validation_error",
            "The new address is the account's address already.",
            errors={"newEmail": ["This is the account's address already."]},
        )
    if db.session.scalar(sa.select(User.id).where(User.email == new_email)) is not None:
        raise EMAIL_TAKEN
    token = mailtokens.issue(user.id, "email_change", new_email)
    mail.queue(
        "email_change",
        new_email,
        link=link("EMAIL_VERIFY_URL", token),
        valid_for=lifetime("EMAIL_VERIFY_TTL"),
        old_email=user.email,
    )
    audit.record("email_change_requested", user.id, current_user.session_id)
    db.session.commit()
    return accepted()
