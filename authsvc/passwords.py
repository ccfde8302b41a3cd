"""Passwords: hashing and verifying with bcrypt, and refusing guessable ones."""

import base64
import functools
import hashlib

import bcrypt
from flask import current_app

from authsvc.errors import Problem

# zxcvbn's time grows fast with length (half a second at 128 characters);
# a prefix of 32 is as strong as zxcvbn can tell, and never stronger than
# the whole password, so rating it refuses everything the whole would.
RATED_PREFIX = 32


def _prehash(password):
    """Digest the whole password into 44 ASCII bytes.

    bcrypt reads only the first 72 bytes of its input (and bcrypt 5 refuses
    longer ones), so a long password would lose its tail. Every code point of
    the password counts in the SHA-256 digest, and base64 keeps NUL bytes out.
    """
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password, rounds=None):
    """Return the bcrypt hash of a password at the configured cost."""
    rounds = rounds or current_app.config["BCRYPT_ROUNDS"]
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password, password_hash):
    """Tell whether a password matches a stored hash; with no hash (no password), it never does."""
    if password_hash is None:
        return verify_dummy(password)
    return bcrypt.checkpw(_prehash(password), password_hash.encode("ascii"))


@functools.cache
def _dummy_hash(rounds):
    """Return a hash of nothing anyone knows, at the given cost."""
    return hash_password(base64.b64encode(bcrypt.gensalt()).decode(), rounds)


def verify_dummy(password):
    """Spend the time of a real check when there is no user, and refuse."""
    verify_password(password, _dummy_hash(current_app.config["BCRYPT_ROUNDS"]))
    return False


def hash_cost(password_hash):
    """Return the bcrypt cost a stored hash was made with."""
    return int(password_hash.split("$")[2])


def refuse_weak_password(password, email, field="password"):
    """Refuse with 422 weak_password a password zxcvbn rates too guessable."""
    # zxcvbn's word lists take some 12 MiB: a worker loads them at its first
    # signup or password change, not at start.
    from zxcvbn import zxcvbn

    result = zxcvbn(
        password[:RATED_PREFIX],
        user_inputs=[email, email.partition("@")[0]],
        max_length=RATED_PREFIX,
    )
    if result["score"] >= current_app.config["PASSWORD_MIN_SCORE"]:
        return
    warning = result["feedback"]["warning"]
    hints = " ".join(result["feedback"]["suggestions"])
    raise Problem(
        422,
        "weak_password",
        f"The password is too easy to guess. {warning}".strip(),
        errors={field: [f"{warning or 'This password is too easy to guess.'} {hints}".strip()]},
    )
