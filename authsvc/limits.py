"""Rate limits on the endpoints attackers hammer, and the 429 they get.

Failed signins are counted per client address and per target email (so a
botnet spread over many addresses still cannot hammer one account); only
failures count, so the real user signing in is never what fills a bucket.
Likewise wrong current passwords and wrong second-factor codes are counted
per user, each in one bucket shared by every endpoint that checks them.
"""

import hashlib
import time

from flask import current_app, g, request
from flask_jwt_extended import get_jwt
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address

from authsvc import audit, challenges
from authsvc.errors import problem
from authsvc.extensions import db, limiter


def _setting(name):
    """Return a limit string from config, read when the limit is checked."""
    return lambda: current_app.config[name]


def _failed(response):
    """Count a signin only when it failed on credentials."""
    return response.status_code == 401


def _target_email():
    """Key a signin by a digest of its (already validated) email."""
    email = request.get_json()["email"].strip().lower()
    return "email:" + hashlib.sha256(email.encode()).hexdigest()


def _problem_code(response):
    """Return the `code` of a problem response, or None."""
    if response.status_code < 400:
        return None
    return (response.get_json(silent=True) or {}).get("code")


def _wrong_password(response):
    """Count a request only when its current password was wrong."""
    return _problem_code(response) == "invalid_password"


def _wrong_mfa_code(response):
    """Count a request only when its second-factor code was wrong."""
    return _problem_code(response) == "invalid_mfa_code"


def _user_key():
    """Key a request by its authenticated user."""
    return f"user:{get_jwt()['sub']}"


def _caller_mfa_key():
    """Key second-factor codes by the authenticated caller."""
    return f"mfa-user:{get_jwt()['sub']}"


def _mfa_token_key():
    """Key a second-factor signin by the user its (already validated) mfaToken names.

    A token that names nobody gets one shared key; its answer is never a
    wrong code, so that bucket never fills.
    """
    return f"mfa-user:{challenges.user_of(request.get_json()['mfaToken'])}"


def _session_key():
    """Key a refresh by its session, known once the token is verified."""
    return "session:" + get_jwt()["sid"]


def limit_signin(view):
    """Limit failed signins per client address and per target email."""
    view = limiter.limit(
        _setting("RATELIMIT_SIGNIN_PER_EMAIL"), key_func=_target_email, deduct_when=_failed
    )(view)
    return limiter.limit(
        _setting("RATELIMIT_SIGNIN_PER_ADDRESS"), key_func=get_remote_address, deduct_when=_failed
    )(view)


limit_signup = limiter.limit(_setting("RATELIMIT_SIGNUP_PER_ADDRESS"), key_func=get_remote_address)
limit_refresh = limiter.limit(_setting("RATELIMIT_REFRESH_PER_SESSION"), key_func=_session_key)
# Shared limits: the scope names the bucket, the same on every endpoint it guards.
CURRENT_PASSWORD_LIMIT = "current-password"
MFA_CODE_LIMIT = "mfa-codes"

limit_current_password = limiter.shared_limit(
    _setting("RATELIMIT_PASSWORD_PER_USER"),
    scope=CURRENT_PASSWORD_LIMIT,
    key_func=_user_key,
    deduct_when=_wrong_password,
)
limit_mfa_codes = limiter.shared_limit(
    _setting("RATELIMIT_MFA_PER_USER"),
    scope=MFA_CODE_LIMIT,
    key_func=_caller_mfa_key,
    deduct_when=_wrong_mfa_code,
)
limit_mfa_signin = limiter.shared_limit(
    _setting("RATELIMIT_MFA_PER_USER"),
    scope=MFA_CODE_LIMIT,
    key_func=_mfa_token_key,
    deduct_when=_wrong_mfa_code,
)


def _retry_after():
    """Return the whole seconds until the breached limit lets requests through."""
    current = limiter.current_limit
    reset_at = current.reset_at if current else time.time() + 60
    return str(max(1, int(reset_at - time.time()) + 1))


def rate_limited(error):
    """Answer a breached limit with 429 and Retry-After, and note it in the audit trail."""
    db.session.rollback()
    caller = g.get("session_row")
    if caller is None:
        audit.record("rate_limited")
    else:
        audit.record("rate_limited", caller.id, caller.session_id)
    db.session.commit()
    return problem(
        429,
        "rate_limited",
        "Too many requests; try again after the time in Retry-After.",
        {"Retry-After": _retry_after()},
    )


def register_rate_limits(app):
    """Bind the limiter and answer its refusals as problems."""
    limiter.init_app(app)
    # Every authsvc limit is a decorator, which checks itself when its view
    # runs; with no default or application-wide limits, the check the
    # limiter also runs before every request finds nothing, at a cost.
    before = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in before:
        before.remove(limiter._check_request_limit)
    app.register_error_handler(RateLimitExceeded, rate_limited)
