"""The Bearer side of tokens: the decorator views use, and the 401s they answer.

Every 401 carries a Bearer challenge (RFC 6750), with error="invalid_token"
when a token was presented.
"""

import copy
import functools

from flask import request
from flask_jwt_extended import get_current_user, jwt_required

from authsvc.errors import Problem, problem
from authsvc.extensions import jwt
from authsvc.models import SECOND_FACTORS, amr_methods

CHALLENGE_DESCRIPTIONS = {
    "invalid_token": "The token is invalid",
    "token_expired": "The token has expired",
    "token_revoked": "The token has been revoked",
    "fresh_token_required": "A fresh token is required",
}


def challenge(code):
    """Return the Bearer challenge for a presented token that was refused (RFC 6750)."""
    description = CHALLENGE_DESCRIPTIONS[code]
    return f'Bearer realm="authsvc", error="invalid_token", error_description="{description}"'


def _token_problem(code, detail):
    """Answer a refused token with 401 and its challenge."""
    return problem(401, code, detail, {"WWW-Authenticate": challenge(code)})


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


def second_factor_fresh(view):
    """Refuse a token of an MFA user unless its session began with a second factor.

    For a user with MFA on, a token is fresh only if it is recent (the `fresh`
    claim, checked before) and its session came from /auth/signin/mfa. The
    session's amr and the user's current mfa_enabled come from the row the
    revocation check read, so this costs no query.
    """

    @functools.wraps(view)
    def checked(*args, **kwargs):
        row = get_current_user()
        if row.mfa_enabled and not SECOND_FACTORS.intersection(amr_methods(row.amr)):
            raise Problem(
                401,
                "fresh_token_required",
                "This needs an access token from a recent signin with your second factor.",
                headers={"WWW-Authenticate": challenge("fresh_token_required")},
            )
        return view(*args, **kwargs)

    return checked


def token_required(refresh=False, fresh=False):
    """Require a Bearer token on a view and document it in the OpenAPI spec.

    A fresh token is one from a recent signin; for a user with MFA on, from a
    recent signin with the second factor.
    """

    def decorator(view):
        guarded = second_factor_fresh(view) if fresh else view
        protected = jwt_required(refresh=refresh, fresh=fresh)(guarded)
        # What Blueprint.doc(security=...) records, without the extra layer
        # of wrapper it would add to every authenticated request.
        apidoc = copy.deepcopy(getattr(protected, "_apidoc", {}))
        apidoc.setdefault("manual_doc", {})["security"] = [{"bearerAuth": []}]
        protected._apidoc = apidoc
        return protected

    return decorator
