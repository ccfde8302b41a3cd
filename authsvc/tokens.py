"""Tokens and sessions: opening, issuing, rotating and closing.

Every token names its session (`sid`). A session row keeps the SHA-256 digest
of its current refresh token: only that token refreshes. Access tokens say
`typ: at+jwt` (RFC 9068) and carry JWT_AUDIENCE; refresh tokens do neither,
so no service that verifies with the JWKS takes one for an access token. The
check of every presented token lives in revocation.py; the 401s and the view
decorator in bearer.py.
"""

import hashlib
import hmac
import re
import secrets
import time
import uuid
from datetime import UTC, timedelta

import sqlalchemy as sa
from flask import current_app, request
from flask_jwt_extended import create_access_token, create_refresh_token

from authsvc import audit, keys
from authsvc.bearer import challenge
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import Session, User, amr_methods, utcnow

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

sessions = Session.__table__
users = User.__table__

# The whole check of a token's session and user, in one query on two
# primary keys, in SQLAlchemy Core: no ORM objects on the hot path.
SESSION_CHECK = (
    sa.select(
        sessions.c.id.label("session_id"),
        sessions.c.user_id,
        sessions.c.expires_at,
        sessions.c.revoked_at,
        sessions.c.refresh_digest,
        sessions.c.refresh_jti,
        sessions.c.refresh_iat,
        sessions.c.refresh_exp,
        sessions.c.refresh_kid,
        sessions.c.previous_digest,
        sessions.c.rotated_at,
        sessions.c.amr,
        users.c.id,
        users.c.email,
        users.c.role,
        users.c.disabled,
        users.c.created_at,
        users.c.mfa_enabled,
        users.c.email_verified,
        users.c.password_hash.is_not(None).label("has_password"),
    )
    .join(users, users.c.id == sessions.c.user_id)
    .where(sessions.c.id == sa.bindparam("sid"))
)


def epoch(moment):
    """Return a stored UTC time as epoch seconds."""
    return int(moment.replace(tzinfo=UTC).timestamp())


def refresh_digest(token):
    """Return the SHA-256 hex digest of a refresh token, as sessions store it."""
    return hashlib.sha256(token.encode()).hexdigest()


def presented_token():
    """Return the bearer token of this request, read as flask-jwt-extended reads it."""
    header = request.headers.get("Authorization", "").strip().strip(",")
    for field in re.split(r",\s*", header):
        parts = field.split()
        if len(parts) == 2 and parts[0] == "Bearer":
            return parts[1]
    return ""


def encode_refresh_token(user_id, session_id, jti, iat, exp, kid=None):
    """Encode a refresh token: the same claims and key give the same token, byte for byte."""
    with keys.signing_with(kid):
        return create_refresh_token(
            identity=str(user_id),
            expires_delta=False,
            additional_claims={"sid": session_id, "jti": jti, "iat": iat, "exp": exp},
        )


def encode_access_token(user_id, email, role, session_id, session_expires, fresh, amr=None):
    """Encode an access token, never outliving its session.

    `amr` is the session's stored methods (RFC 8176): how the session began.
    """
    now = epoch(utcnow())
    config = current_app.config
    ttl = int(config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())
    claims = {
        "email": email,
        "role": role,
        "sid": session_id,
        "amr": amr_methods(amr),
        "iat": now,
        "nbf": now,
        "exp": min(now + ttl, epoch(session_expires)),
    }
    if config["JWT_AUDIENCE"]:
        claims["aud"] = config["JWT_AUDIENCE"]
    return create_access_token(
        identity=str(user_id),
        fresh=now + config["FRESH_TOKEN_TTL"] if fresh else False,
        expires_delta=False,
        additional_claims=claims,
        additional_headers={"typ": "at+jwt"},
    )


def _next_refresh_claims(session_expires, now):
    """Return the jti, iat and exp of a session's next refresh token."""
    ttl = int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds())
    iat = epoch(now)
    return str(uuid.uuid4()), iat, min(iat + ttl, epoch(session_expires))


