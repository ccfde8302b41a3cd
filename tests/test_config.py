"""Settings from the environment, and refusing to start without a good secret."""

import pytest

import config
from authsvc import create_app, mail_settings


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
    assert settings["MFA_TOKEN_TTL"] == 300
    assert settings["MFA_ISSUER"] == "authsvc"
    assert settings["RATELIMIT_MFA_PER_USER"] == "5 per minute;20 per hour"
    assert settings["DATABASE_TIMEOUT"] == 5
    assert settings["RATELIMIT_KEY_PREFIX"] == "authsvc"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCESS_TOKEN_TTL", "soon"),
        ("BCRYPT_ROUNDS", "3"),
        ("AUTHSVC_ENV", "staging"),
        ("JWT_ALGORITHM", "none"),
        ("REFRESH_REUSE_GRACE", "-1"),
        ("MFA_TOKEN_TTL", "0"),
        ("RATELIMIT_MFA_PER_USER", "often"),
        ("DATABASE_TIMEOUT", "0"),
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


def production(monkeypatch, **environment):
    """Set a production environment with a good secret and the given variables."""
    monkeypatch.setenv("AUTHSVC_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", "kVq3-Zr8pW1xY0aL9mB7nC6dE5fG4hJ2")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({}, "MAIL_URL"),
        ({"MAIL_URL": "console://"}, "console://"),
        ({"MAIL_URL": "none", "REQUIRE_VERIFIED_EMAIL": "1"}, "REQUIRE_VERIFIED_EMAIL"),
    ],
    ids=["no-mail-url", "console", "verified-without-mail"],
)
def test_production_refuses_unsafe_mail_settings(monkeypatch, environment, named):
    """Production needs MAIL_URL (none allowed), refuses console://, and mail for verification."""
    monkeypatch.delenv("MAIL_URL", raising=False)
    production(monkeypatch, **environment)
    with pytest.raises(SystemExit, match=named) as stopped:
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert "\n" not in str(stopped.value)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://mail.example.com",
        "smtp+starttls://user:p%40ss@mail.example.com",
        "smtps://mail.example.com:2465",
        "none",
    ],
)
def test_production_starts_with_smtp_or_none(monkeypatch, url):
    """Any SMTP URL, or none, is accepted in production."""
    production(monkeypatch, MAIL_URL=url)
    create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mx.example.com", ("smtp", "mx.example.com", 25, None, None)),
        ("smtp+starttls://a%40b:p%3Ass@mx", ("smtp+starttls", "mx", 587, "a@b", "p:ss")),
        ("smtps://mx:1465", ("smtps", "mx", 1465, None, None)),
        ("console://", ("console", None, None, None, None)),
        ("none", None),
    ],
)
def test_mail_urls_parse(url, expected):
    """Schemes give default ports; user and password are URL-decoded."""
    parsed = mail_settings.parse_mail_url(url)
    assert (tuple(parsed) if parsed else None) == expected


@pytest.mark.parametrize(
    "url", ["http://mx.example.com", "smtp://", "smtp://mx:port", "mx.example.com", "smtp://mx:0"]
)
def test_bad_mail_urls_stop_start_up(url):
    """A MAIL_URL that is not one of the schemes, or names no host or port, stops the service."""
    with pytest.raises(SystemExit, match="MAIL_URL"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "MAIL_URL": url})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PASSWORD_RESET_URL", "https://app.example.com/reset"),
        ("EMAIL_VERIFY_URL", "ftp://app.example.com/verify?t={token}"),
        ("PUBLIC_URL", "app.example.com"),
    ],
)
def test_link_settings_are_checked_at_start_up(name, value):
    """Link templates need {token} and http(s); PUBLIC_URL needs http(s)."""
    with pytest.raises(SystemExit, match=name):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", name: value})


def test_links_default_to_the_pages_under_public_url():
    """Without link settings, mails link to authsvc's own pages under PUBLIC_URL."""
    app = create_app(config.from_environment({"PUBLIC_URL": "https://auth.example.com/"}))
    assert (
        app.config["PASSWORD_RESET_URL"] == "https://auth.example.com/reset-password?token={token}"
    )
    assert app.config["EMAIL_VERIFY_URL"] == "https://auth.example.com/verify-email?token={token}"


def test_a_missing_mail_templates_folder_stops_start_up(tmp_path):
    """MAIL_TEMPLATES naming no folder stops the service rather than mailing the built-ins."""
    with pytest.raises(SystemExit, match="MAIL_TEMPLATES"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "MAIL_TEMPLATES": str(tmp_path / "no")})
