"""Hashing and verifying passwords."""

import pytest
from conftest import settings

from authsvc import create_app
from authsvc.passwords import hash_cost, hash_password, verify_dummy, verify_password


@pytest.fixture(scope="module")
def ctx():
    """Run inside an app context (the cost comes from config); no database needed."""
    with create_app(settings("sqlite://")).app_context():
        yield


def test_hash_verifies_its_password(ctx):
    """A hash verifies the password it was made from, and nothing else."""
    stored = hash_password("correct horse battery")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse batterx", stored)


def test_hash_uses_the_configured_cost(ctx):
    """BCRYPT_ROUNDS sets the cost."""
    assert hash_cost(hash_password("some password")) == 4
    assert hash_cost(hash_password("some password", rounds=5)) == 5


def test_password_tail_past_72_bytes_counts(ctx):
    """bcrypt alone ignores bytes past 72; authsvc does not."""
    head = "x" * 72
    stored = hash_password(head + "A")
    assert not verify_password(head + "B", stored)


def test_longest_password_hashes(ctx):
    """128 four-byte characters (512 bytes) hash without bcrypt's 72-byte error."""
    password = "😀" * 128
    assert verify_password(password, hash_password(password))


def test_dummy_verify_always_refuses(ctx):
    """The unknown-user check spends time and refuses."""
    assert verify_dummy("anything at all") is False
