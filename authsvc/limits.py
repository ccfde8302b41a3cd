"""Rate limits on the endpoints attackers hammer, and the 429 they get.

Failed signins are counted per client address and per target email (so a
botnet spread over many addresses still cannot hammer one account); only
failures count, so the real user signing in is never what fills a bucket.
Likewise wrong current passwords and wrong second-factor codes are counted
per user, each in one bucket shared by every endpoint that checks them.

An attempt is counted before it is checked: a limited view runs only once
it holds a slot of its limit (slots.py takes it atomically, in Redis or in
memory), and where only failures count, a success gives its slot back. So
however many requests arrive at once, no more are checked than the limit's
count. See docs/limits.md.

A refusal is answered by refusals.py.
"""

import functools
import hashlib

import limits
from flask import after_this_request, current_app, g, request
from flask_jwt_extended import get_current_user, get_jwt
from flask_limiter.util import get_remote_address

from authsvc import challenges
from authsvc.refusals import LimitReached, rate_limited
from authsvc.slots import Slots


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

    A token that names nobody is answered without checking any code: no limit applies.
    """
    user_id = challenges.user_of(request.get_json()["mfaToken"])
    return None if user_id is None else f"mfa-user:{user_id}"


def _session_key():
    """Key a refresh by its session, known once the token is verified."""
    return "session:" + get_jwt()["sid"]


@functools.cache
def _items(rate):
    """Return the rate items of a limit string, the shortest window first."""
    return tuple(sorted(limits.parse_many(rate), key=lambda item: item.get_expiry()))


def _slots():
    """Return the app's slots (its limit storage, with memory as the fallback)."""
    return current_app.extensions["authsvc-slots"]


def take_slots(name, rate, key, scope):
    """Take a slot of every item of a rate, or none: raise LimitReached when one is full."""
    slots, identifiers = _slots(), (current_app.config["RATELIMIT_KEY_PREFIX"], key, scope)
    taken = []
    for item in _items(rate):
        slot = slots.take(item, *identifiers)
        if slot is None:
            for earlier in taken:
                slots.give_back(earlier)
            raise LimitReached(name, item, identifiers)
        taken.append(slot)
    return taken


def _settle(response):
    """Give back the slots this request holds that its answer says must not count.

    A 429 gives back every slot: the request was never checked.
    """
    refused = g.get("limit_refused", False)
    for slots_of_limit, counts in g.pop("held_slots", []):
        if refused or (counts is not None and not counts(response)):
            for slot in slots_of_limit:
                _slots().give_back(slot)
    return response


def hold(name, key, scope, counts=None):
    """Hold a slot of limit `name` for this request, until its answer says whether it counts."""
    taken = take_slots(name, current_app.config[f"RATELIMIT_{name.upper()}"], key, scope)
    if "held_slots" not in g:
        g.held_slots = []
        after_this_request(_settle)
    g.held_slots.append((taken, counts))


def named_limit(name, shared_scope=None, key_func=get_remote_address, deduct_when=None):
    """Return a decorator limiting a view by the setting RATELIMIT_<NAME>, named `name` in /metrics.

    The view runs only once it holds a slot of the limit, for the key
    key_func() returns (None: the limit does not apply). With `deduct_when`,
    a predicate of the response, an answer it calls False gives the slot
    back (a success, where only failures count). With a `shared_scope`, one
    bucket serves every endpoint the limit guards.
    """

    def decorate(view):
        """Wrap a view in the limit."""

        @functools.wraps(view)
        def limited(*args, **kwargs):
            """Take a slot, then run the view."""
            if current_app.config["RATELIMIT_ENABLED"]:
                key = key_func()
                if key:
                    hold(name, key, shared_scope or request.endpoint, deduct_when)
            return view(*args, **kwargs)

        return limited

    return decorate


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


# Every email change counts, whatever its answer (409 email_taken included),
# so that a signed-in user cannot test which addresses have accounts.
limit_email_changes_per_user = named_limit("email_change_per_user", key_func=_user_key)


def take_mail_quota(address):
    """Count one mail to an address outside a limited view; tell whether it was within limits.

    Signin mails a new verification link to an unverified account under
    REQUIRE_VERIFIED_EMAIL=1; this counts it in the same bucket as the
    endpoints above (prefix, key, scope), and it is never given back.
    """
    config = current_app.config
    if not config["RATELIMIT_ENABLED"]:
        return True
    rate = config["RATELIMIT_MAIL_PER_EMAIL"]
    try:
        take_slots("mail_per_email", rate, _email_key(address), MAIL_SCOPE)
    except LimitReached:
        return False
    return True


def register_rate_limits(app):
    """Open the limits' storage (connecting when first used), and answer refusals with 429."""
    config = app.config
    app.extensions["authsvc-slots"] = Slots(
        config["RATELIMIT_STORAGE_URI"], config["RATELIMIT_STORAGE_OPTIONS"]
    )
    app.register_error_handler(LimitReached, rate_limited)
