"""Tokens and sessions: issuing, rotation, revocation, and the jwt-extended loaders.

Every token names its session (`sid`). A session row keeps the SHA-256 digest
of its current refresh token: only that token refreshes. The revocation
callback runs on every authenticated request, so it is one indexed query.
"""

import copy
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import UTC, timedelta

import sqlalchemy as sa
from flask import current_app, g, request
from flask_jwt_extended import create_access_token, create_refresh_token, jwt_required

from authsvc import audit, keys
from authsvc.errors import Problem, problem
from authsvc.extensions import db, jwt
from authsvc.models import Session, User, utcnow

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
USER_ID = re.compile(r"[1-9][0-9]{0,9}")
MAX_USER_ID = 2**31 - 1

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
        users.c.id,
        users.c.email,
        users.c.role,
        users.c.disabled,
        users.c.created_at,
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


def encode_access_token(user_id, email, role, session_id, session_expires, fresh):
    """Encode an access token, never outliving its session."""
    now = epoch(utcnow())
    config = current_app.config
    ttl = int(config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())
    claims = {
        "email": email,
        "role": role,
        "sid": session_id,
        "iat": now,
        "nbf": now,
        "exp": min(now + ttl, epoch(session_expires)),
    }
    return create_access_token(
        identity=str(user_id),
        fresh=now + config["FRESH_TOKEN_TTL"] if fresh else False,
        expires_delta=False,
        additional_claims=claims,
    )


def _next_refresh_claims(session_expires, now):
    """Return the jti, iat and exp of a session's next refresh token."""
    ttl = int(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds())
    iat = epoch(now)
    return str(uuid.uuid4()), iat, min(iat + ttl, epoch(session_expires))


def open_session(user):
    """Open a session for a user on this device; return it and its token pair."""
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
    )
    jti, iat, exp = _next_refresh_claims(expires_at, now)
    kid = keys.current_kid()
    refresh_token = encode_refresh_token(user.id, session.id, jti, iat, exp, kid)
    session.refresh_jti, session.refresh_iat, session.refresh_exp = jti, iat, exp
    session.refresh_kid = kid
    session.refresh_digest = refresh_digest(refresh_token)
    db.session.add(session)
    access_token = encode_access_token(
        user.id, user.email, user.role, session.id, expires_at, fresh=True
    )
    return session, {"access_token": access_token, "refresh_token": refresh_token}


