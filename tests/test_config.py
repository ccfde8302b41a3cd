"""Settings from the environment, and refusing to start without a good secret."""

import pytest

import config
from authsvc import create_app


def test_defaults_match_the_operating_contract():
    """With nothing set, the contract's defaults apply."""
    settings = config.from_environment({})
    assert settings["AUTHSVC_ENV"] == "development"
    assert settings["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds() == 900
    assert settings["JWT_REFRESH_TOKEN_EXPIRES"].total_seconds() == 604800
    assert settings["BCRYPT_ROUNDS"] == 12
    assert settings["SESSION_MAX_AGE"] == 2592000
    assert settings["REFRESH_REUSE_GRACE"] == 10
    assert settings["FRESH_TOKEN_TTL"] == 900
    assert settings["JWT_ALGORITHM"] == "HS256"
    assert settings["MAX_CONTENT_LENGTH"] == 16384


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCESS_TOKEN_TTL", "soon"),
        ("BCRYPT_ROUNDS", "3"),
        ("AUTHSVC_ENV", "staging"),
        ("JWT_ALGORITHM", "none"),
        ("REFRESH_REUSE_GRACE", "-1"),
    ],
)
def test_bad_setting_stops_start_up_with_its_name(name, value):
    """A setting that does not parse stops the service, naming the setting."""
    with pytest.raises(SystemExit, match=name):
        config.from_environment({name: value})


@pytest.mark.parametrize("secret", [None, "", "too-short", "s" * 64, "0123456780" * 4])
def test_production_refuses_weak_or_missing_secret(monkeypatch, secret):
    """Production will not start without a JWT_SECRET_KEY of 32 bytes or more."""
    monkeypatch.setenv("AUTHSVC_ENV", "production")
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    if secret is not None:
        monkeypatch.setenv("JWT_SECRET_KEY", secret)
    with pytest.raises(SystemExit, match="JWT_SECRET_KEY") as stopped:
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert "\n" not in str(stopped.value)


def test_production_starts_with_a_long_secret(monkeypatch):
    """A 32-byte secret is enough."""
    monkeypatch.setenv("AUTHSVC_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", "kVq3-Zr8pW1xY0aL9mB7nC6dE5fG4hJ2")
    monkeypatch.setenv("MAIL_URL", "none")
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["BCRYPT_ROUNDS"] == 12


def test_development_secret_is_kept_in_the_instance_folder(tmp_path):
    """Development makes a random secret once and reads it back after."""
    first = config.development_secret(str(tmp_path))
    assert len(first) >= 32
    assert config.development_secret(str(tmp_path)) == first
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600
