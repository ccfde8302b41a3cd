"""mfaTokens: the second step of a signin for a user with MFA on.

The right password at /auth/signin opens a challenge and answers its
mfaToken: random, stored only as a SHA-256 digest, bound to its user, live
for MFA_TOKEN_TTL seconds and for MAX_FAILURES codes. Each code is counted
against the token before it is checked, by one conditional UPDATE that
only a token with a count to spare passes (so of 50 codes sent at once, at
most MAX_FAILURES are checked); the right code uses the token up, by one
conditional UPDATE in the transaction that opens the session, so of two
concurrent uses exactly one wins.
"""

import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app, g

from authsvc.extensions import db
from authsvc.models import MfaChallenge, utcnow
from authsvc.totp import digest

MAX_FAILURES = 5

challenges = MfaChallenge.__table__


def _unused(token):
    """Return the condition 'this mfaToken is unused and unexpired'."""
    return sa.and_(
        challenges.c.token_digest == digest(token),
        challenges.c.used_at.is_(None),
        challenges.c.expires_at > utcnow(),
    )


def _live_challenge(token):
    """Return the condition 'this mfaToken is unused, unexpired and has codes to spare'."""
    return sa.and_(_unused(token), challenges.c.failures < MAX_FAILURES)


def open_challenge(user_id, amr="pwd"):
    """Return a new mfaToken for a user who proved a first factor (`amr`: "pwd", "oauth").

    The user's dead mfaTokens (used, expired or worn out) are cleared on the way.
    """
    now = utcnow()
    dead = sa.or_(
        challenges.c.used_at.is_not(None),
        challenges.c.expires_at <= now,
        challenges.c.failures >= MAX_FAILURES,
    )
    db.session.execute(challenges.delete().where(challenges.c.user_id == user_id, dead))
    token = secrets.token_urlsafe(32)
    ttl = timedelta(seconds=current_app.config["MFA_TOKEN_TTL"])
    db.session.execute(
        challenges.insert().values(
            token_digest=digest(token),
            user_id=user_id,
            created_at=now,
            expires_at=now + ttl,
            amr=amr,
        )
    )
    return token


def _live_row(token):
    """Return the user id and first factor of a live mfaToken, or None.

    Read once per request: the rate limit's key and the view both ask. What
    happens to the token after that is settled by use_up()'s conditional UPDATE.
    """
    known = g.setdefault("mfa_token_rows", {})
    if token not in known:
        live = sa.select(challenges.c.user_id, challenges.c.amr).where(_live_challenge(token))
        known[token] = db.session.execute(live).first()
    return known[token]


def user_of(token):
    """Return the id of the user a live mfaToken belongs to, or None."""
    row = _live_row(token)
    return row.user_id if row is not None else None


def first_factor_of(token):
    """Return the methods of the first step a live mfaToken followed: ["pwd"] or ["oauth"]."""
    row = _live_row(token)
    return (row.amr or "pwd").split() if row is not None else None


def count_attempt(token):
    """Count a code against an mfaToken before it is checked; tell whether the token had one left.

    One conditional UPDATE: of any number of codes sent at once, at most
    MAX_FAILURES find a row to count on. The fifth counted code may still
    be right (use_up() takes a token whatever its count); after it, none is
    checked.
    """
    counted = db.session.execute(
        challenges.update().where(_live_challenge(token)).values(failures=challenges.c.failures + 1)
    )
    return counted.rowcount == 1


def use_up(token):
    """Use an mfaToken whose code was right; return whether it was still unused (of two, one)."""
    result = db.session.execute(challenges.update().where(_unused(token)).values(used_at=utcnow()))
    return result.rowcount == 1


def purge(cutoff):
    """Delete mfaTokens that expired before `cutoff` (used ones expire too); return how many."""
    return db.session.execute(challenges.delete().where(challenges.c.expires_at < cutoff)).rowcount
