"""Blueprint "recovery": password reset, verified addresses and email change, by mail.

The flows live in mailflows.py, shared with the HTML pages (pages.py) and
the relay; these views load, act, commit and return.
"""

import sqlalchemy as sa
from flask import current_app
from flask_jwt_extended import current_user

from authsvc import audit, mail, mailtokens
from authsvc.bearer import token_required
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import (
    limit_email_change,
    limit_email_changes_per_user,
    limit_reset_request,
    limit_verification_resend,
)
from authsvc.mailflows import (
    EMAIL_TAKEN,
    RESET_REQUEST,
    confirm_address,
    lifetime,
    link,
    reset_password,
    send_verification,
)
from authsvc.models import User
from authsvc.parsing import Blueprint
from authsvc.passwords import verify_password
from authsvc.schemas import EmailChangeSchema, EmailSchema, ResetConfirmSchema, TokenSchema

bp = Blueprint(
    "recovery", __name__, description="Password reset, verified addresses, email change."
)


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
@limit_email_changes_per_user
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
