"""Encryption at rest for what authsvc must read back: signing keys, queued mail, TOTP secrets.

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under a key
derived from JWT_SECRET_KEY with HKDF, one key per purpose, so a value sealed
for one table cannot be passed off as another's. A copy of the database alone
gives nothing away. JWT_PREVIOUS_SECRET_KEY, when set, still opens what the
previous secret sealed, until `flask --app authsvc keys reseal` has sealed it
again with the current one.
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

PURPOSES = ("signing-key", "mail", "totp")


class SealError(ValueError):
    """A sealed value that no configured secret opens (JWT_SECRET_KEY changed?)."""


@functools.lru_cache(maxsize=16)
def _fernet(secret, purpose):
    """Return the Fernet of one secret and purpose."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"authsvc sealing", info=purpose.encode()
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _sealer(purpose):
    """Return the MultiFernet that seals with the current secret and opens with either."""
    assert purpose in PURPOSES, purpose
    config = current_app.config
    secrets = [config["JWT_SECRET_KEY"], config.get("JWT_PREVIOUS_SECRET_KEY")]
    return MultiFernet([_fernet(secret, purpose) for secret in secrets if secret])


def seal(purpose, data):
    """Encrypt bytes for storage; return URL-safe text."""
    return _sealer(purpose).encrypt(data).decode("ascii")


def unseal(purpose, sealed):
    """Decrypt what seal() returned, or raise SealError."""
    try:
        return _sealer(purpose).decrypt(sealed.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise SealError(f"a sealed {purpose} value does not open with JWT_SECRET_KEY") from None


def reseal(purpose, sealed):
    """Return a value sealed again with the current secret, or raise SealError."""
    try:
        return _sealer(purpose).rotate(sealed.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError):
        raise SealError(f"a sealed {purpose} value does not open with JWT_SECRET_KEY") from None
