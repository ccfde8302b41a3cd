"""A software WebAuthn authenticator for tests, built on `cryptography` and `cbor2`.

It makes what a browser and its authenticator send: real attestation
objects (fmt "none") for navigator.credentials.create() and real assertions
for navigator.credentials.get(), as PublicKeyCredential.toJSON() writes them.
Authenticator data holds the RP id hash, the flags (UP, UV, BE, BS), the
counter and, at registration, the credential's COSE public key; an
assertion's signature covers authData + SHA-256(clientDataJSON). Every
argument that a test may want wrong (origin, RP id, flags, counter,
signature) can be set per call.

    key = Authenticator("ES256")
    credential = key.create(options["publicKey"])
    assertion = key.get(options["publicKey"], counter=0)
"""

import base64
import hashlib
import json
import os
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ORIGIN = "http://localhost:8000"
RP_ID = "localhost"
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes(16)  # "none" attestation: an all-zero AAGUID


def b64url(data):
    """Encode bytes as unpadded base64url, as WebAuthn's JSON does."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def client_data(kind, challenge, origin):
    """Return clientDataJSON bytes as a browser writes them."""
    document = {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    return json.dumps(document, separators=(",", ":")).encode()


class Authenticator:
    """One credential on a software authenticator: an ES256 or Ed25519 key and a counter."""

    def __init__(self, algorithm="ES256", credential_id=None):
        self.algorithm = algorithm
        if algorithm == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
        else:
            self.key = Ed25519PrivateKey.generate()
        self.credential_id = credential_id or os.urandom(32)
        self.counter = 0
        self.user_handle = None

    @property
    def id(self):
        """Return the credential id as base64url."""
        return b64url(self.credential_id)

    def cose_key(self):
        """Return the credential's public key as a COSE_Key (RFC 9053)."""
        public = self.key.public_key()
        if self.algorithm == "ES256":
            numbers = public.public_numbers()
            x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
            return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y})
        raw = public.public_bytes_raw()
        return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: raw})

    def sign(self, data):
        """Sign as the credential's algorithm says: ECDSA P-256 SHA-256 (DER), or Ed25519."""
        if self.algorithm == "ES256":
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data)

    def auth_data(self, rp_id, flags, counter, attested=False):
        """Return authenticator data: RP id hash, flags, counter, and the credential if attested."""
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags | (AT if attested else 0)])
        data += struct.pack(">I", counter)
        if attested:
            data += AAGUID + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += self.cose_key()
        return data

    def create(self, options, origin=ORIGIN, rp_id=None, flags=UP | UV | BE | BS):
        """Answer creation options: a new credential with a "none" attestation."""
        self.user_handle = options["user"]["id"]
        data = client_data("webauthn.create", options["challenge"], origin)
        auth_data = self.auth_data(rp_id or options["rp"]["id"], flags, self.counter, True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        response = {
            "clientDataJSON": b64url(data),
            "attestationObject": b64url(attestation),
            "transports": ["internal"],
        }
        return self._credential(response)

    def get(self, options, origin=ORIGIN, rp_id=None, flags=UP | UV | BE | BS, counter=None):
        """Answer request options: an assertion; the counter goes up by one unless given."""
        self.counter = self.counter + 1 if counter is None else counter
        data = client_data("webauthn.get", options["challenge"], origin)
        auth_data = self.auth_data(rp_id or options["rpId"], flags, self.counter)
        signature = self.sign(auth_data + hashlib.sha256(data).digest())
        response = {
            "clientDataJSON": b64url(data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
            "userHandle": self.user_handle,
        }
        return self._credential(response)

    def _credential(self, response):
        """Wrap a response as PublicKeyCredential.toJSON() does."""
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "response": response,
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }
