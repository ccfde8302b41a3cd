"""The one way in: every sign-in path ends in admit().

A path proves its factor (a password, an mfaToken and its code, a
provider's identity, a passkey) and then calls admit(), which applies the
account's rules in one order:

1. a disabled account is refused (403 account_disabled);
2. under REQUIRE_VERIFIED_EMAIL=1, an unverified address is refused
   (403 email_not_verified), with a new link mailed within its limit;
3. a user with MFA on whose path proved no second factor gets an mfaToken
   (403 mfa_required) instead of a session;
4. a session opens with the methods the path proved as its `amr`;
5. the sign-in is audited, which counts it in /metrics.

A check that one path forgot would be an account takeover: no path opens a
session any other way. Nothing here commits on success; the view does. A
refusal commits its own audit row (and the mfaToken or mail it makes).
"""

from flask import current_app

from authsvc import audit, challenges, mail, mailflows
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import take_mail_quota
from authsvc.models import SECOND_FACTORS
from authsvc.telemetry import count_signin
from authsvc.tokens import open_session

ACCOUNT_DISABLED = Problem(403, "account_disabled", "This account is disabled.")


def refuse_disabled(user):
    """Refuse a disabled account, and audit the attempt."""
    if user.disabled:
        audit.record("signin_disabled", user.id)
        db.session.commit()
        raise ACCOUNT_DISABLED


def refuse_unverified(user):
    """Refuse an unverified address, mailing it a new link within the mail limit."""
    if mail.enabled() and take_mail_quota(user.email):
        mailflows.send_verification(user)
        audit.record("verification_sent", user.id)
        db.session.commit()
    raise Problem(
        403,
        "email_not_verified",
        "Verify your email address first; the link was mailed to it.",
    )


def second_factor_required(user, methods):
    """Open an mfaToken that remembers the first factor; return signin's 403 mfa_required."""
    token = challenges.open_challenge(user.id, " ".join(methods))
    audit.record("mfa_challenged", user.id)
    db.session.commit()
    return Problem(
        403,
        "mfa_required",
        "This account needs a second factor: send mfaToken and a code to /auth/signin/mfa.",
        mfaToken=token,
    )


def admit(user, methods, event):
    """Let a user in by the methods a path proved, or refuse by the account's rules.

    `methods` are RFC 8176 values, the first factor first (["pwd"],
    ["oauth", "otp"], ["hwk", "mfa"]); `event` is the audit event of a
    successful sign-in. Return the new session and the sign-in's answer
    {id, email, accessToken, refreshToken}.
    """
    refuse_disabled(user)
    if current_app.config["REQUIRE_VERIFIED_EMAIL"] and not user.email_verified:
        refuse_unverified(user)
    if user.mfa_enabled and not SECOND_FACTORS.intersection(methods):
        raise second_factor_required(user, methods)
    session, tokens = open_session(user, amr=" ".join(methods))
    audit.record(event, user.id, session.id)
    count_signin(methods[0])
    return session, {"id": user.id, "email": user.email, **tokens}
