"""Rate limits on the endpoints attackers hammer, and the 429 they get.

Failed signins are counted per client address and per target email (so a
botnet spread over many addresses still cannot hammer one account); only
failures count, so the real user signing in is never what fills a bucket.
Likewise wrong current passwords and wrong second-factor codes are counted
per user, each in one bucket shared by every endpoint that checks them.

A refusal costs the database nothing: it is counted in /metrics
(`authsvc_rate_limited_total` by the limit's name), and only the first
refusal of a key in each window of a limit writes an audit row, the one
`rate_limited` event of that breach. A marker in the limiter's own storage
(memory, or Redis shared by every instance), kept for the window's length,
tells the first refusal from the others.
"""

import functools
import hashlib
import logging
import time

import limits
from flask import current_app, g, request
from flask_jwt_extended import get_current_user, get_jwt
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from sqlalchemy.exc import SQLAlchemyError

from authsvc import audit, challenges
from authsvc.errors import problem
from authsvc.extensions import db, limiter
from authsvc.outages import describe, in_trouble, log_unavailable, roll_back
from authsvc.telemetry import count_refusal


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


def _note_breach(name, breached):
    """Remember which limit refused this request (Flask-Limiter's on_breach callback)."""
    g.breached_limit = name


def named_limit(name, shared_scope=None, **options):
    """Return a limit whose rate is the setting RATELIMIT_<NAME>, counted in /metrics as `name`.

    With a `shared_scope`, one bucket serves every endpoint the limit guards.
    """
    rate, on_breach = _setting(f"RATELIMIT_{name.upper()}"), functools.partial(_note_breach, name)
    if shared_scope:
        return limiter.shared_limit(rate, shared_scope, on_breach=on_breach, **options)
    return limiter.limit(rate, on_breach=on_breach, **options)


def limit_signin(view):
    """Limit failed signins per client address and per target email."""
    view = named_limit("signin_per_email", key_func=_target_email, deduct_when=_failed)(view)
    return named_limit("signin_per_address", key_func=get_remote_address, deduct_when=_failed)(view)


# A passkey sign-in counts its failures per client address at signin's rate,
# in a bucket of its own; its options, which write a challenge, count each time.
limit_passkey_signin = named_limit(
    "signin_per_address", key_func=get_remote_address, deduct_when=_failed
)
limit_passkey_options = named_limit("signin_per_address", key_func=get_remote_address)
limit_signup = named_limit("signup_per_address", key_func=get_remote_address)
limit_refresh = named_limit("refresh_per_session", key_func=_session_key)
# Shared limits: the scope names the bucket, the same on every endpoint it guards.
CURRENT_PASSWORD_LIMIT = "current-password"
MFA_CODE_LIMIT = "mfa-codes"

limit_current_password = named_limit(
    "password_per_user",
    shared_scope=CURRENT_PASSWORD_LIMIT,
    key_func=_user_key,
    deduct_when=_wrong_password,
)
limit_mfa_codes = named_limit(
    "mfa_per_user",
    shared_scope=MFA_CODE_LIMIT,
    key_func=_caller_mfa_key,
    deduct_when=_wrong_mfa_code,
)
limit_mfa_signin = named_limit(
    "mfa_per_user",
    shared_scope=MFA_CODE_LIMIT,
    key_func=_mfa_token_key,
    deduct_when=_wrong_mfa_code,
)

# Provider sign-in starts and code exchanges per client address, in one bucket.
OAUTH_SCOPE = "oauth-per-address"
limit_oauth = named_limit(
    "oauth_per_address", shared_scope=OAUTH_SCOPE, key_func=get_remote_address
)

# Mails asked for per target address, shared by every endpoint that mails one.
MAIL_SCOPE = "mail-per-email"


def _accepted(response):
    """Count a mail request only when it queued a mail."""
    return response.status_code == 202


def _mails_to(key_func, deduct_when=None):
    """Limit the mails asked for to the address key_func names (RATELIMIT_MAIL_PER_EMAIL)."""
    return named_limit(
        "mail_per_email", shared_scope=MAIL_SCOPE, key_func=key_func, deduct_when=deduct_when
    )


def limit_reset_request(view):
    """Limit reset requests per target address and per client address, account or not."""
    view = _mails_to(_target_email)(view)
    return named_limit("reset_per_address", key_func=get_remote_address)(view)


limit_verification_resend = _mails_to(_caller_email, deduct_when=_accepted)


def limit_email_change(view):
    """Limit wrong passwords per user, and change mails per new address."""
    return limit_current_password(_mails_to(_new_email, deduct_when=_accepted)(view))


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


def _first_refusal_in_window():
    """Tell whether this refusal is the first of its key in this window of the breached limit.

    The marker lives in the limiter's storage as long as the window; of two
    refusals racing to set it, one sees 1. Reading it first spares the
    others a write (and memory storage the timer thread each write wakes).
    When the storage fails, nothing is audited rather than every refusal.
    """
    breached = limiter.current_limit
    if breached is None:
        return False
    marker, storage = f"breach/{breached.key}", limiter.limiter.storage
    try:
        return not storage.get(marker) and storage.incr(marker, breached.limit.get_expiry()) == 1
    except Exception:
        return False


def _audit_breach():
    """Write the breach's one audit row; a database in trouble loses the row, never the 429."""
    caller = g.get("session_row")
    roll_back()
    try:
        if caller is None:
            audit.record("rate_limited")
        else:
            audit.record("rate_limited", caller.id, caller.session_id)
        db.session.commit()
    except SQLAlchemyError as error:
        if not in_trouble(error):
            raise
        roll_back()
        log_unavailable(describe(error))


def rate_limited(error):
    """Answer a breached limit with 429 and Retry-After; count it, and audit the breach once."""
    count_refusal(g.get("breached_limit") or request.endpoint or "unmatched")
    if _first_refusal_in_window():
        _audit_breach()
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
