"""Passwordless sign-in with a passkey, and every way it is refused, on both databases.

Every failure is the one 401 invalid_credentials with WWW-Authenticate, as
a wrong password is; a challenge serves once, whether its sign-in succeeds
or not.
"""

from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from authenticator import BE, BS, UP, UV, Authenticator, b64url
from conftest import bearer, empty_database, settings
from passkeyflows import add_passkey, post, signin_options, stored, verified_user

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import AuthEvent, Passkey, PasskeyChallenge, utcnow


@pytest.fixture
def user(app, password_hash):
    """Insert a verified user with a password; return its id."""
    return verified_user(app, password_hash)


@pytest.fixture(params=["ES256", "Ed25519"])
def key(request, app, user):
    """Return an authenticator whose credential is the user's passkey, of each algorithm."""
    authenticator = Authenticator(request.param)
    add_passkey(app, user, authenticator)
    return authenticator


def answer(client, options, assertion, challenge_id=None):
    """Post an assertion for sign-in options; return the response."""
    body = {"challengeId": challenge_id or options["challengeId"], "credential": assertion}
    return post(client, "/auth/passkey", body)


def sign_in(client, key, **faults):
    """Ask for options, let the authenticator answer them, post the answer."""
    options = signin_options(client)
    return answer(client, options, key.get(options["publicKey"], **faults))


def claims(response):
    """Return the claims of the access token a sign-in answered."""
    return jwt.decode(response.json["accessToken"], options={"verify_signature": False})


def events(app):
    """Return the audit trail's events, oldest first."""
    with app.app_context():
        return db.session.scalars(sa.select(AuthEvent.event).order_by(AuthEvent.id)).all()


def assert_refused(response):
    """Check that a response is the one 401 of every failed sign-in."""
    assert response.status_code == 401, response.json
    assert response.json["code"] == "invalid_credentials"
    assert response.json["detail"] == "The passkey could not sign you in."
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "accessToken" not in response.json


def test_signin_options_ask_for_any_discoverable_passkey_verified_by_its_user(client):
    """Empty allowCredentials, userVerification required, the relying party's id."""
    options = signin_options(client)
    public_key = options["publicKey"]
    assert public_key["allowCredentials"] == []
    assert public_key["userVerification"] == "required"
    assert public_key["rpId"] == "localhost"
    assert public_key["challenge"] == options["challengeId"]


def test_a_passkey_signs_in_with_hwk_and_mfa(app, client, user, key):
    """200 {id, email, accessToken, refreshToken}; amr hwk mfa; fresh; counted and audited."""
    response = sign_in(client, key)
    assert response.status_code == 200, response.json
    assert set(response.json) == {"id", "email", "accessToken", "refreshToken"}
    assert response.json["id"] == user
    assert claims(response)["amr"] == ["hwk", "mfa"]
    assert claims(response)["fresh"]
    assert events(app)[-1] == "signin_passkey"


def test_a_signin_stores_the_count_and_the_time(app, client, user, key):
    """lastUsedAt is set at each sign-in, with the authenticator's new count."""
    assert sign_in(client, key, counter=7).status_code == 200
    (row,) = stored(app, user)
    assert row.sign_count == 7 and row.last_used_at is not None
    assert row.backed_up


def test_a_passkey_signin_is_fresh_enough_to_remove_a_passkey(app, client, user, key):
    """The session is fresh: it may do what needs a fresh token."""
    token = sign_in(client, key).json["accessToken"]
    other = add_passkey(app, user, Authenticator())
    assert client.delete(f"/users/me/passkeys/{other}", headers=bearer(token)).status_code == 204


def test_an_mfa_user_needs_no_code_after_a_passkey(app, client, user, key):
    """A passkey proves both factors: an MFA user gets a session, MFA-fresh."""
    with app.app_context():
        db.session.execute(sa.text("UPDATE users SET mfa_enabled = :on"), {"on": True})
        db.session.commit()
    response = sign_in(client, key)
    assert response.status_code == 200, response.json
    other = add_passkey(app, user, Authenticator())
    path = f"/users/me/passkeys/{other}"
    assert client.delete(path, headers=bearer(response.json["accessToken"])).status_code == 204


