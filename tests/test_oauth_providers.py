"""Providers' settings and start-up: what stops it with one line, what waits for the provider.

Only apps configured with a provider on loopback touch the network here;
the other start-up checks fail before any request is made.
"""

import threading

import pytest
from conftest import empty_database, settings
from oauthhelp import authorize_query, fixtures, pkce, provider_settings, round_trip, sign_in
from standins import CLIENT_ID, CLIENT_SECRET

import config
from authsvc import create_app
from authsvc.providers import _provider

hostile, github, app = fixtures()


def startup_error(database_url, **overrides):
    """Create an app with these settings; return the one line it stopped with."""
    with pytest.raises(config.ConfigError) as stopped:
        urls = ["https://app.example.com/cb"]
        create_app(settings(database_url, OAUTH_REDIRECT_URLS=urls, **overrides))
    message = str(stopped.value)
    assert "\n" not in message
    return message


CORP = {"OAUTH_CORP_CLIENT_ID": CLIENT_ID, "OAUTH_CORP_CLIENT_SECRET": CLIENT_SECRET}
GITHUB = {"OAUTH_GITHUB_CLIENT_ID": CLIENT_ID, "OAUTH_GITHUB_CLIENT_SECRET": CLIENT_SECRET}
MISCONFIGURED = {
    "no client id": (
        {"OAUTH_PROVIDERS": ["corp"], "OAUTH_CORP_ISSUER": "https://id.example.com"},
        "OAUTH_CORP_CLIENT_ID is missing (provider corp)",
    ),
    "no client secret": (
        {"OAUTH_PROVIDERS": ["github"], "OAUTH_GITHUB_CLIENT_ID": CLIENT_ID},
        "OAUTH_GITHUB_CLIENT_SECRET is missing (provider github)",
    ),
    "an unknown preset": (
        {"OAUTH_PROVIDERS": ["gitlab"], **CORP},
        "gitlab is not a preset (google, github) and OAUTH_GITLAB_ISSUER is unset",
    ),
    "a preset with an issuer": (
        {"OAUTH_PROVIDERS": ["google"], "OAUTH_GOOGLE_ISSUER": "https://id.example.com"},
        "OAUTH_GOOGLE_ISSUER: google is a preset",
    ),
    "an http issuer": (
        {"OAUTH_PROVIDERS": ["corp"], "OAUTH_CORP_ISSUER": "http://id.example.com", **CORP},
        "OAUTH_CORP_ISSUER must be an https URL (provider corp)",
    ),
    "no openid scope": (
        {
            "OAUTH_PROVIDERS": ["corp"],
            "OAUTH_CORP_ISSUER": "https://id.example.com",
            "OAUTH_CORP_SCOPES": "email",
            **CORP,
        },
        "OAUTH_CORP_SCOPES must include openid (provider corp)",
    ),
    "a name that is no name": ({"OAUTH_PROVIDERS": ["9lives"]}, "'9lives' is not a provider name"),
    "a name twice": ({"OAUTH_PROVIDERS": ["github", "github"], **GITHUB}, "names github twice"),
    "a bad trust flag": (
        {"OAUTH_PROVIDERS": ["github"], "OAUTH_GITHUB_TRUST_EMAIL": "maybe", **GITHUB},
        "OAUTH_GITHUB_TRUST_EMAIL must be 1 or 0",
    ),
}


@pytest.mark.parametrize("case", sorted(MISCONFIGURED))
def test_a_misconfigured_provider_stops_start_up_with_one_line(database_url, case):
    """Each mistake stops start-up with one line that names the provider's setting."""
    overrides, expected = MISCONFIGURED[case]
    assert expected in startup_error(database_url, **overrides)


@pytest.mark.parametrize(
    "urls",
    [[], ["/relative"], ["https://app.example.com/cb#fragment"], ["javascript:alert(1)"]],
)
def test_redirect_urls_must_be_absolute_without_fragments(database_url, urls):
    """OAUTH_REDIRECT_URLS must be set, absolute, and fragment-free, once a provider is on."""
    overrides = {"OAUTH_PROVIDERS": ["github"], "OAUTH_GITHUB_CLIENT_ID": "x"}
    overrides["OAUTH_GITHUB_CLIENT_SECRET"] = "y"
    with pytest.raises(config.ConfigError, match="OAUTH_REDIRECT_URLS"):
        create_app(settings(database_url, OAUTH_REDIRECT_URLS=urls, **overrides))


