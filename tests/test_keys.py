"""EdDSA and RS256 signing keys: rotation, retirement, the JWKS; issuer and audience."""

import json
from types import SimpleNamespace

import jwt
import pytest
from conftest import PASSWORD, bearer, settings

from authsvc import create_app, sealing
from authsvc.extensions import db
from authsvc.keys import create_key, retire_key

ISSUER = "https://auth.example.com"


@pytest.fixture(params=["EdDSA", "RS256"])
def keyed_app(request, database_url, app):
    """Return an app signing with key pairs of one algorithm."""
    return create_app(settings(database_url, JWT_ALGORITHM=request.param))


def rotate(app):
    """Run `flask keys rotate` and return the new kid."""
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    return result.output.split()[1]


def signup(client, email="k@example.com"):
    """Sign up and return the token pair."""
    response = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.json
    return response.json


def verify_with_jwks(client, token):
    """Verify a token the way another service would: with the published JWKS only."""
    key_set = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json)
    header = jwt.get_unverified_header(token)
    key = next(k for k in key_set.keys if k.key_id == header["kid"])
    return jwt.decode(token, key.key, algorithms=[header["alg"]])


def test_tokens_carry_the_kid_of_a_published_key(keyed_app):
    """Every token names its key, and the JWKS alone verifies it."""
    kid = rotate(keyed_app)
    client = keyed_app.test_client()
    tokens = signup(client)
    for token in (tokens["accessToken"], tokens["refreshToken"]):
        assert jwt.get_unverified_header(token)["kid"] == kid
        assert verify_with_jwks(client, token)["sub"] == str(tokens["id"])


def test_jwks_never_shows_a_private_key(keyed_app):
    """The JWKS holds public members only."""
    rotate(keyed_app)
    (key,) = keyed_app.test_client().get("/.well-known/jwks.json").json["keys"]
    assert key["use"] == "sig" and key["kid"] and key["alg"] == keyed_app.config["JWT_ALGORITHM"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_first_signin_makes_a_key_if_none_was_rotated(keyed_app):
    """Without `keys rotate`, the first request makes the first key; nothing fails."""
    client = keyed_app.test_client()
    tokens = signup(client)
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    assert len(client.get("/.well-known/jwks.json").json["keys"]) == 1


def test_rotation_keeps_old_tokens_valid(keyed_app):
    """After a rotation new tokens use the new key; tokens of the old one still verify."""
    old_kid = rotate(keyed_app)
    client = keyed_app.test_client()
    before = signup(client)
    new_kid = rotate(keyed_app)
    keyed_app.extensions["authsvc-keys"].loaded_at = 0  # skip the few seconds' cache
    after = client.post("/auth/signin", json={"email": "k@example.com", "password": PASSWORD}).json
    assert jwt.get_unverified_header(after["accessToken"])["kid"] == new_kid != old_kid
    assert client.get("/users/me", headers=bearer(before["accessToken"])).status_code == 200
    assert {key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]} == {
        old_kid,
        new_kid,
    }