@pytest.mark.parametrize(
    "fault",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://localhost:8001"},
        {"rp_id": "evil.example"},
        {"flags": UP | BE | BS},
        {"flags": UV | BE | BS},
    ],
    ids=["wrong-origin", "wrong-port", "wrong-rp-id", "no-user-verification", "no-presence"],
)
def test_a_faulty_assertion_is_refused(app, client, key, fault):
    """Another origin or relying party, no verification or no presence: the one 401."""
    assert_refused(sign_in(client, key, **fault))
    assert events(app)[-1] == "signin_failed"


def test_a_bad_signature_is_refused(client, key):
    """A signature that does not verify: the one 401."""
    options = signin_options(client)
    assertion = key.get(options["publicKey"])
    signature = bytearray(key.sign(b"something else"))
    assertion["response"]["signature"] = b64url(bytes(signature))
    assert_refused(answer(client, options, assertion))


def test_another_keys_signature_is_refused(client, key):
    """An assertion signed by another key under this credential id: the one 401."""
    impostor = Authenticator(key.algorithm, credential_id=key.credential_id)
    impostor.user_handle = key.user_handle
    assert_refused(sign_in(client, impostor))


def test_an_unknown_credential_is_refused(client, key):
    """A credential id nobody registered: the one 401."""
    stranger = Authenticator()
    stranger.user_handle = key.user_handle
    assert_refused(sign_in(client, stranger))


def test_another_user_handle_is_refused(client, key):
    """The user handle must be the one the passkey was registered with."""
    key.user_handle = b64url(b"someone else")
    assert_refused(sign_in(client, key))


@pytest.mark.parametrize(("stored_count", "new_count"), [(5, 4), (5, 5), (5, 0)])
def test_a_count_that_does_not_grow_is_refused_and_audited(
    app, client, user, stored_count, new_count
):
    """Above zero, a count that is not greater (zero included) is refused as a possible clone."""
    key = Authenticator()
    add_passkey(app, user, key, sign_count=stored_count)
    assert_refused(sign_in(client, key, counter=new_count))
    assert events(app)[-2:] == ["passkey_clone_suspected", "signin_failed"]
    assert stored(app, user)[0].sign_count == stored_count


def test_an_authenticator_without_a_count_signs_in_again(app, client, user):
    """A count of zero while the stored count is zero: the authenticator keeps none."""
    key = Authenticator()
    add_passkey(app, user, key)
    assert sign_in(client, key, counter=0).status_code == 200
    assert sign_in(client, key, counter=0).status_code == 200
    assert sign_in(client, key, counter=3).status_code == 200
    assert_refused(sign_in(client, key, counter=0))


def test_a_replayed_assertion_is_refused(client, key):
    """The same assertion twice: the challenge served the first."""
    options = signin_options(client)
    assertion = key.get(options["publicKey"])
    assert answer(client, options, assertion).status_code == 200
    assert_refused(answer(client, options, assertion))


def test_a_challenge_serves_once_even_after_a_failure(client, key):
    """A challenge refused once (wrong origin) is used up: the right answer is refused too."""
    options = signin_options(client)
    assert_refused(
        answer(client, options, key.get(options["publicKey"], origin="https://x.example"))
    )
    assert_refused(answer(client, options, key.get(options["publicKey"])))


def test_an_assertion_of_another_challenge_is_refused(client, key):
    """An assertion over one challenge, presented with another challengeId: the one 401."""
    options, other = signin_options(client), signin_options(client)
    assert_refused(answer(client, options, key.get(options["publicKey"]), other["challengeId"]))


def test_an_expired_challenge_is_refused(app, client, key):
    """A challenge older than WEBAUTHN_TIMEOUT: the one 401."""
    options = signin_options(client)
    with app.app_context():
        past = utcnow() - timedelta(seconds=1)
        db.session.execute(sa.update(PasskeyChallenge).values(expires_at=past))
        db.session.commit()
    assert_refused(answer(client, options, key.get(options["publicKey"])))


