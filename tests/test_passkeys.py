"""Registering passkeys, and listing, renaming and removing them, on both databases.

A software authenticator (authenticator.py) answers the options the API
gives, with real attestation objects; faults are set per call.
"""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from authenticator import UP, UV, Authenticator
from conftest import bearer
from passkeyflows import (
    add_passkey,
    password_signin,
    post,
    register,
    registration_options,
    stored,
    verified_user,
)

from authsvc.extensions import db
from authsvc.models import AuthEvent, Passkey, PasskeyChallenge, User, utcnow


@pytest.fixture
def user(app, password_hash):
    """Insert a verified user with a password; return its id."""
    return verified_user(app, password_hash)


@pytest.fixture
def token(client, user):
    """Return a fresh access token of the verified user."""
    return password_signin(client)["accessToken"]


def events(app):
    """Return the audit trail's events, oldest first."""
    with app.app_context():
        return db.session.scalars(sa.select(AuthEvent.event).order_by(AuthEvent.id)).all()


def test_registration_options_require_a_resident_key_and_exclude_the_users_passkeys(
    app, client, user, token
):
    """The options name the relying party and user, ask for a discoverable credential, exclude."""
    key = Authenticator()
    add_passkey(app, user, key)
    options = registration_options(client, token)
    public_key = options["publicKey"]
    assert public_key["rp"] == {"name": "authsvc", "id": "localhost"}
    assert public_key["user"]["name"] == "user@example.com"
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["excludeCredentials"] == [{"id": key.id, "type": "public-key"}]
    assert public_key["challenge"] == options["challengeId"]
    assert len(options["challengeId"]) >= 43  # 256 bits in base64url
    assert public_key["timeout"] == 300_000


def test_registration_options_keep_the_users_handle(app, client, user, token):
    """A user's later passkeys carry the handle of the first, so authenticators keep one each."""
    key = Authenticator()
    assert register(client, token, key).status_code == 201
    assert registration_options(client, token)["publicKey"]["user"]["id"] == key.user_handle


def test_registration_options_need_a_verified_address(app, client, password_hash):
    """An address never verified cannot hold a passkey: 403 email_not_verified."""
    verified_user(app, password_hash, email_verified=False)
    response = post(
        client, "/users/me/passkeys/options", token=password_signin(client)["accessToken"]
    )
    assert (response.status_code, response.json["code"]) == (403, "email_not_verified")


def test_registration_needs_a_fresh_token(client, user):
    """A refreshed access token is not fresh: 401 fresh_token_required, options and credential."""
    refreshed = client.post(
        "/auth/refresh", headers=bearer(password_signin(client)["refreshToken"])
    )
    token = refreshed.json["accessToken"]
    for path, body in (("/users/me/passkeys/options", None), ("/users/me/passkeys", {})):
        response = post(client, path, body, token)
        assert (response.status_code, response.json["code"]) == (401, "fresh_token_required")


@pytest.mark.parametrize(
    ("path", "authenticated"),
    [("/users/me/passkeys/options", True), ("/auth/passkey/options", False)],
)
@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (None, None, 200),
        ("", "application/json", 200),
        ("{}", "application/json", 200),
        ('{"rp": "evil"}', "application/json", 422),
        ("[]", "application/json", 422),
        ("{", "application/json", 400),
        ("rp=evil", "application/x-www-form-urlencoded", 415),
    ],
)
def test_options_take_no_body_or_an_empty_object(
    client, token, path, authenticated, body, content_type, status
):
    """No body, or {}: the options; any other body is refused as every endpoint refuses it."""
    headers = bearer(token) if authenticated else {}
    response = client.post(path, data=body, content_type=content_type, headers=headers)
    assert response.status_code == status, response.json


@pytest.mark.parametrize("algorithm", ["ES256", "Ed25519"])
def test_registering_answers_the_passkey_and_lists_it(app, client, user, token, algorithm):
    """201 {id, name, createdAt, lastUsedAt, backedUp}; the list shows it; the key is stored."""
    key = Authenticator(algorithm)
    response = register(client, token, key, name="Work laptop")
    assert response.status_code == 201, response.json
    assert set(response.json) == {"id", "name", "createdAt", "lastUsedAt", "backedUp"}
    assert (response.json["name"], response.json["lastUsedAt"], response.json["backedUp"]) == (
        "Work laptop",
        None,
        True,
    )
    assert client.get("/users/me/passkeys", headers=bearer(token)).json == [response.json]
    (row,) = stored(app, user)
    assert (row.credential_id, row.public_key, row.user_handle) == (
        key.id,
        key.cose_key(),
        key.user_handle,
    )
    assert "passkey_added" in events(app)


