"""Introspection under EdDSA and RS256: keys from the database, rotation and retirement."""

import jwt
import pytest
from conftest import PASSWORD, settings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from introspecting import answer, claims_of, register, resigned

from authsvc import create_app


@pytest.fixture(params=["EdDSA", "RS256"])
def keyed_app(request, database_url, app):
    """Return an app signing with key pairs of one algorithm."""
    return create_app(settings(database_url, JWT_ALGORITHM=request.param))


@pytest.fixture
def service(app):
    """Register a service that may introspect; return its id and secret."""
    return register(app)


def keys_command(app, *args):
    """Run `flask --app authsvc keys ...` and return its output."""
    result = app.test_cli_runner().invoke(args=["keys", *args])
    assert result.exit_code == 0, result.output
    return result.output


def signed_up(client, email="k@example.com"):
    """Sign up and return the token pair."""
    response = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.json
    return response.json


def test_access_token_signed_with_a_key_pair_is_active(keyed_app, service):
    """Under EdDSA and RS256, a live access token is active; its refresh token is not."""
    client = keyed_app.test_client()
    tokens = signed_up(client)
    said = answer(client, service, tokens["accessToken"])
    assert said["active"] is True and said["sub"] == str(tokens["id"])
    assert answer(client, service, tokens["refreshToken"]) == {"active": False}


def test_older_key_still_verifies_and_a_retired_one_does_not(keyed_app, service):
    """After a rotation the old key's tokens stay active; once it is retired, inactive.

    Every process reads the keys again within seconds (KEY_CACHE_SECONDS);
    the test skips the wait.
    """
    old_kid = keys_command(keyed_app, "rotate").split()[1]
    client = keyed_app.test_client()
    tokens = signed_up(client)
    keys_command(keyed_app, "rotate")
    assert answer(client, service, tokens["accessToken"])["active"] is True
    keys_command(keyed_app, "retire", old_kid)
    keyed_app.extensions["authsvc-keys"].loaded_at = 0  # skip the few seconds' cache
    assert answer(client, service, tokens["accessToken"]) == {"active": False}


def test_a_token_signed_with_a_key_of_its_own_is_inactive(keyed_app, service):
    """A token whose header names a published kid but that another key signed: inactive."""
    client = keyed_app.test_client()
    tokens = signed_up(client)
    kid = jwt.get_unverified_header(tokens["accessToken"])["kid"]
    forged = resigned(
        tokens["accessToken"],
        key=Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": kid},
    )
    assert claims_of(forged)["sid"] == claims_of(tokens["accessToken"])["sid"]
    assert answer(client, service, forged) == {"active": False}


def test_a_token_signed_with_the_hs256_secret_is_inactive(keyed_app, service):
    """Under a key-pair algorithm, the HS256 secret signs nothing that is active."""
    client = keyed_app.test_client()
    tokens = signed_up(client)
    assert answer(client, service, resigned(tokens["accessToken"])) == {"active": False}