def test_a_registration_challenge_cannot_sign_in(client, key):
    """A challenge of the other purpose: the one 401."""
    token = client.post(
        "/auth/signin", json={"email": "user@example.com", "password": "violet-kettle-orbit-42"}
    ).json["accessToken"]
    challenge = post(client, "/users/me/passkeys/options", token=token).json["challengeId"]
    options = {"challengeId": challenge, "publicKey": {"challenge": challenge, "rpId": "localhost"}}
    assert_refused(answer(client, options, key.get(options["publicKey"])))


@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"id": "x"},
        {"id": 7},
        {"id": "a" * 5000},
        {"id": "nul\u0000byte"},
        {"id": "lone\ud800surrogate"},
        {"id": "émoji🙂"},
        {"response": []},
    ],
)
def test_a_malformed_credential_is_the_one_401(client, key, credential):
    """Anything wrong inside credential is a failed sign-in, not a 422."""
    options = signin_options(client)
    assert_refused(answer(client, options, credential))


@pytest.mark.parametrize(
    "part", ["clientDataJSON", "authenticatorData", "signature", "userHandle", "type"]
)
@pytest.mark.parametrize("junk", ["", "!!!", b64url(b"\xa1\xff" * 40), 5])
def test_a_mangled_assertion_is_the_one_401(app, client, user, part, junk):
    """A real assertion with one part replaced by junk: the one 401, never a 500."""
    key = Authenticator()
    add_passkey(app, user, key)
    options = signin_options(client)
    assertion = key.get(options["publicKey"])
    (assertion if part == "type" else assertion["response"])[part] = junk
    assert_refused(answer(client, options, assertion))


@pytest.mark.parametrize(
    "body",
    [
        {"credential": {}},
        {"challengeId": "x"},
        {"challengeId": 5, "credential": {}},
        {"challengeId": "x", "credential": "{}"},
        {"challengeId": "x", "credential": None},
        {"challengeId": "x", "credential": [], "email": "a@b.c"},
        {"challengeId": "x", "credential": {}, "userId": 1},
    ],
)
def test_a_body_of_the_wrong_shape_is_422(client, body):
    """Only a missing field, a field of the wrong JSON type, or another field is 422."""
    response = post(client, "/auth/passkey", body)
    assert (response.status_code, response.json["code"]) == (422, "validation_error")


def test_an_unknown_challenge_id_is_the_one_401(client, key):
    """Any string that is not a live challenge: the one 401."""
    for challenge_id in ("", "x", "\ud800", "a" * 10000):
        assert_refused(answer(client, signin_options(client), {}, challenge_id or " "))


def test_a_removed_passkey_no_longer_signs_in(app, client, user, key):
    """Once removed, the credential is unknown."""
    with app.app_context():
        db.session.execute(sa.delete(Passkey))
        db.session.commit()
    assert_refused(sign_in(client, key))


@pytest.fixture
def limited(database_url):
    """Yield an app whose signin-per-address limit is 2 a minute (counted in memory)."""
    overrides = {
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_SIGNIN_PER_ADDRESS": "2 per minute",
    }
    app = create_app(settings(database_url, **overrides))
    yield app
    empty_database(app)


def test_failed_passkey_signins_are_rate_limited_per_address(limited):
    """After two failures from one address, the next attempt is 429 with Retry-After."""
    client, stranger = limited.test_client(), Authenticator()
    for options in [signin_options(client), signin_options(client)]:
        assert_refused(answer(client, options, stranger.get(options["publicKey"])))
    response = answer(client, {}, {}, "any challenge")
    assert (response.status_code, response.json["code"]) == (429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    other_address = {"REMOTE_ADDR": "192.0.2.7"}
    response = client.post(
        "/auth/passkey", json={"challengeId": "x", "credential": {}}, environ_base=other_address
    )
    assert response.status_code == 401


def test_signin_options_are_rate_limited_per_address(limited):
    """Each options request writes a challenge, so each counts: the third is 429."""
    client = limited.test_client()
    signin_options(client)
    signin_options(client)
    response = post(client, "/auth/passkey/options")
    assert (response.status_code, response.json["code"]) == (429, "rate_limited")
