"""Tokens mailed to users: made here, kept only as digests, used once.

A token is 256 random bits, URL-safe. The table keeps its SHA-256 digest
with its purpose, so a verification token can never reset a password, and
a token is used by one conditional UPDATE: of two concurrent uses, one wins.
"""

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from authsvc.extensions import db
from authsvc.models import MailToken, utcnow

tokens = MailToken.__table__
LIFETIMES = {
    "password_reset": "PASSWORD_RESET_TTL",
    "verify_email": "EMAIL_VERIFY_TTL",
    "email_change": "EMAIL_VERIFY_TTL",
}


def token_digest(token):
    """Return the SHA-256 hex digest a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue(user_id, purpose, email):
    """Add a new token to the session; return the token, which is never stored."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    lifetime = timedelta(seconds=current_app.config[LIFETIMES[purpose]])
    db.session.add(
        MailToken(
            digest=token_digest(token),
            purpose=purpose,
            user_id=user_id,
            email=email,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def _usable(now):
    """Return the condition 'neither used nor expired'."""
    return sa.and_(tokens.c.used_at.is_(None), tokens.c.expires_at > now)


def live(token, purposes):
    """Return the stored row of a token that is unused, unexpired and of one of `purposes`."""
    if not isinstance(token, str) or not token.isascii():
        return None
    return db.session.execute(
        sa.select(tokens).where(
            tokens.c.digest == token_digest(token),
            tokens.c.purpose.in_(purposes),
            _usable(utcnow()),
        )
    ).first()


def use(row):
    """Mark a live token used; tell whether this call was the one that did."""
    result = db.session.execute(
        tokens.update()
        .where(tokens.c.digest == row.digest, tokens.c.purpose == row.purpose, _usable(utcnow()))
        .values(used_at=utcnow())
    )
    return result.rowcount == 1


def kill(user_id, purpose, email=None):
    """Use up a user's live tokens of a purpose (only those mailed to `email`, if given)."""
    condition = sa.and_(tokens.c.user_id == user_id, tokens.c.purpose == purpose)
    if email is not None:
        condition = sa.and_(condition, tokens.c.email == email)
    now = utcnow()
    db.session.execute(tokens.update().where(condition, _usable(now)).values(used_at=now))


def kill_on_new_password(user_id):
    """Use up a user's reset tokens and pending email changes: a new password ends both.

    An email change asked for with the old password (by whoever knew it)
    must not outlive the reset that locked them out.
    """
    kill(user_id, "password_reset")
    kill(user_id, "email_change")


def purge(cutoff):
    """Delete tokens used, or expired, before `cutoff`; return how many."""
    ended = sa.or_(tokens.c.used_at < cutoff, tokens.c.expires_at < cutoff)
    return db.session.execute(tokens.delete().where(ended)).rowcount
