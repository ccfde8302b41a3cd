"""Passkeys (WebAuthn): the two ceremonies, and authsvc's rules around them.

py_webauthn builds the options and checks what the browser sends back: the
challenge, the origin (one of WEBAUTHN_ORIGINS), the RP id hash, user
presence, user verification (for sign-in) and the signature. authsvc adds:

- challenges (passkey_challenges.py): 256 random bits, stored as a digest
  with their purpose (and their user, for registration), used up by one
  conditional UPDATE committed before the response is checked, so a
  challenge never serves twice, whether its ceremony succeeds or not;
- the sign count: where the stored count is above zero, a new count that is
  not greater (zero included) is refused and audited as a possible clone; the
  new count is stored by a conditional UPDATE, so of two assertions with the
  same count only one passes;
- one credential id for one user: a unique index (409 passkey_taken);
- the user handle an assertion returns must be the one its passkey was
  registered with;
- every sign-in failure is the one 401 invalid_credentials, audited.

Nothing here commits a success: the views do. Refusals commit their audit
rows, and a used challenge is committed at once.

py_webauthn is imported where a ceremony first runs, not with this module:
with the parsers behind it (pyasn1, cbor2, pyOpenSSL) it cost every
process some 0.1 s of CPU and several MiB, the `flask` CLI and the workers
that never see a passkey included.
"""

import re
import secrets

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from authsvc import audit
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import Passkey, User, utcnow
from authsvc.passkey_challenges import handle_of, open_challenge, use_challenge

USER_HANDLE_BYTES = 32
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn's limit
# A credential id as the table stores it: base64url, at most 1023 bytes' worth.
CREDENTIAL_ID = re.compile(r"[A-Za-z0-9_-]{1,1364}", re.ASCII)
DEFAULT_NAME = "Passkey"

passkeys = Passkey.__table__

INVALID_PASSKEY = Problem(
    400,
    "invalid_passkey",
    "The passkey was not accepted, or its challenge is unknown, used or expired; "
    "ask for new options and try again.",
)
PASSKEY_TAKEN = Problem(409, "passkey_taken", "This passkey is already registered.")


def _relying_party():
    """Return the relying party's id, its origins and its challenges' lifetime in seconds."""
    config = current_app.config
    return config["WEBAUTHN_RP_ID"], config["WEBAUTHN_ORIGINS"], config["WEBAUTHN_TIMEOUT"]


def registration_options(user):
    """Return a registration challenge and its options, the user's passkeys excluded.

    The user handle is the one the user's passkeys already carry, or a new
    random one: an authenticator keeps one passkey per relying party and
    handle. (Two first registrations at once may give two handles; each
    passkey keeps its own, so nothing depends on their being one.)
    """
    from webauthn import generate_registration_options
    from webauthn.helpers import base64url_to_bytes, options_to_json_dict
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    existing = db.session.execute(
        sa.select(passkeys.c.credential_id, passkeys.c.user_handle)
        .where(passkeys.c.user_id == user.id)
        .order_by(passkeys.c.id)
    ).all()
    handle = existing[0].user_handle if existing else secrets.token_urlsafe(USER_HANDLE_BYTES)
    challenge = open_challenge("registration", user.id, handle)
    rp_id, _, timeout = _relying_party()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=current_app.config["WEBAUTHN_RP_NAME"],
        user_name=user.email,
        user_id=base64url_to_bytes(handle),
        challenge=base64url_to_bytes(challenge),
        timeout=timeout * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id))
            for row in existing
        ],
    )
    return {"challenge_id": challenge, "public_key": options_to_json_dict(options)}