def revoke_session(session_id, user_id=None):
    """Close a session now; its tokens are refused from this moment.

    Return whether an open session (of that user, if given) was closed.
    """
    condition = sa.and_(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
    if user_id is not None:
        condition = sa.and_(condition, sessions.c.user_id == user_id)
    result = db.session.execute(sessions.update().where(condition).values(revoked_at=utcnow()))
    return result.rowcount == 1


def revoke_sessions_of(user_id):
    """Close every open session of a user."""
    db.session.execute(
        sessions.update()
        .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


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
        row.user_id, row.email, row.role, row.session_id, row.expires_at, fresh=False
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


def _current_or_retry(row):
    """Tell whether this request's refresh token is the session's current one, or a retry."""
    digest = refresh_digest(presented_token())
    return hmac.compare_digest(row.refresh_digest, digest) or is_retry(row, digest, utcnow())


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
                row.user_id, row.email, row.role, row.session_id, row.expires_at, False
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
        headers={"WWW-Authenticate": _challenge("token_revoked")},
    )


def _well_formed(claims):
    """Tell whether a verified token carries the claims authsvc's tokens carry.

    flask-jwt-extended reads a token without `type` as an access token, so an
    access token must also show what only access tokens carry.
    """
    sub, sid = claims.get("sub"), claims.get("sid")
    shaped = (
        isinstance(sub, str)
        and USER_ID.fullmatch(sub) is not None
        and int(sub) <= MAX_USER_ID
        and isinstance(sid, str)
        and SESSION_ID.fullmatch(sid) is not None
        and isinstance(claims.get("jti"), str)
        and "exp" in claims
        and "iat" in claims
    )
    if claims.get("type") == "access":
        return shaped and "nbf" in claims and isinstance(claims.get("role"), str)
    return shaped and claims.get("type") == "refresh"


def _reading_engine():
    """Return the engine the revocation check reads through.

    A plain Core connection, not the ORM session: on the hot path the
    session's setup and teardown cost more than the query. On PostgreSQL the
    read runs in autocommit, which saves the BEGIN and ROLLBACK round trips.
    """
    engine = current_app.extensions.get("authsvc-reading-engine")
    if engine is None:
        engine = db.engine
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        current_app.extensions["authsvc-reading-engine"] = engine
    return engine


def _open_session_row(claims):
    """Return the open session and live user a token names, or None."""
    if not _well_formed(claims):
        return None
    with _reading_engine().connect() as connection:
        row = connection.execute(SESSION_CHECK, {"sid": claims["sid"]}).first()
    if (
        row is None
        or row.user_id != int(claims["sub"])
        or row.revoked_at is not None
        or row.expires_at <= utcnow()
        or row.disabled
    ):
        return None
    return row


@jwt.token_in_blocklist_loader
def token_is_revoked(jwt_header, claims):
    """Refuse a token unless its session is open; a refresh token must be current.

    A refresh token of the session that is neither current nor a retry within
    the grace window is reuse: the session is closed before refusing.
    """
    row = _open_session_row(claims)
    if row is None:
        return True
    if claims["type"] == "refresh" and not _current_or_retry(row):
        close_reused_session(row)
        return True
    g.session_row = row
    return False


@jwt.user_lookup_loader
def current_session_row(jwt_header, claims):
    """Give views the session and user the revocation check already read."""
    return g.get("session_row")


CHALLENGE_DESCRIPTIONS = {
    "invalid_token": "The token is invalid",
    "token_expired": "The token has expired",
    "token_revoked": "The token has been revoked",
    "fresh_token_required": "A fresh token is required",
}


def _challenge(code):
    """Return the Bearer challenge for a presented token that was refused (RFC 6750)."""
    description = CHALLENGE_DESCRIPTIONS[code]
    return f'Bearer realm="authsvc", error="invalid_token", error_description="{description}"'


def _token_problem(code, detail):
    """Answer a refused token with 401 and its challenge."""
    return problem(401, code, detail, {"WWW-Authenticate": _challenge(code)})


@jwt.unauthorized_loader
def missing_token(reason):
    """Answer a request without a usable Authorization header."""
    if request.headers.get("Authorization", "").strip():
        return _token_problem("invalid_token", "The Authorization header must be 'Bearer <token>'.")
    return problem(401, "missing_token", "This endpoint needs a Bearer token.")


@jwt.invalid_token_loader
def invalid_token(reason):
    """Answer a token that does not verify or is of the wrong type."""
    return _token_problem("invalid_token", f"The token is invalid: {reason}.")


@jwt.expired_token_loader
def expired_token(jwt_header, claims):
    """Answer an expired token."""
    return _token_problem("token_expired", "The token has expired.")


@jwt.revoked_token_loader
def revoked_token(jwt_header, claims):
    """Answer a token whose session is closed, or that no longer names a user."""
    return _token_problem("token_revoked", "The token has been revoked.")


@jwt.user_lookup_error_loader
def unknown_user(jwt_header, claims):
    """Answer a token whose user could not be loaded."""
    return _token_problem("invalid_token", "The token names no current user.")


@jwt.needs_fresh_token_loader
def stale_token(jwt_header, claims):
    """Answer a token that is not fresh where a fresh one is needed."""
    return _token_problem(
        "fresh_token_required", "This needs an access token from a recent signin."
    )


def token_required(refresh=False, fresh=False):
    """Require a Bearer token on a view and document it in the OpenAPI spec."""

    def decorator(view):
        protected = jwt_required(refresh=refresh, fresh=fresh)(view)
        # What Blueprint.doc(security=...) records, without the extra layer
        # of wrapper it would add to every authenticated request.
        apidoc = copy.deepcopy(getattr(protected, "_apidoc", {}))
        apidoc.setdefault("manual_doc", {})["security"] = [{"bearerAuth": []}]
        protected._apidoc = apidoc
        return protected

    return decorator
