"""The revocation callback: every presented token's session, checked every time.

It runs on every authenticated request, so it is one indexed query on two
primary keys through a plain Core connection.
"""

import hmac
import re

from flask import current_app, g

from authsvc.extensions import db, jwt
from authsvc.models import utcnow
from authsvc.schemas import MAX_USER_ID
from authsvc.tokens import (
    SESSION_CHECK,
    SESSION_ID,
    close_reused_session,
    is_retry,
    presented_token,
    refresh_digest,
)

USER_ID = re.compile(r"[1-9][0-9]{0,9}")


def _current_or_retry(row):
    """Tell whether this request's refresh token is the session's current one, or a retry."""
    digest = refresh_digest(presented_token())
    return hmac.compare_digest(row.refresh_digest, digest) or is_retry(row, digest, utcnow())


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


def reading_engine():
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


def open_session_row(claims, statement=SESSION_CHECK, **parameters):
    """Return the open session and live user a token names, or None.

    Introspection reads one more column with them (its client's secret
    digest): SESSION_CHECK with that column, and its parameter; one query still.
    """
    if not _well_formed(claims):
        return None
    with reading_engine().connect() as connection:
        row = connection.execute(statement, {"sid": claims["sid"], **parameters}).first()
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
    row = open_session_row(claims)
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