def test_a_passkey_is_named_passkey_by_default(client, token):
    """Without a name, a passkey is called Passkey; names are trimmed."""
    assert register(client, token, Authenticator()).json["name"] == "Passkey"
    assert register(client, token, Authenticator(), name="  Phone ").json["name"] == "Phone"


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * 65, "tab\there", "line\nbreak", "nul\x00", "\ud800", 7, None]
)
def test_a_bad_name_is_422(client, token, name):
    """A name must be 1 to 64 printable characters."""
    response = register(client, token, Authenticator(), name=name)
    assert (response.status_code, response.json["code"]) == (422, "validation_error")


@pytest.mark.parametrize(
    "fault",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://localhost:8001"},
        {"rp_id": "evil.example"},
        {"flags": UV},  # no user presence
    ],
    ids=["wrong-origin", "wrong-port", "wrong-rp-id", "no-user-presence"],
)
def test_registration_refuses_a_faulty_credential(app, client, user, token, fault):
    """A credential from another origin or relying party, or made without presence: 400."""
    response = register(client, token, Authenticator(), **fault)
    assert (response.status_code, response.json["code"]) == (400, "invalid_passkey")
    assert stored(app, user) == []
    assert events(app)[-1] == "passkey_refused"


def test_registration_accepts_a_credential_made_without_user_verification(client, token):
    """User verification is checked at sign-in only, as the contract says."""
    assert register(client, token, Authenticator(), flags=UP).status_code == 201


@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"id": "x"},
        {"id": 1, "rawId": [], "response": "x"},
        {"response": {"attestationObject": "!!"}},
    ],
)
def test_registration_refuses_a_malformed_credential_with_400(client, token, credential):
    """Anything wrong inside the credential is the passkey's fault: 400 invalid_passkey."""
    options = registration_options(client, token)
    body = {"challengeId": options["challengeId"], "credential": credential}
    response = post(client, "/users/me/passkeys", body, token)
    assert (response.status_code, response.json["code"]) == (400, "invalid_passkey")


def register_with(client, token, options, key, **faults):
    """Post the authenticator's answer to given options; return the response."""
    credential = key.create(options["publicKey"], **faults)
    body = {"challengeId": options["challengeId"], "credential": credential}
    return post(client, "/users/me/passkeys", body, token)


def test_a_registration_challenge_serves_once_even_after_a_failure(client, token):
    """A challenge refused once (a wrong origin) is used up: the right answer is refused too."""
    options = registration_options(client, token)
    key = Authenticator()
    assert (
        register_with(client, token, options, key, origin="https://evil.example").status_code == 400
    )
    assert register_with(client, token, options, key).status_code == 400


def test_a_used_registration_challenge_is_refused(client, token):
    """A challenge that registered a passkey registers nothing more."""
    options = registration_options(client, token)
    assert register_with(client, token, options, Authenticator()).status_code == 201
    response = register_with(client, token, options, Authenticator())
    assert (response.status_code, response.json["code"]) == (400, "invalid_passkey")