def test_retired_key_tokens_are_refused(keyed_app):
    """Retiring a key refuses its tokens and drops it from the JWKS."""
    old_kid = rotate(keyed_app)
    client = keyed_app.test_client()
    tokens = signup(client)
    # Verified once, so the process remembers it: retiring must still win.
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    rotate(keyed_app)
    result = keyed_app.test_cli_runner().invoke(args=["keys", "retire", old_kid])
    assert result.exit_code == 0, result.output
    keyed_app.extensions["authsvc-keys"].loaded_at = 0
    response = client.get("/users/me", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 401 and response.json["code"] == "invalid_token"
    assert old_kid not in {key["kid"] for key in client.get("/.well-known/jwks.json").json["keys"]}


def test_keys_list_says_when_there_is_no_key_yet(keyed_app):
    """`keys list` before any key says how the first one is made, rather than nothing."""
    result = keyed_app.test_cli_runner().invoke(args=["keys", "list"])
    assert result.exit_code == 0 and "keys rotate" in result.output


def test_keys_list_shows_states(keyed_app):
    """`keys list` marks the newest key active, older ones verifying, retired ones retired."""
    first, second, third = rotate(keyed_app), rotate(keyed_app), rotate(keyed_app)
    assert keyed_app.test_cli_runner().invoke(args=["keys", "retire", first]).exit_code == 0
    lines = keyed_app.test_cli_runner().invoke(args=["keys", "list"]).output.splitlines()
    states = {line.split("\t")[0]: line.split("\t")[3] for line in lines}
    assert states[third] == "active" and states[second] == "verifying"
    assert states[first].startswith("retired")


def test_keys_commands_refuse_hs256_and_unknown_kids(app):
    """Under HS256 there is nothing to rotate; an unknown kid cannot be retired."""
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 1
    assert runner.invoke(args=["keys", "retire", "nope"]).exit_code == 1


def test_jwks_is_empty_under_hs256(client):
    """HS256 has no public keys to publish."""
    assert client.get("/.well-known/jwks.json").json == {"keys": []}


def test_retry_after_rotation_gets_the_same_token(keyed_app):
    """A refresh retried after a key rotation still gets the very same token."""
    rotate(keyed_app)
    client = keyed_app.test_client()
    tokens = signup(client)
    first = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    rotate(keyed_app)
    keyed_app.extensions["authsvc-keys"].loaded_at = 0
    retry = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    assert retry["refreshToken"] == first["refreshToken"]


def with_header(token, header):
    """Return a token with its header replaced (the signature no longer matches it)."""
    encoded = jwt.utils.base64url_encode(json.dumps(header).encode()).decode()
    return ".".join([encoded, *token.split(".")[1:]])


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "EdDSA"},
        {"alg": "EdDSA", "kid": "unknown-kid"},
        {"alg": "EdDSA", "kid": 7},
        {"alg": "EdDSA", "kid": ["x"]},
        {"alg": "RS256", "kid": "REAL"},
        {"alg": "HS256", "kid": "REAL"},
    ],
)
def test_tokens_with_bad_kids_are_refused(database_url, app, header):
    """A missing, unknown or non-string kid, or a real kid with another alg, is 401."""
    keyed = create_app(settings(database_url, JWT_ALGORITHM="EdDSA"))
    real = rotate(keyed)
    client = keyed.test_client()
    token = signup(client)["accessToken"]
    forged = with_header(
        token, {**header, **({"kid": real} if header.get("kid") == "REAL" else {})}
    )
    response = client.get("/users/me", headers=bearer(forged))
    assert response.status_code == 401 and response.json["code"] == "invalid_token"


def test_private_keys_are_stored_encrypted(keyed_app):
    """The database holds the private key encrypted, never in the clear."""
    from authsvc.models import SigningKey

    rotate(keyed_app)
    with keyed_app.app_context():
        row = db.session.scalars(db.select(SigningKey)).one()
    assert "PRIVATE KEY" not in row.private_pem
    with keyed_app.app_context():
        pem = sealing.unseal("signing-key", row.private_pem)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def legacy_key(algorithm, secret):
    """Return a private key as keys were stored before sealing: passphrase-encrypted PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if algorithm == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(secret.encode()),
    ).decode()


def test_keys_stored_before_sealing_still_sign_and_reseal_converts_them(keyed_app):
    """A passphrase-encrypted key from before sealing.py still signs; `keys reseal` seals it."""
    from authsvc.models import SigningKey

    kid = rotate(keyed_app)
    with keyed_app.app_context():
        row = db.session.get(SigningKey, kid)
        row.private_pem = legacy_key(row.algorithm, keyed_app.config["JWT_SECRET_KEY"])
        db.session.commit()
    tokens = signup(keyed_app.test_client())
    assert jwt.get_unverified_header(tokens["accessToken"])["kid"] == kid
    result = keyed_app.test_cli_runner().invoke(args=["keys", "reseal"])
    assert result.exit_code == 0 and "1 signing key" in result.output
    with keyed_app.app_context():
        assert not db.session.get(SigningKey, kid).private_pem.startswith("-----")


def test_a_new_secret_reads_old_keys_through_the_previous_one(keyed_app, database_url):
    """With JWT_PREVIOUS_SECRET_KEY set, keys sealed under the old secret still sign."""
    kid = rotate(keyed_app)
    renewed = create_app(
        settings(
            database_url,
            JWT_ALGORITHM=keyed_app.config["JWT_ALGORITHM"],
            JWT_SECRET_KEY="a-brand-new-secret-that-is-long-enough-too",
            JWT_PREVIOUS_SECRET_KEY=keyed_app.config["JWT_SECRET_KEY"],
        )
    )
    tokens = signup(renewed.test_client())
    assert jwt.get_unverified_header(tokens["accessToken"])["kid"] == kid


def test_keys_a_new_secret_cannot_open_are_skipped_for_a_new_one(keyed_app, database_url):
    """Without the previous secret, old keys are skipped and a new key signs."""
    old_kid = rotate(keyed_app)
    renewed = create_app(
        settings(
            database_url,
            JWT_ALGORITHM=keyed_app.config["JWT_ALGORITHM"],
            JWT_SECRET_KEY="a-brand-new-secret-that-is-long-enough-too",
        )
    )
    client = renewed.test_client()
    tokens = signup(client)
    assert jwt.get_unverified_header(tokens["accessToken"])["kid"] != old_kid
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    result = renewed.test_cli_runner().invoke(args=["keys", "reseal"])
    assert result.exit_code == 1 and "JWT_PREVIOUS_SECRET_KEY" in result.output


def issuing_app(database_url, issuer, audience):
    """Return an app with JWT_ISSUER and JWT_AUDIENCE set as given (None: unset)."""
    return create_app(
        settings(
            database_url, JWT_ENCODE_ISSUER=issuer, JWT_DECODE_ISSUER=issuer, JWT_AUDIENCE=audience
        )
    )


def header_and_claims(token):
    """Return a token's header and claims without checking its signature."""
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


