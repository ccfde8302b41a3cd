"""Passkey challenges: one per WebAuthn ceremony, random, stored as a digest, used once.

A challenge is 256 random bits, handed out as base64url (the options'
`challenge`, and their `challengeId`), stored only as its SHA-256 digest
with its purpose ("registration" or "authentication") and, for
registration, its user and the user handle its options named. It lives
WEBAUTHN_TIMEOUT seconds and is used up by one conditional UPDATE, committed
before the response is checked: of two racers one wins, and a challenge
serves once whether its ceremony succeeds or not.
"""

import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from authsvc.extensions import db
from authsvc.models import PasskeyChallenge, utcnow
from authsvc.totp import digest

CHALLENGE_BYTES = 32  # 256 bits

challenges = PasskeyChallenge.__table__


def open_challenge(purpose, user_id=None, user_handle=None):
    """Store a new challenge of a purpose; return it as base64url, the options' challengeId.

    A registration challenge clears its user's dead ones on the way.
    """
    now = utcnow()
    if user_id is not None:
        dead = sa.or_(challenges.c.used_at.is_not(None), challenges.c.expires_at <= now)
        db.session.execute(challenges.delete().where(challenges.c.user_id == user_id, dead))
    challenge = secrets.token_urlsafe(CHALLENGE_BYTES)
    db.session.execute(
        challenges.insert().values(
            digest=digest(challenge),
            purpose=purpose,
            user_id=user_id,
            user_handle=user_handle,
            created_at=now,
            expires_at=now + timedelta(seconds=current_app.config["WEBAUTHN_TIMEOUT"]),
        )
    )
    return challenge


def use_challenge(challenge_id, purpose, user_id=None):
    """Use a live challenge of this purpose (and user) up, and commit that; tell if it was live.

    Committed at once, before the response is checked: a challenge is used
    whether its ceremony then succeeds or not. Of two racers, one wins.
    """
    live = [
        challenges.c.digest == digest(challenge_id),
        challenges.c.purpose == purpose,
        challenges.c.used_at.is_(None),
        challenges.c.expires_at > utcnow(),
    ]
    if user_id is not None:
        live.append(challenges.c.user_id == user_id)
    used = db.session.execute(challenges.update().where(*live).values(used_at=utcnow()))
    db.session.commit()
    return used.rowcount == 1


def handle_of(challenge_id):
    """Return the user handle a registration challenge's options named."""
    return db.session.scalar(
        sa.select(challenges.c.user_handle).where(challenges.c.digest == digest(challenge_id))
    )


def purge(cutoff):
    """Delete challenges that expired before `cutoff` (used ones expire too); return how many."""
    return db.session.execute(challenges.delete().where(challenges.c.expires_at < cutoff)).rowcount
