"""Encryption at rest: sealing.py, keyed from JWT_SECRET_KEY."""

import pytest
from conftest import settings

from authsvc import create_app, sealing

OTHER_SECRET = "another-test-signing-key-that-is-long-enough"


@pytest.fixture
def sealer_app():
    """Return an app that needs no database, for sealing alone."""
    return create_app(settings("sqlite://"))


def test_sealed_value_opens_and_hides_the_plaintext(sealer_app):
    """What seal() returns opens again, and does not contain the plaintext."""
    with sealer_app.app_context():
        sealed = sealing.seal("mail", b"the secret body")
        assert b"secret" not in sealed.encode()
        assert sealing.unseal("mail", sealed) == b"the secret body"


def test_each_purpose_has_its_own_key(sealer_app):
    """A value sealed for one purpose does not open as another's."""
    with sealer_app.app_context():
        sealed = sealing.seal("totp", b"JBSWY3DPEHPK3PXP")
        with pytest.raises(sealing.SealError):
            sealing.unseal("mail", sealed)


@pytest.mark.parametrize("tampered", ["", "not-a-token", "gAAAAA" + "A" * 80, "é"])
def test_garbage_or_tampered_values_raise_seal_error(sealer_app, tampered):
    """Anything that is not a sealed value raises SealError, nothing else."""
    with sealer_app.app_context(), pytest.raises(sealing.SealError):
        sealing.unseal("mail", tampered)


def test_a_changed_secret_opens_old_values_only_through_the_previous_one(sealer_app):
    """After JWT_SECRET_KEY changes, JWT_PREVIOUS_SECRET_KEY opens old values; reseal moves them."""
    with sealer_app.app_context():
        sealed = sealing.seal("mail", b"body")
    renewed = create_app(settings("sqlite://", JWT_SECRET_KEY=OTHER_SECRET))
    with renewed.app_context(), pytest.raises(sealing.SealError):
        sealing.unseal("mail", sealed)
    bridging = create_app(
        settings(
            "sqlite://",
            JWT_SECRET_KEY=OTHER_SECRET,
            JWT_PREVIOUS_SECRET_KEY=sealer_app.config["JWT_SECRET_KEY"],
        )
    )
    with bridging.app_context():
        resealed = sealing.reseal("mail", sealed)
    with renewed.app_context():
        assert sealing.unseal("mail", resealed) == b"body"
