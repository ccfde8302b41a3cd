"""Helpers of the tests of sign-in with providers: apps with a provider, PKCE, the round trip.

The fixture functions here become fixtures in the test modules that use
them, under the names those modules give them:

    hostile = pytest.fixture(name="hostile")(oauthhelp.hostile_provider)
    app = pytest.fixture(name="app")(oauthhelp.app_with_providers)

`app` overrides conftest's, so `client` and `auth` use an app with providers.
"""

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import empty_database, settings
from standins import CLIENT_ID, CLIENT_SECRET, GitHubStandIn, HostileProvider

from authsvc import create_app

APP_URL = "http://127.0.0.1:5173/signed-in"
PUBLIC_URL = "http://authsvc.example.com"


def provider_settings(database_url, issuer=None, github_url=None, **extra):
    """Return test settings with a provider `corp` at `issuer` and/or `github` at `github_url`."""
    names, values = [], {}
    if issuer:
        names.append("corp")
        values.update(OAUTH_CORP_ISSUER=issuer, OAUTH_CORP_NAME="Corp", OAUTH_CORP_TRUST_EMAIL="1")
        values.update(OAUTH_CORP_CLIENT_ID=CLIENT_ID, OAUTH_CORP_CLIENT_SECRET=CLIENT_SECRET)
    if github_url:
        names.append("github")
        values.update(OAUTH_GITHUB_URL=github_url, OAUTH_GITHUB_CLIENT_ID=CLIENT_ID)
        values.update(OAUTH_GITHUB_CLIENT_SECRET=CLIENT_SECRET)
    defaults = {"OAUTH_REDIRECT_URLS": [APP_URL], "PUBLIC_URL": PUBLIC_URL, "OAUTH_TIMEOUT": 5}
    return settings(database_url, OAUTH_PROVIDERS=names, **{**defaults, **values, **extra})


def hostile_provider():
    """Serve a hostile OpenID Provider for one test."""
    provider = HostileProvider()
    yield provider
    provider.close()


def github_stand_in():
    """Serve a stand-in of GitHub for one test."""
    stand_in = GitHubStandIn()
    yield stand_in
    stand_in.close()


def app_with_providers(database_url, hostile, github):
    """Yield an app with the hostile provider as `corp` and the GitHub stand-in as `github`."""
    app = create_app(provider_settings(database_url, hostile.url, github.url))
    yield app
    empty_database(app)


def fixtures():
    """Return the fixtures hostile, github and app, for a test module to bind to its names."""
    return (
        pytest.fixture(name="hostile")(hostile_provider),
        pytest.fixture(name="github")(github_stand_in),
        pytest.fixture(name="app")(app_with_providers),
    )


def pkce():
    """Return a new PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize_query(challenge, redirect_to=APP_URL, **extra):
    """Return the query of an authorize request."""
    query = {"redirectTo": redirect_to, "codeChallenge": challenge, "codeChallengeMethod": "S256"}
    return {**query, **extra}


def provider_url(client, challenge, provider="corp", **extra):
    """Start a sign-in at authsvc; return the provider's URL it answers."""
    response = client.get(
        f"/auth/oauth/{provider}/authorize",
        query_string=authorize_query(challenge, **extra),
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.json
    return response.json["url"]


def callback_path(url):
    """Follow a provider's authorization URL (it answers at once); return authsvc's callback."""
    location = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    assert location.startswith(PUBLIC_URL), location
    return location.removeprefix(PUBLIC_URL)


def app_answer(response):
    """Return the code or error a callback's redirect to the app carries."""
    assert response.status_code == 302, response.data
    location = response.headers["Location"]
    assert location.startswith(APP_URL), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def round_trip(client, provider="corp"):
    """Sign in at a provider through authsvc; return the app's answer and the PKCE verifier."""
    verifier, challenge = pkce()
    callback = callback_path(provider_url(client, challenge, provider))
    return app_answer(client.get(callback)), verifier


def exchange(client, code, verifier):
    """POST the code and verifier to /auth/oauth/token; return the response."""
    return client.post("/auth/oauth/token", json={"code": code, "codeVerifier": verifier})


def sign_in(client, provider="corp"):
    """Sign in through a provider; return the token exchange's response."""
    answer, verifier = round_trip(client, provider)
    assert "code" in answer, answer
    return exchange(client, answer["code"], verifier)