def test_the_presets_and_their_defaults():
    """google is OpenID Connect at accounts.google.com; github asks its own scopes; both trusted."""
    base = {"PUBLIC_URL": "https://auth.example.com", "OAUTH_GITHUB_URL": "https://github.com"}
    for name in ("GOOGLE", "GITHUB"):
        base.update({f"OAUTH_{name}_CLIENT_ID": "id", f"OAUTH_{name}_CLIENT_SECRET": "s"})
    google, github_preset = _provider(base, "google"), _provider(base, "github")
    assert (google.kind, google.issuer, google.scopes) == (
        "oidc",
        "https://accounts.google.com",
        "openid email profile",
    )
    assert (github_preset.kind, github_preset.scopes) == ("github", "read:user user:email")
    assert google.trust_email and github_preset.trust_email
    assert google.callback_url == "https://auth.example.com/auth/oauth/google/callback"


@pytest.mark.parametrize(
    ("path", "status_or_document", "reason"),
    [
        ("/.well-known/openid-configuration", 404, "answered 404"),
        ("/.well-known/openid-configuration", b"<html>", "not a JSON dict"),
        ("discovery", {"issuer": "https://elsewhere.example.com"}, "names the issuer"),
        ("discovery", {"jwks_uri": None}, "gives no https jwks_uri"),
        ("discovery", {"id_token_signing_alg_values_supported": ["HS256"]}, "no asymmetric"),
    ],
)
def test_discovery_that_fails_for_good_stops_start_up(
    database_url, hostile, path, status_or_document, reason
):
    """A 404, a page that is not JSON, another issuer, a useless document: one line naming it."""
    if isinstance(status_or_document, int):
        hostile.statuses[path] = status_or_document
    elif isinstance(status_or_document, bytes):
        hostile.documents["discovery"] = status_or_document
    else:
        document = hostile.discovery({}, {}, {})[1]
        hostile.documents["discovery"] = {**document, **status_or_document}
    with pytest.raises(config.ConfigError) as stopped:
        create_app(provider_settings(database_url, hostile.url))
    assert "provider corp:" in str(stopped.value) and reason in str(stopped.value)


def test_an_unreachable_provider_starts_and_answers_503_until_it_answers(database_url, hostile):
    """Discovery failing for a moment (a 503) lets start-up go on; authorize is 503 meanwhile."""
    hostile.statuses["/.well-known/openid-configuration"] = 503
    waiting = create_app(provider_settings(database_url, hostile.url))
    client, query = waiting.test_client(), authorize_query(pkce()[1])
    refused = client.get("/auth/oauth/corp/authorize", query_string=query)
    assert (refused.status_code, refused.json["code"]) == (503, "provider_unavailable")
    assert refused.headers["Retry-After"].isdigit()
    del hostile.statuses["/.well-known/openid-configuration"]
    assert sign_in(client).status_code == 200
    empty_database(waiting)


def test_a_provider_that_hangs_costs_oauth_timeout_not_a_worker(database_url, hostile):
    """A token endpoint that never answers is provider_unavailable after OAUTH_TIMEOUT."""
    release = threading.Event()
    hostile.token = lambda query, form, headers: (release.wait(10), (500, {}, None))[1]
    slow = create_app(provider_settings(database_url, hostile.url, OAUTH_TIMEOUT=1))
    try:
        assert round_trip(slow.test_client())[0] == {"error": "provider_unavailable"}
    finally:
        release.set()
        empty_database(slow)


def test_the_enabled_providers_are_listed(client):
    """GET /auth/providers answers name and displayName, in OAUTH_PROVIDERS order."""
    response = client.get("/auth/providers")
    assert response.status_code == 200
    assert response.json == [
        {"name": "corp", "displayName": "Corp"},
        {"name": "github", "displayName": "GitHub"},
    ]


def test_no_providers_no_list(database_url):
    """Without OAUTH_PROVIDERS the list is empty and no request goes out."""
    plain = create_app(settings(database_url))
    assert plain.test_client().get("/auth/providers").json == []
    empty_database(plain)


def test_jwks_and_metadata_are_cached(client, hostile):
    """Three sign-ins: discovery once (at start-up), the JWKS once."""
    for _ in range(3):
        assert sign_in(client).status_code == 200
    paths = [request[1] for request in hostile.requests]
    assert paths.count("/.well-known/openid-configuration") == 1 and paths.count("/jwks") == 1
