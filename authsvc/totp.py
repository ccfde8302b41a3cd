"""The second factor: TOTP secrets and codes, recovery codes, turning MFA on and off.

TOTP is RFC 6238 as every authenticator app speaks it (SHA-1, 6 digits,
30-second steps), accepting one step of drift either way. Each race is
settled by one conditional UPDATE: a time step is used once (last_used_step
only moves forward) and a recovery code once (used_at), so of two concurrent
requests with the same code exactly one wins. Secrets are sealed at rest;
recovery codes are stored only as SHA-256 digests. Nothing here commits: the
views do, with the audit row. mfaTokens live in challenges.py.
"""

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time

import pyotp
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite

from authsvc import audit, mail, sealing
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import MfaChallenge, RecoveryCode, TotpFactor, User, utcnow
from authsvc.tokens import revoke_sessions_of

STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters
TOTP_CODE = re.compile(r"[0-9]{6}", re.ASCII)
RECOVERY_CODE = re.compile(r"[A-Z2-7]{16}", re.ASCII)

factors = TotpFactor.__table__
recovery_codes = RecoveryCode.__table__
users = User.__table__
log = logging.getLogger(__name__)

NO_PENDING_MFA = Problem(
    409, "no_pending_mfa", "There is no TOTP enrollment to confirm; start one first."
)
MFA_ALREADY_ENABLED = Problem(409, "mfa_already_enabled", "MFA is already on for this account.")
MFA_NOT_ENABLED = Problem(409, "mfa_not_enabled", "MFA is not on for this account.")


def clock():
    """Return the time TOTP steps are counted from, in epoch seconds."""
    return time.time()


def digest(text):
    """Return the SHA-256 hex digest of a code or mfaToken, as the tables store them."""
    # surrogatepass: a lone surrogate from JSON is just another wrong token.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def normalised(code):
    """Return a code as typed, without spaces or dashes, in upper case."""
    return "".join(code.split()).replace("-", "").upper()


def _insert(table):
    """Return an INSERT of this database's dialect, for ON CONFLICT."""
    dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    return dialects[db.session.get_bind().dialect.name](table)


def start_enrollment(user):
    """Give a user a new pending TOTP secret, replacing a pending one.

    Return the secret and its otpauth:// URI, or None if MFA is already on:
    one INSERT ... ON CONFLICT that replaces only a factor not yet enabled.
    """
    secret = pyotp.random_base32()
    insert = _insert(factors).values(
        user_id=user.id, secret=sealing.seal("totp", secret.encode()), created_at=utcnow()
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[factors.c.user_id],
        set_={
            "secret": insert.excluded.secret,
            "created_at": insert.excluded.created_at,
            "last_used_step": None,
        },
        where=factors.c.enabled_at.is_(None),
    )
    # RETURNING, not rowcount: SQLAlchemy reports no rowcount for INSERTs on PostgreSQL.
    if db.session.execute(upsert.returning(factors.c.user_id)).first() is None:
        return None
    uri = pyotp.TOTP(secret).provisioning_uri(
        name=user.email, issuer_name=current_app.config["MFA_ISSUER"]
    )
    return {"secret": secret, "otpauth_uri": uri}


