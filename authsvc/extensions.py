"""The extensions authsvc uses, bound to the app later with init_app."""

import time

import flask_jwt_extended
import jwt as pyjwt
import sqlalchemy as sa
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base whose constraints have stable names for migrations."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class JWTManager(flask_jwt_extended.JWTManager):
    """flask-jwt-extended's manager, remembering the tokens it has verified.

    Checking a signature and its base64 is most of what a request spends on
    its token, and a client presents the same access token for its whole 15
    minutes; so each process keeps the claims of tokens it verified (bounded)
    and on a hit only checks again that the token is within its lifetime and
    that its key still verifies. Revocation is never cached: the revocation
    callback still checks the session on every request. Whether a token is an
    access or a refresh token (its typ header, type and aud claims) never
    changes, so that is checked once, before the claims are cached.
    """

    CACHE_SIZE = 4096

    def _decode_jwt_from_config(self, encoded_token, csrf_value=None, allow_expired=False):
        """Return a token's verified claims, from this process's cache when it can."""
        cache = current_app.extensions.setdefault("authsvc-verified-tokens", {})
        hit = None if allow_expired else cache.get(encoded_token)
        if hit is not None and _within_lifetime(hit[1]):
            header, claims = hit
            self._decode_key_callback(header, claims)  # raises if the key was retired
            return dict(claims)
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        header = pyjwt.get_unverified_header(encoded_token)
        _check_token_kind(header, claims)
        _check_freshness(claims)
        if not allow_expired and "exp" in claims:
            if len(cache) >= self.CACHE_SIZE:
                cache.clear()
            cache[encoded_token] = (header, dict(claims))
        return claims


def _check_token_kind(header, claims):
    """Refuse a verified token whose typ header, type claim and aud do not agree.

    Access tokens say typ at+jwt (RFC 9068) and carry JWT_AUDIENCE; refresh
    tokens say typ JWT and carry no aud. The exceptions are tokens issued
    before that rule: access tokens said typ JWT (they expire within
    ACCESS_TOKEN_TTL), and refresh tokens carried JWT_AUDIENCE (each still
    refreshes once, into the new shape).
    """
    audience = current_app.config["JWT_AUDIENCE"]
    if claims["type"] == "access":
        kind_fits = header.get("typ") in ("at+jwt", "JWT")
        audience_fits = claims.get("aud") == audience
    else:
        kind_fits = header.get("typ") == "JWT"
        audience_fits = claims.get("aud") in (None, audience)
    if not kind_fits:
        raise pyjwt.InvalidTokenError("its typ header does not match its type")
    if not audience_fits:
        raise pyjwt.InvalidAudienceError("Invalid audience")


def _check_freshness(claims):
    """Refuse a verified token whose `fresh` claim is neither a boolean nor a time.

    flask-jwt-extended compares it with the clock where a fresh token is
    needed, before the revocation callback runs: a string or a null there
    would be a TypeError, a 500.
    """
    fresh = claims.get("fresh", False)
    if not isinstance(fresh, bool | int | float) or fresh != fresh:  # NaN is not a time
        raise pyjwt.InvalidTokenError("its fresh claim is neither a boolean nor a time")


def _within_lifetime(claims):
    """Tell whether a verified token is neither expired nor not yet valid."""
    now = time.time()
    return claims.get("nbf", now) <= now < claims["exp"]


db = SQLAlchemy(model_class=Base)
jwt = JWTManager()
