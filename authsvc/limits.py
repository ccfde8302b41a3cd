"""Rate limits on the endpoints attackers hammer, and the 429 they get.

Failed signins are counted per client address and per target email (so a
botnet spread over many addresses still cannot hammer one account); only
failures count, so the real user signing in is never what fills a bucket.
"""

import hashlib
import logging
import time

import limits
from flask import current_app, g, request
from flask_jwt_extended import get_current_user, get_jwt
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address

from authsvc import audit
from authsvc.errors import problem
from authsvc.extensions import db, limiter


def _setting(name):
    """Return a limit string from config, read when the limit is checked."""
    return lambda: current_app.config[name]


def _failed(response):
    """Count a signin only when it failed on credentials."""
    return response.status_code == 401


def _email_key(address):
    """Key a limit by a digest of an address, so that counters never hold addresses."""
    return "email:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()


def _target_email():
    """Key a signin or a reset request by its (already validated) email."""
    return _email_key(request.get_json()["email"])


def _new_email():
    """Key an email change by the address it would move to."""
    return _email_key(request.get_json()["newEmail"])


def _caller_email():
    """Key a request by the caller's own address."""
    return _email_key(get_current_user().email)


def _forbidden(response):
    """Count a password change only when the current password was wrong."""
    return response.status_code == 403


def _user_key():
    """Key a request by its authenticated user."""
    return f"user:{get_jwt()['sub']}"


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
# One bucket of wrong current passwords per user, for every endpoint that asks for one.
limit_wrong_password = limiter.shared_limit(
    _setting("RATELIMIT_PASSWORD_PER_USER"),
    scope="wrong-password",
    key_func=_user_key,
    deduct_when=_forbidden,
)

# Mails asked for per target address, shared by every endpoint that mails one.
MAIL_SCOPE = "mail-per-email"


def _accepted(response):
    """Count a mail request only when it queued a mail."""
    return response.status_code == 202


def _mails_to(key_func, deduct_when=None):
    """Limit the mails asked for to the address key_func names (RATELIMIT_MAIL_PER_EMAIL)."""
    return limiter.shared_limit(
        _setting("RATELIMIT_MAIL_PER_EMAIL"),
        scope=MAIL_SCOPE,
        key_func=key_func,
        deduct_when=deduct_when,
    )


def limit_reset_request(view):
    """Limit reset requests per target address and per client address, account or not."""
    view = _mails_to(_target_email)(view)
    return limiter.limit(
        _setting("RATELIMIT_RESET_PER_ADDRESS"), key_func=get_remote_address, scope="reset"
    )(view)


limit_verification_resend = _mails_to(_caller_email, deduct_when=_accepted)


def limit_email_change(view):
    """Limit wrong passwords per user, and change mails per new address."""
    return limit_wrong_password(_mails_to(_new_email, deduct_when=_accepted)(view))


def take_mail_quota(address):
    """Count one mail to an address outside a limited view; tell whether it was within limits.

    Signin mails a new verification link to an unverified account under
    REQUIRE_VERIFIED_EMAIL=1; this counts it in the same bucket as the
    endpoints above (Flask-Limiter's shared-limit key: prefix, key, scope).
    """
    config = current_app.config
    if not config["RATELIMIT_ENABLED"]:
        return True
    items = limits.parse_many(config["RATELIMIT_MAIL_PER_EMAIL"])
    key = (config["RATELIMIT_KEY_PREFIX"], _email_key(address), MAIL_SCOPE)
    try:
        strategy = limiter.limiter
        if not all(strategy.test(item, *key) for item in items):
            return False
        for item in items:
            strategy.hit(item, *key)
    except Exception as error:  # the storage is down: as the decorators, let it through
        logging.getLogger(__name__).error("mail quota unavailable: %s", type(error).__name__)
    return True


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
