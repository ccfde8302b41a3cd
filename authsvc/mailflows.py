"""The flows by mail that the JSON views, the HTML pages and the relay share.

Verification links, password reset and email change: each is a function
here, below the blueprints (recovery.py, pages.py) and the relay that call
it. Nothing here commits: the caller does.
"""

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from authsvc import audit, mail, mailtokens
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import MailOutbox, User
from authsvc.passwords import hash_password, refuse_weak_password
from authsvc.tokens import revoke_sessions_of

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