def test_an_expired_registration_challenge_is_refused(app, client, token):
    """A challenge older than WEBAUTHN_TIMEOUT is refused."""
    options = registration_options(client, token)
    with app.app_context():
        db.session.execute(
            sa.update(PasskeyChallenge).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert register_with(client, token, options, Authenticator()).status_code == 400


def test_another_users_registration_challenge_is_refused(app, client, password_hash, token):
    """A registration challenge belongs to its user: another cannot use it, nor use it up."""
    verified_user(app, password_hash, email="other@example.com")
    other = password_signin(client, "other@example.com")["accessToken"]
    options = registration_options(client, other)
    response = register_with(client, token, options, Authenticator())
    assert (response.status_code, response.json["code"]) == (400, "invalid_passkey")
    assert register_with(client, other, options, Authenticator()).status_code == 201


def test_a_sign_in_challenge_cannot_register(client, token):
    """A challenge of the other purpose is refused."""
    challenge = post(client, "/auth/passkey/options").json["challengeId"]
    public_key = {**registration_options(client, token)["publicKey"], "challenge": challenge}
    options = {"challengeId": challenge, "publicKey": public_key}
    assert register_with(client, token, options, Authenticator()).status_code == 400


def test_a_credential_id_registered_twice_is_409(app, client, password_hash, token):
    """One credential id belongs to one user: registering it again, by anyone, is 409."""
    key = Authenticator()
    assert register(client, token, key).status_code == 201
    verified_user(app, password_hash, email="other@example.com")
    other = password_signin(client, "other@example.com")["accessToken"]
    clone = Authenticator(credential_id=key.credential_id)
    for who in (token, other):
        response = register(client, who, clone)
        assert (response.status_code, response.json["code"]) == (409, "passkey_taken")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Passkey)) == 1


def test_renaming_a_passkey(app, client, user, token):
    """PATCH sets a new name and answers the passkey; another user's or unknown id is 404."""
    passkey_id = add_passkey(app, user, Authenticator())
    path = f"/users/me/passkeys/{passkey_id}"
    response = client.patch(path, json={"name": "Old phone"}, headers=bearer(token))
    assert (response.status_code, response.json["name"]) == (200, "Old phone")
    assert stored(app, user)[0].name == "Old phone"
    for unknown in (passkey_id + 1, 2**40):
        response = client.patch(
            f"/users/me/passkeys/{unknown}", json={"name": "x"}, headers=bearer(token)
        )
        assert response.status_code == 404


def test_renaming_needs_a_name(app, client, user, token):
    """PATCH without a name, or with another field, is 422."""
    path = f"/users/me/passkeys/{add_passkey(app, user, Authenticator())}"
    for body in ({}, {"name": "x", "backedUp": False}):
        assert client.patch(path, json=body, headers=bearer(token)).status_code == 422


def test_removing_a_passkey(app, client, user, token):
    """DELETE removes one of the caller's passkeys; then it is 404."""
    passkey_id = add_passkey(app, user, Authenticator())
    path = f"/users/me/passkeys/{passkey_id}"
    assert client.delete(path, headers=bearer(token)).status_code == 204
    assert stored(app, user) == []
    assert client.delete(path, headers=bearer(token)).status_code == 404
    assert "passkey_removed" in events(app)


def test_another_users_passkey_is_404(app, client, password_hash, user, token):
    """A user cannot see, rename or remove another user's passkey."""
    other = verified_user(app, password_hash, email="other@example.com")
    path = f"/users/me/passkeys/{add_passkey(app, other, Authenticator())}"
    assert client.delete(path, headers=bearer(token)).status_code == 404
    assert client.patch(path, json={"name": "mine"}, headers=bearer(token)).status_code == 404
    assert client.get("/users/me/passkeys", headers=bearer(token)).json == []
    assert len(stored(app, other)) == 1


def test_removing_needs_a_fresh_token(app, client, user):
    """A refreshed token cannot remove a passkey."""
    path = f"/users/me/passkeys/{add_passkey(app, user, Authenticator())}"
    refreshed = client.post(
        "/auth/refresh", headers=bearer(password_signin(client)["refreshToken"])
    )
    response = client.delete(path, headers=bearer(refreshed.json["accessToken"]))
    assert (response.status_code, response.json["code"]) == (401, "fresh_token_required")


def test_the_last_way_in_cannot_be_removed(app, client, user, token):
    """An account with no password keeps its last passkey: 409 last_sign_in_method."""
    first, second = Authenticator(), Authenticator()
    first_id, second_id = add_passkey(app, user, first), add_passkey(app, user, second)
    with app.app_context():
        db.session.execute(sa.update(User).values(password_hash=None))
        db.session.commit()
    assert client.delete(f"/users/me/passkeys/{first_id}", headers=bearer(token)).status_code == 204
    response = client.delete(f"/users/me/passkeys/{second_id}", headers=bearer(token))
    assert (response.status_code, response.json["code"]) == (409, "last_sign_in_method")
    assert [row.id for row in stored(app, user)] == [second_id]
