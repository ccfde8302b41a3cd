"""Signing keys for EdDSA and RS256: kept in the database, cached in each process.

Every instance reads the same table, so `flask keys rotate` on one machine is
seen by all of them within KEY_CACHE_SECONDS. The newest key that is not
retired signs; every key that is not retired verifies and is published in the
JWKS. Under HS256 none of this is used: JWT_SECRET_KEY signs.
"""

import json
import logging
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask import after_this_request, current_app, g
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from authsvc import sealing
from authsvc.extensions import db
from authsvc.extensions import jwt as jwt_manager
from authsvc.models import SigningKey, utcnow

ASYMMETRIC = ("EdDSA", "RS256")
KEY_CACHE_SECONDS = 5
UNKNOWN_KID_RELOAD_SECONDS = 1
LEGACY_PEM = "-----BEGIN ENCRYPTED PRIVATE KEY-----"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedKey:
    """A key ready to use: the objects PyJWT signs and verifies with."""

    kid: str
    algorithm: str
    private_key: object
    public_jwk: dict


class KeyRing:
    """The keys that are not retired, as this process last read them."""

    def __init__(self):
        self.keys, self.loaded_at, self.lock = {}, 0.0, threading.Lock()

    def reload(self, max_age):
        """Read the keys again if this copy is older than max_age seconds."""
        if time.monotonic() - self.loaded_at < max_age:
            return
        with self.lock:
            rows = db.session.scalars(
                sa.select(SigningKey)
                .where(SigningKey.retired_at.is_(None))
                .order_by(SigningKey.created_at, SigningKey.kid)
            ).all()
            loaded = (self.keys.get(row.kid) or _load_or_skip(row) for row in rows)
            self.keys = {key.kid: key for key in loaded if key is not None}
            self.loaded_at = time.monotonic()


def _ring():
    """Return this app's key ring."""
    return current_app.extensions.setdefault("authsvc-keys", KeyRing())


def _private_pem(stored):
    """Return the PKCS#8 PEM of a stored private key, unencrypted, in memory only."""
    if stored.startswith(LEGACY_PEM):
        # Keys made before sealing.py: PKCS#8 encrypted with JWT_SECRET_KEY as
        # the passphrase. They still load; `keys reseal` converts them.
        private_key = serialization.load_pem_private_key(
            stored.encode(), current_app.config["JWT_SECRET_KEY"].encode()
        )
        return _pem(private_key)
    return sealing.unseal("signing-key", stored)


def _pem(private_key):
    """Return a private key as unencrypted PKCS#8 PEM."""
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load(row):
    """Decrypt a stored key."""
    private_key = serialization.load_pem_private_key(_private_pem(row.private_pem), None)
    return LoadedKey(row.kid, row.algorithm, private_key, json.loads(row.public_jwk))


def _load_or_skip(row):
    """Decrypt a stored key, or log and skip one that JWT_SECRET_KEY no longer opens.

    Such a key can neither sign nor verify: its tokens are refused, and if no
    key is left the next request that signs makes a new one, as on a first start.
    """
    try:
        return _load(row)
    except sealing.SealError:
        log.error("signing key %s does not open with JWT_SECRET_KEY; it is skipped", row.kid)
        return None


def reseal_keys():
    """Seal every stored private key again with the current JWT_SECRET_KEY; return how many."""
    rows = db.session.scalars(sa.select(SigningKey)).all()
    for row in rows:
        row.private_pem = sealing.seal("signing-key", _private_pem(row.private_pem))
    return len(rows)


def create_key(algorithm):
    """Make a new key pair and add it to the session; once committed it signs."""
    if algorithm == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
        public_jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        public_jwk.pop("key_ops", None)
    kid = secrets.token_hex(8)  # shell-safe: never starts with "-"
    public_jwk.update(kid=kid, alg=algorithm, use="sig")
    db.session.add(
        SigningKey(
            kid=kid,
            algorithm=algorithm,
            private_pem=sealing.seal("signing-key", _pem(private_key)),
            public_jwk=json.dumps(public_jwk),
            created_at=utcnow(),
        )
    )
    return kid