def _matching_step(factor, code):
    """Return the time step, within the drift allowed, whose code this is; or None."""
    try:
        secret = sealing.unseal("totp", factor.secret).decode()
    except sealing.SealError:
        # JWT_SECRET_KEY changed without `keys reseal`: no code can match.
        log.error("the TOTP secret of user %s does not open; see `keys reseal`", factor.user_id)
        return None
    totp = pyotp.TOTP(secret)
    now = int(clock() // STEP_SECONDS)
    matched = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            matched = step
    return matched


def reseal_secrets():
    """Seal every TOTP secret again with the current JWT_SECRET_KEY; return how many."""
    rows = db.session.execute(sa.select(factors.c.user_id, factors.c.secret)).all()
    for row in rows:
        db.session.execute(
            factors.update()
            .where(factors.c.user_id == row.user_id)
            .values(secret=sealing.reseal("totp", row.secret))
        )
    return len(rows)


def _use_step(user_id, step, *conditions, **values):
    """Mark a time step used, unless it or a later one was; return whether it was free."""
    unused = sa.or_(factors.c.last_used_step.is_(None), factors.c.last_used_step < step)
    result = db.session.execute(
        factors.update()
        .where(factors.c.user_id == user_id, unused, *conditions)
        .values(last_used_step=step, **values)
    )
    return result.rowcount == 1


def _factor(user_id):
    """Return a user's TOTP factor row, or None."""
    return db.session.execute(sa.select(factors).where(factors.c.user_id == user_id)).first()


def confirm_enrollment(user_id, code):
    """Turn MFA on with a code of the pending secret; return the new recovery codes.

    Return None for a wrong code; raise NO_PENDING_MFA when there is no
    pending enrollment (or it was replaced or confirmed meanwhile).
    """
    factor = _factor(user_id)
    if factor is None or factor.enabled_at is not None:
        raise NO_PENDING_MFA
    code = normalised(code)
    step = _matching_step(factor, code) if TOTP_CODE.fullmatch(code) else None
    if step is None:
        return None
    # The secret in the condition: a new enrollment meanwhile is not confirmed by the old code.
    pending = sa.and_(factors.c.enabled_at.is_(None), factors.c.secret == factor.secret)
    if not _use_step(user_id, step, pending, enabled_at=utcnow()):
        raise NO_PENDING_MFA
    db.session.execute(users.update().where(users.c.id == user_id).values(mfa_enabled=True))
    return new_recovery_codes(user_id)


def _use_totp_code(user_id, code):
    """Accept a code of the user's enabled TOTP factor once; return whether it was."""
    factor = _factor(user_id)
    if factor is None or factor.enabled_at is None:
        return False
    step = _matching_step(factor, code)
    return step is not None and _use_step(user_id, step, factors.c.enabled_at.is_not(None))


def _use_recovery_code(user_id, code):
    """Accept one of the user's unused recovery codes once; return whether it was."""
    result = db.session.execute(
        recovery_codes.update()
        .where(
            recovery_codes.c.user_id == user_id,
            recovery_codes.c.code_digest == digest(code),
            recovery_codes.c.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )
    return result.rowcount == 1


def use_code(user_id, code, recovery=True):
    """Accept a second-factor code once; return the amr method it proves, or None.

    Six digits are a TOTP code ("otp"); sixteen base32 characters a recovery
    code ("recovery"), unless `recovery` is False; anything else is wrong.
    """
    code = normalised(code)
    if TOTP_CODE.fullmatch(code):
        return "otp" if _use_totp_code(user_id, code) else None
    if recovery and RECOVERY_CODE.fullmatch(code):
        return "recovery" if _use_recovery_code(user_id, code) else None
    return None


def new_recovery_codes(user_id):
    """Replace a user's recovery codes with ten new ones; return them, to be shown this once."""
    db.session.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
    codes = [
        base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode()
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    db.session.execute(
        recovery_codes.insert(), [{"user_id": user_id, "code_digest": digest(c)} for c in codes]
    )
    return ["-".join(code[i : i + 4] for i in range(0, 16, 4)).lower() for code in codes]


def turn_off(user_id):
    """Turn MFA off: factor, recovery codes and mfaTokens go. Return whether it was on."""
    result = db.session.execute(
        users.update()
        .where(users.c.id == user_id, users.c.mfa_enabled.is_(True))
        .values(mfa_enabled=False)
    )
    if result.rowcount != 1:
        return False
    for table in (factors, recovery_codes, MfaChallenge.__table__):
        db.session.execute(table.delete().where(table.c.user_id == user_id))
    return True


def reset(user_id, session_id=None):
    """Turn a user's MFA off for an admin or operator and end the user's sessions.

    Return whether MFA was on; if it was not, nothing changes.
    """
    if not turn_off(user_id):
        return False
    revoke_sessions_of(user_id)
    notify(user_id, "mfa_reset", session_id)
    return True


def notify(user_id, event, session_id=None):
    """Record that MFA was turned on or off, or a recovery code used, and mail the user.

    The mail goes to the account's address through the outbox, in the
    caller's transaction; with MAIL_URL=none there is only the audit event.
    """
    audit.record(event, user_id, session_id)
    if not mail.enabled():
        return
    email = db.session.scalar(sa.select(users.c.email).where(users.c.id == user_id))
    if event == "recovery_code_used":
        unused = sa.and_(recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))
        left = db.session.scalar(sa.select(sa.func.count()).where(unused))
        mail.queue("recovery_code_used", email, remaining=left)
    else:
        kind = "mfa_enabled" if event == "mfa_enabled" else "mfa_disabled"
        mail.queue(kind, email, by_admin=event == "mfa_reset")
