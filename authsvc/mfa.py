"""Blueprint "mfa": TOTP enrollment, recovery codes, turning MFA off, and signin's second step.

The logic lives in totp.py; these views load, act, commit and return. On the
Bearer endpoints a wrong code is 403 (the token is fine, the code is not);
at /auth/signin/mfa it is 401, like a wrong password at /auth/signin.
"""

from flask_jwt_extended import current_user

from authsvc import audit, challenges, gate, totp
from authsvc.bearer import token_required
from authsvc.callers import require_verified_address
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import limit_current_password, limit_mfa_codes, limit_mfa_signin
from authsvc.models import User
from authsvc.parsing import Blueprint
from authsvc.passwords import verify_password
from authsvc.schemas import (
    CodeSchema,
    CurrentPasswordSchema,
    EnrollmentSchema,
    MfaDisableSchema,
    MfaSigninSchema,
    RecoveryCodesSchema,
    SignedInSchema,
)
from authsvc.tokens import revoke_sessions_of

bp = Blueprint("mfa", __name__, description="Second factor: TOTP and recovery codes.")

INVALID_MFA_TOKEN = Problem(
    401, "invalid_mfa_token", "The mfaToken is unknown, used or expired; sign in again."
)


def refuse_code(status, user_id, session_id=None):
    """Record a wrong second-factor code and return the problem it gets."""
    audit.record("mfa_failed", user_id, session_id)
    db.session.commit()
    return Problem(status, "invalid_mfa_code", "The code is wrong, or was used already.")


def caller_with_password(password, verified=False):
    """Return the caller's user row if this is their current password; else answer 403.

    With `verified`, an address never verified is refused first (403 email_not_verified).
    """
    user = db.session.get(User, current_user.id)
    if verified:
        require_verified_address(user)
    if not verify_password(password, user.password_hash):
        audit.record("mfa_password_failed", user.id, current_user.session_id)
        db.session.commit()
        raise Problem(403, "invalid_password", "The current password is wrong.")
    return user


@bp.post("/users/me/mfa/totp")
@bp.response(200, EnrollmentSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@token_required(fresh=True)
@bp.arguments(CurrentPasswordSchema)
@limit_current_password
def enroll(body):
    """Start a TOTP enrollment: a new secret, pending until a code confirms it.

    Only for a verified address: an unverified account may be someone's
    pre-registration of another person's address, whose owner a second factor
    would lock out after they reset the password.
    """
    if current_user.mfa_enabled:
        raise totp.MFA_ALREADY_ENABLED
    user = caller_with_password(body["current_password"], verified=True)
    enrollment = totp.start_enrollment(user)
    if enrollment is None:
        db.session.rollback()
        raise totp.MFA_ALREADY_ENABLED
    audit.record("mfa_enrollment_started", user.id, current_user.session_id)
    db.session.commit()
    return enrollment


@bp.post("/users/me/mfa/totp/confirm")
@bp.response(200, RecoveryCodesSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@token_required()
@bp.arguments(CodeSchema)
@limit_mfa_codes
def confirm(body):
    """Turn MFA on with a code of the pending secret; end every other session (verified only)."""
    require_verified_address(db.session.get(User, current_user.id))
    codes = totp.confirm_enrollment(current_user.id, body["code"])
    if codes is None:
        raise refuse_code(403, current_user.id, current_user.session_id)
    revoke_sessions_of(current_user.id, keep=current_user.session_id)
    totp.notify(current_user.id, "mfa_enabled", current_user.session_id)
    db.session.commit()
    return {"recovery_codes": codes}


@bp.post("/users/me/mfa/recovery-codes")
@bp.response(200, RecoveryCodesSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@token_required(fresh=True)
@bp.arguments(CodeSchema)
@limit_mfa_codes
def regenerate_recovery_codes(body):
    """Replace the caller's recovery codes with ten new ones; needs a TOTP code."""
    if not current_user.mfa_enabled:
        raise totp.MFA_NOT_ENABLED
    if totp.use_code(current_user.id, body["code"], recovery=False) is None:
        raise refuse_code(403, current_user.id, current_user.session_id)
    codes = totp.new_recovery_codes(current_user.id)
    audit.record("recovery_codes_regenerated", current_user.id, current_user.session_id)
    db.session.commit()
    return {"recovery_codes": codes}


@bp.post("/users/me/mfa/disable")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@token_required(fresh=True)
@bp.arguments(MfaDisableSchema)
@limit_current_password
@limit_mfa_codes
def disable(body):
    """Turn the caller's MFA off; needs the password and a TOTP or recovery code."""
    if not current_user.mfa_enabled:
        raise totp.MFA_NOT_ENABLED
    user = caller_with_password(body["current_password"])
    if totp.use_code(user.id, body["code"]) is None:
        raise refuse_code(403, user.id, current_user.session_id)
    if not totp.turn_off(user.id):
        db.session.rollback()
        raise totp.MFA_NOT_ENABLED
    totp.notify(user.id, "mfa_disabled", current_user.session_id)
    db.session.commit()


@bp.post("/auth/signin/mfa")
@bp.arguments(MfaSigninSchema)
@bp.response(200, SignedInSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@limit_mfa_signin
def signin_mfa(body):
    """Finish a signin that asked for a second factor: the mfaToken and a TOTP or recovery code."""
    user_id = challenges.user_of(body["mfa_token"])
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is None or not challenges.count_attempt(body["mfa_token"]):
        db.session.rollback()
        raise INVALID_MFA_TOKEN
    # The attempt counts from here on, whatever the code turns out to be.
    db.session.commit()
    method = totp.use_code(user.id, body["code"])
    if method is None:
        raise refuse_code(401, user.id)
    if not challenges.use_up(body["mfa_token"]):
        db.session.rollback()
        raise INVALID_MFA_TOKEN
    first_factor = challenges.first_factor_of(body["mfa_token"])
    session, signed_in = gate.admit(user, [*first_factor, method], "signin_mfa")
    if method == "recovery":
        totp.notify(user.id, "recovery_code_used", session.id)
    db.session.commit()
    return signed_in