def authentication_options():
    """Return a sign-in challenge and its options: any discoverable passkey, user verified."""
    from webauthn import generate_authentication_options
    from webauthn.helpers import base64url_to_bytes, options_to_json_dict
    from webauthn.helpers.structs import UserVerificationRequirement

    challenge = open_challenge("authentication")
    rp_id, _, timeout = _relying_party()
    options = generate_authentication_options(
        rp_id=rp_id,
        challenge=base64url_to_bytes(challenge),
        timeout=timeout * 1000,
        allow_credentials=[],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return {"challenge_id": challenge, "public_key": options_to_json_dict(options)}


def _refuse_registration(user_id, session_id):
    """Audit a refused registration and return its 400."""
    db.session.rollback()
    audit.record("passkey_refused", user_id, session_id)
    db.session.commit()
    return INVALID_PASSKEY


def register(user_id, session_id, challenge_id, credential, name):
    """Check a new credential against its registration challenge; store it as a passkey.

    Return the new row. Raise 400 invalid_passkey for a challenge that is not
    live or a credential that fails a check, 409 passkey_taken for a
    credential id that is already registered, to anyone.
    """
    from webauthn import verify_registration_response
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

    if not use_challenge(challenge_id, "registration", user_id):
        raise _refuse_registration(user_id, session_id)
    handle = handle_of(challenge_id)
    rp_id, origins, _ = _relying_party()
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(challenge_id),
            expected_rp_id=rp_id,
            expected_origin=origins,
            require_user_presence=True,
        )
    except Exception:
        # Whatever fails while checking the client's bytes (py_webauthn's
        # own errors, or a parser's deeper down) is a refusal, never a 500.
        raise _refuse_registration(user_id, session_id) from None
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise _refuse_registration(user_id, session_id)
    passkey = Passkey(
        user_id=user_id,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        user_handle=handle,
        sign_count=verified.sign_count,
        name=name,
        backed_up=verified.credential_backed_up,
    )
    db.session.add(passkey)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        audit.record("passkey_refused", user_id, session_id)
        db.session.commit()
        raise PASSKEY_TAKEN from None
    return passkey


def refuse_signin(user_id=None, clone_suspected=False):
    """Audit a failed passkey sign-in and return the one 401 every failure gets."""
    db.session.rollback()
    if clone_suspected:
        audit.record("passkey_clone_suspected", user_id)
    audit.record("signin_failed", user_id)
    db.session.commit()
    return Problem(401, "invalid_credentials", "The passkey could not sign you in.")


def _passkey_named_by(credential):
    """Return the stored passkey whose credential id an assertion names, or None."""
    credential_id = credential.get("id")
    if not isinstance(credential_id, str) or not CREDENTIAL_ID.fullmatch(credential_id):
        return None  # not base64url, or too long: no stored id is like it
    return db.session.scalar(sa.select(Passkey).where(Passkey.credential_id == credential_id))


def _record_use(passkey, verified):
    """Store a sign-in's count, backup state and time, if the count grew; tell whether it did.

    One conditional UPDATE: where the stored count is above zero, only a
    greater one passes; an authenticator that keeps no count sends 0, and 0
    passes only while the stored count is 0. Two assertions with the same
    count cannot both pass.
    """
    count = verified.new_sign_count
    grows = passkeys.c.sign_count < count if count > 0 else passkeys.c.sign_count == 0
    result = db.session.execute(
        passkeys.update()
        .where(passkeys.c.id == passkey.id, grows)
        .values(sign_count=count, last_used_at=utcnow(), backed_up=verified.credential_backed_up)
    )
    return result.rowcount == 1


def authenticate(challenge_id, credential):
    """Return the user whose passkey answered a sign-in challenge; else raise the one 401."""
    from webauthn import verify_authentication_response
    from webauthn.helpers import (
        base64url_to_bytes,
        bytes_to_base64url,
        parse_authentication_credential_json,
    )

    if not use_challenge(challenge_id, "authentication"):
        raise refuse_signin()
    passkey = _passkey_named_by(credential)
    if passkey is None:
        raise refuse_signin()
    rp_id, origins, _ = _relying_party()
    try:
        parsed = parse_authentication_credential_json(credential)
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=base64url_to_bytes(challenge_id),
            expected_rp_id=rp_id,
            expected_origin=origins,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,  # authsvc's own rule, in _record_use()
            require_user_verification=True,
        )
    except Exception:
        # As for registration: any failure to check the client's bytes refuses.
        raise refuse_signin(passkey.user_id) from None
    handle = parsed.response.user_handle
    if handle is None or bytes_to_base64url(handle) != passkey.user_handle:
        raise refuse_signin(passkey.user_id)
    if not _record_use(passkey, verified):
        raise refuse_signin(passkey.user_id, clone_suspected=True)
    return db.session.get(User, passkey.user_id)
