"""The passkeys' settings: defaults from PUBLIC_URL, the loopback rule, and refusals at start-up."""

import pytest

import config
from authsvc import create_app


def settled(**environment):
    """Return the WEBAUTHN_* settings an app made from this environment ends with."""
    app = create_app(config.from_environment({"DATABASE_URL": "sqlite://", **environment}))
    keys = ("WEBAUTHN_RP_ID", "WEBAUTHN_RP_NAME", "WEBAUTHN_ORIGINS", "WEBAUTHN_TIMEOUT")
    return tuple(app.config[key] for key in keys)


def test_the_defaults_serve_make_run_on_localhost():
    """PUBLIC_URL's default is loopback: the RP id is localhost, both origins are accepted."""
    assert settled() == (
        "localhost",
        "authsvc",
        ["http://127.0.0.1:8000", "http://localhost:8000"],
        300,
    )


@pytest.mark.parametrize(
    ("public_url", "rp_id", "origins"),
    [
        ("https://auth.example.com", "auth.example.com", ["https://auth.example.com"]),
        ("https://Auth.Example.com:443/base/", "auth.example.com", ["https://auth.example.com"]),
        ("https://auth.example.com:8443", "auth.example.com", ["https://auth.example.com:8443"]),
        ("http://[::1]:5000", "localhost", ["http://[::1]:5000", "http://localhost:5000"]),
        ("http://127.0.0.1", "localhost", ["http://127.0.0.1", "http://localhost"]),
        ("http://localhost:8000", "localhost", ["http://localhost:8000"]),
    ],
)
def test_the_relying_party_derives_from_public_url(public_url, rp_id, origins):
    """The RP id is PUBLIC_URL's host (localhost for loopback); the origins its origin."""
    assert settled(PUBLIC_URL=public_url)[::2] == (rp_id, origins)


def test_explicit_settings_win():
    """A parent domain as RP id serves several origins under it."""
    environment = {
        "PUBLIC_URL": "https://auth.example.com",
        "WEBAUTHN_RP_ID": "Example.com",
        "WEBAUTHN_RP_NAME": "Example",
        "WEBAUTHN_ORIGINS": "https://auth.example.com, https://app.example.com/",
        "WEBAUTHN_TIMEOUT": "120",
    }
    assert settled(**environment) == (
        "example.com",
        "Example",
        ["https://auth.example.com", "https://app.example.com"],
        120,
    )


@pytest.mark.parametrize(
    "environment",
    [
        {"PUBLIC_URL": "https://auth.example.com", "WEBAUTHN_RP_ID": "other.example"},
        {"PUBLIC_URL": "https://auth.example.com", "WEBAUTHN_RP_ID": "xample.com"},
        {"PUBLIC_URL": "https://example.com", "WEBAUTHN_RP_ID": "auth.example.com"},
        {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://evil.com"},
        {"WEBAUTHN_RP_ID": "com", "WEBAUTHN_ORIGINS": "https://example.com"},
        {"WEBAUTHN_RP_ID": "127.0.0.1"},
        {"WEBAUTHN_RP_ID": "https://example.com"},
        {"WEBAUTHN_RP_ID": "example.com:443"},
        {"WEBAUTHN_ORIGINS": "localhost:8000"},
        {"WEBAUTHN_ORIGINS": "http://localhost:8000/login"},
        {"WEBAUTHN_ORIGINS": "ftp://localhost"},
        {"WEBAUTHN_ORIGINS": "http://localhost:0"},
        {"WEBAUTHN_TIMEOUT": "0"},
        {"WEBAUTHN_TIMEOUT": "soon"},
    ],
)
def test_a_relying_party_that_cannot_work_stops_start_up_in_one_line(environment):
    """An RP id that is not the host or a parent domain of every origin, or bad values: one line."""
    with pytest.raises(config.ConfigError, match="WEBAUTHN_") as stopped:
        settled(**environment)
    assert "\n" not in str(stopped.value)