def open_session(user, amr="pwd", fresh=True):
    """Open a session for a user on this device; return it and its token pair.

    `amr` says how the user proved who they are: "pwd", "pwd otp" or "pwd
    recovery"; `fresh`, whether its access token counts as fresh.
    """
    now = utcnow()
    expires_at = now + timedelta(seconds=current_app.config["SESSION_MAX_AGE"])
    session = Session(
        id=secrets.token_urlsafe(16),
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        expires_at=expires_at,
        ip=audit.client_address(),
        user_agent=audit.client_agent(),
        amr=amr or "pwd",
    )
    jti, iat, exp = _next_refresh_claims(expires_at, now)
    kid = keys.current_kid()
    refresh_token = encode_refresh_token(user.id, session.id, jti, iat, exp, kid)
    session.refresh_jti, session.refresh_iat, session.refresh_exp = jti, iat, exp
    session.refresh_kid = kid
    session.refresh_digest = refresh_digest(refresh_token)
    db.session.add(session)
    access_token = encode_access_token(
        user.id, user.email, user.role, session.id, expires_at, fresh=fresh, amr=session.amr
    )
    return session, {"access_token": access_token, "refresh_token": refresh_token}


def presented_token_is_fresh(claims):
    """Tell whether the access token of this request is fresh now (its `fresh` claim)."""
    fresh = claims.get("fresh", False)
    return fresh if isinstance(fresh, bool) else time.time() < fresh


def revoke_session(session_id, user_id=None):
    """Close a session now; its tokens are refused from this moment.

    Return whether an open session (of that user, if given) was closed.
    """
    condition = sa.and_(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
    if user_id is not None:
        condition = sa.and_(condition, sessions.c.user_id == user_id)
    result = db.session.execute(sessions.update().where(condition).values(revoked_at=utcnow()))
    return result.rowcount == 1


def revoke_sessions_of(user_id, keep=None):
    """Close every open session of a user, but the one named `keep`, if given."""
    condition = sa.and_(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
    if keep is not None:
        condition = sa.and_(condition, sessions.c.id != keep)
    db.session.execute(sessions.update().where(condition).values(revoked_at=utcnow()))


def _current_pair(row):
    """Return a fresh access token and the session's current refresh token."""
    refresh_token = encode_refresh_token(
        row.user_id,
        row.session_id,
        row.refresh_jti,
        row.refresh_iat,
        row.refresh_exp,
        row.refresh_kid,
    )
    access_token = encode_access_token(
        row.user_id, row.email, row.role, row.session_id, row.expires_at, fresh=False, amr=row.amr
    )
    return {"access_token": access_token, "refresh_token": refresh_token}


def is_retry(row, digest, now):
    """Tell whether a refresh token is the one rotated moments ago, sent again."""
    grace = current_app.config["REFRESH_REUSE_GRACE"]
    return (
        grace > 0
        and row.previous_digest is not None
        and hmac.compare_digest(row.previous_digest, digest)
        and (now - row.rotated_at).total_seconds() <= grace
    )


def close_reused_session(row):
    """Close a session whose rotated refresh token came back: it may be stolen."""
    revoke_session(row.session_id)
    audit.record("refresh_reuse", row.id, row.session_id)
    db.session.commit()


def rotate_refresh_token(row):
    """Rotate the session's refresh token once; a retry gets the same new one.

    The race between concurrent refreshes is settled by one conditional
    UPDATE: only the request that still finds the presented digest current
    rotates; the others read the winner's result.
    """
    digest = refresh_digest(presented_token())
    now = utcnow()
    if hmac.compare_digest(row.refresh_digest, digest):
        jti, iat, exp = _next_refresh_claims(row.expires_at, now)
        kid = keys.current_kid()
        token = encode_refresh_token(row.user_id, row.session_id, jti, iat, exp, kid)
        rotated = db.session.execute(
            sessions.update()
            .where(
                sessions.c.id == row.session_id,
                sessions.c.refresh_digest == digest,
                sessions.c.revoked_at.is_(None),
            )
            .values(
                refresh_digest=refresh_digest(token),
                refresh_jti=jti,
                refresh_iat=iat,
                refresh_exp=exp,
                refresh_kid=kid,
                previous_digest=digest,
                rotated_at=now,
                last_used_at=now,
            )
        ).rowcount
        if rotated:
            access_token = encode_access_token(
                row.user_id, row.email, row.role, row.session_id, row.expires_at, False, row.amr
            )
            return {"access_token": access_token, "refresh_token": token}
    latest = db.session.execute(SESSION_CHECK, {"sid": row.session_id}).first()
    if latest is not None and latest.revoked_at is None and is_retry(latest, digest, now):
        return _current_pair(latest)
    close_reused_session(row)
    raise Problem(
        401,
        "token_revoked",
        "This refresh token was already used; its session is closed.",
        headers={"WWW-Authenticate": challenge("token_revoked")},
    )