def retire_key(kid):
    """Stop verifying a key's tokens and drop it from the JWKS; tell whether it existed."""
    result = db.session.execute(
        sa.update(SigningKey)
        .where(SigningKey.kid == kid, SigningKey.retired_at.is_(None))
        .values(retired_at=utcnow())
    )
    return result.rowcount == 1


def asymmetric():
    """Tell whether tokens are signed with key pairs rather than JWT_SECRET_KEY."""
    return current_app.config["JWT_ALGORITHM"] in ASYMMETRIC


def _usable_keys():
    """Return the keys of the configured algorithm, oldest first."""
    ring = _ring()
    ring.reload(KEY_CACHE_SECONDS)
    algorithm = current_app.config["JWT_ALGORITHM"]
    return [key for key in ring.keys.values() if key.algorithm == algorithm]


def _first_key():
    """Make the first key pair, in this request's transaction; it commits with the request's writes.

    Operators normally run `flask keys rotate` once; this keeps a service
    whose operator has not from failing its first signin, without a look at
    the database before every request. Until the request commits, the key is
    this request's alone; the next request reads the table again. Two
    instances racing here make two keys, which is harmless: both verify.
    """
    kid = create_key(current_app.config["JWT_ALGORITHM"])
    g.first_key = _load(db.session.get(SigningKey, kid))
    after_this_request(_read_keys_again)
    return g.first_key


def _read_keys_again(response):
    """Have the next request read the keys again, whether this one committed its key or not."""
    _ring().loaded_at = 0.0
    return response


def signing_key():
    """Return the key that signs in this request: the pinned one, else the newest.

    The choice is pinned for the rest of the request, so that a token's kid
    header and its signature always come from the same key.
    """
    usable = _usable_keys()
    pinned = [key for key in usable if key.kid == g.get("signing_kid")]
    key = (pinned or usable or [g.get("first_key") or _first_key()])[-1]
    g.signing_kid = key.kid
    return key


def current_kid():
    """Return the kid that signs in this request, or None under HS256."""
    return signing_key().kid if asymmetric() else None


@contextmanager
def signing_with(kid):
    """Sign inside this block with a given key (a retry re-issues a token byte for byte)."""
    previous = g.get("signing_kid")
    g.signing_kid = kid
    try:
        yield
    finally:
        g.signing_kid = previous


@jwt_manager.encode_key_loader
def encoding_key(identity):
    """Sign with JWT_SECRET_KEY under HS256, else with the current private key."""
    if not asymmetric():
        return current_app.config["JWT_SECRET_KEY"]
    return signing_key().private_key


@jwt_manager.additional_headers_loader
def key_id_header(identity):
    """Name the signing key in every token's header (none under HS256)."""
    return {"kid": signing_key().kid} if asymmetric() else {}


@jwt_manager.decode_key_loader
def decoding_key(jwt_header, claims):
    """Verify with JWT_SECRET_KEY under HS256, else with the key the kid names."""
    if not asymmetric():
        return current_app.config["JWT_SECRET_KEY"]
    return verifying_key(jwt_header)


def verifying_key(jwt_header):
    """Return the public key for a token's kid; an unknown or retired kid is refused."""
    kid = jwt_header.get("kid")
    if not isinstance(kid, str):
        raise jwt.InvalidTokenError("The token names no signing key")
    ring = _ring()
    ring.reload(KEY_CACHE_SECONDS)
    if kid not in ring.keys:
        # A key rotated in on another instance moments ago: read again, but
        # not more than once a second however many bad kids arrive.
        ring.reload(UNKNOWN_KID_RELOAD_SECONDS)
    key = ring.keys.get(kid)
    if key is None or key.algorithm != jwt_header.get("alg"):
        raise jwt.InvalidTokenError("The token's signing key is unknown or retired")
    return key.private_key.public_key()


def jwks():
    """Return the public keys that verify tokens now, as an RFC 7517 key set.

    Read from the database every time (verifiers cache it, so this is no hot
    path): a key is then published before any worker can sign with it, and a
    retired one disappears at once.
    """
    if not asymmetric():
        return {"keys": []}
    ring = _ring()
    ring.reload(0)
    return {"keys": [key.public_jwk for key in ring.keys.values()]}