@pytest.fixture(
    params=[(None, None), (ISSUER, None), (None, "api"), (ISSUER, "api")],
    ids=["plain", "iss", "aud", "iss-aud"],
)
def issued(request, database_url, app):
    """Sign up on an app with JWT_ISSUER and JWT_AUDIENCE set or not; return what it issued."""
    issuer, audience = request.param
    client = issuing_app(database_url, issuer, audience).test_client()
    return SimpleNamespace(client=client, issuer=issuer, audience=audience, tokens=signup(client))


def test_access_token_says_at_jwt_and_carries_iss_and_aud(issued):
    """An access token's header says typ at+jwt; it carries iss and aud as configured."""
    header, claims = header_and_claims(issued.tokens["accessToken"])
    assert header["typ"] == "at+jwt" and claims["type"] == "access"
    assert (claims.get("iss"), claims.get("aud")) == (issued.issuer, issued.audience)
    me = issued.client.get("/users/me", headers=bearer(issued.tokens["accessToken"]))
    assert me.status_code == 200


def test_refresh_token_says_jwt_and_never_carries_aud(issued):
    """A refresh token's header says typ JWT; it carries iss as configured, never aud."""
    header, claims = header_and_claims(issued.tokens["refreshToken"])
    assert header["typ"] == "JWT" and claims["type"] == "refresh"
    assert claims.get("iss") == issued.issuer and "aud" not in claims
    refreshed = issued.client.post("/auth/refresh", headers=bearer(issued.tokens["refreshToken"]))
    assert refreshed.status_code == 200


@pytest.mark.parametrize(
    ("issuer", "audience", "status"),
    [
        (ISSUER, "api", 200),
        ("https://elsewhere.example.com", "api", 401),
        (ISSUER, "other", 401),
        (ISSUER, None, 401),
    ],
)
def test_access_token_needs_the_configured_issuer_and_audience(
    database_url, app, issuer, audience, status
):
    """An app expecting another iss or aud, or no aud, refuses the access token."""
    tokens = signup(issuing_app(database_url, ISSUER, "api").test_client())
    other = issuing_app(database_url, issuer, audience).test_client()
    assert other.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == status


def test_token_without_required_issuer_is_refused(database_url, auth):
    """With an issuer configured, a token lacking iss is refused."""
    tokens = auth.signup()
    strict = create_app(settings(database_url, JWT_DECODE_ISSUER="https://auth.example.com"))
    assert (
        strict.test_client().get("/users/me", headers=bearer(tokens["accessToken"])).status_code
        == 401
    )


def test_create_and_retire_key_functions(keyed_app):
    """create_key and retire_key report what they did."""
    with keyed_app.app_context():
        kid = create_key(keyed_app.config["JWT_ALGORITHM"])
        db.session.commit()
        assert retire_key(kid) is True
        assert retire_key(kid) is False
