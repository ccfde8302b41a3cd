"""Identities of an account: linking from it (rule 5), unlinking, admins, passwordless accounts."""

import sqlalchemy as sa
from conftest import PASSWORD, bearer, empty_database
from mailer import mails_to, token_in
from oauthhelp import (
    APP_URL,
    app_answer,
    callback_path,
    exchange,
    fixtures,
    pkce,
    provider_settings,
    sign_in,
)

from authsvc import create_app, relay
from authsvc.extensions import db
from authsvc.models import AuthEvent, User
from authsvc.telemetry import OAUTH

hostile, github, app = fixtures()
NEW_PASSWORD = "marble-lantern-quiet-77"


def verified_signup(app, auth, email="lin@example.com"):
    """Sign up and verify an address; return the tokens."""
    tokens = auth.signup(email)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.email == email).values(email_verified=True))
        db.session.commit()
    return tokens


def start_link(client, access_token, provider="corp", challenge=None):
    """POST /users/me/identities/<provider>; return the response."""
    body = {"redirectTo": APP_URL, "codeChallenge": challenge or pkce()[1]}
    return client.post(
        f"/users/me/identities/{provider}",
        json={**body, "codeChallengeMethod": "S256"},
        headers=bearer(access_token),
    )


def link_code(client, access_token, provider="corp"):
    """Run a link's round trip; return the app's code and its verifier."""
    verifier, challenge = pkce()
    started = start_link(client, access_token, provider, challenge)
    assert started.status_code == 200, started.json
    return app_answer(client.get(callback_path(started.json["url"])))["code"], verifier


def complete_link(client, access_token, code, verifier):
    """POST /users/me/identities with a link code; return the response."""
    body = {"code": code, "codeVerifier": verifier}
    return client.post("/users/me/identities", json=body, headers=bearer(access_token))


def test_linking_adds_the_providers_account_whatever_its_email(client, app, auth):
    """A link needs no email match; afterwards the provider signs this user in."""
    tokens = verified_signup(app, auth)
    linked = OAUTH.labels("corp", "linked")._value.get()
    response = complete_link(
        client, tokens["accessToken"], *link_code(client, tokens["accessToken"])
    )
    assert response.status_code == 201, response.json
    assert set(response.json) == {"id", "provider", "email", "createdAt", "lastUsedAt"}
    assert (response.json["provider"], response.json["email"]) == ("corp", "ada@example.com")
    listed = client.get("/users/me/identities", headers=bearer(tokens["accessToken"])).json
    assert listed == [response.json]
    assert sign_in(client).json["email"] == "lin@example.com"
    assert OAUTH.labels("corp", "linked")._value.get() == linked + 1


def test_linking_needs_a_fresh_token(client, app, auth):
    """A refreshed (not fresh) token cannot start a link."""
    tokens = verified_signup(app, auth)
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    response = start_link(client, refreshed["accessToken"])
    assert (response.status_code, response.json["code"]) == (401, "fresh_token_required")


def test_linking_needs_a_verified_address(client, auth):
    """An account whose address was never proven links nothing: 403 email_not_verified."""
    response = start_link(client, auth.signup()["accessToken"])
    assert (response.status_code, response.json["code"]) == (403, "email_not_verified")


def test_a_link_code_under_another_users_bearer_is_403_and_used_up(client, app, auth):
    """The code completes only for the user who started the link; another's use kills it."""
    owner = verified_signup(app, auth)
    code, verifier = link_code(client, owner["accessToken"])
    intruder = auth.signup("intruder@example.com")
    stolen = complete_link(client, intruder["accessToken"], code, verifier)
    assert (stolen.status_code, stolen.json["code"]) == (403, "forbidden")
    late = complete_link(client, owner["accessToken"], code, verifier)
    assert (late.status_code, late.json["code"]) == (400, "invalid_grant")
    with app.app_context():
        assert db.session.scalar(sa.select(AuthEvent.id).filter_by(event="oauth_forbidden"))


def test_an_identity_of_another_account_is_identity_taken(client, app, auth):
    """The provider's account already signs in someone else: 409 identity_taken."""
    sign_in(client)
    tokens = verified_signup(app, auth)
    response = complete_link(
        client, tokens["accessToken"], *link_code(client, tokens["accessToken"])
    )
    assert (response.status_code, response.json["code"]) == (409, "identity_taken")


def test_a_link_code_is_useless_at_the_token_endpoint(client, app, auth):
    """A link code at POST /auth/oauth/token is invalid_grant, and still links afterwards."""
    tokens = verified_signup(app, auth)
    code, verifier = link_code(client, tokens["accessToken"])
    response = exchange(client, code, verifier)
    assert (response.status_code, response.json["code"]) == (400, "invalid_grant")
    assert complete_link(client, tokens["accessToken"], code, verifier).status_code == 201


def test_an_unknown_provider_cannot_be_linked(client, app, auth):
    """Linking a provider that is not enabled is 404."""
    response = start_link(client, verified_signup(app, auth)["accessToken"], provider="gitlab")
    assert (response.status_code, response.json["code"]) == (404, "not_found")


def provider_account(client):
    """Sign in through the provider as a new, passwordless user; return the tokens."""
    response = sign_in(client)
    assert response.json["isNewUser"] is True
    return response.json


def identity_ids(client, access_token):
    """Return the ids of the caller's identities."""
    listed = client.get("/users/me/identities", headers=bearer(access_token)).json
    return [identity["id"] for identity in listed]


def unlink(client, access_token, identity_id):
    """DELETE one of the caller's identities; return the response."""
    return client.delete(f"/users/me/identities/{identity_id}", headers=bearer(access_token))


def set_first_password(client, access_token, password=NEW_PASSWORD):
    """POST /users/me/password with newPassword alone; return the response."""
    return client.post(
        "/users/me/password", json={"newPassword": password}, headers=bearer(access_token)
    )


def test_the_last_way_in_cannot_be_unlinked(client):
    """A passwordless account's only identity is 409 last_sign_in_method; with a password, 204."""
    tokens = provider_account(client)
    (identity_id,) = identity_ids(client, tokens["accessToken"])
    refused = unlink(client, tokens["accessToken"], identity_id)
    assert (refused.status_code, refused.json["code"]) == (409, "last_sign_in_method")
    fresh = set_first_password(client, tokens["accessToken"]).json
    assert unlink(client, fresh["accessToken"], identity_id).status_code == 204
    assert identity_ids(client, fresh["accessToken"]) == []


def test_unlinking_someone_elses_identity_is_404(client, auth):
    """Another user's identity id, or an unknown one, is 404."""
    (identity_id,) = identity_ids(client, provider_account(client)["accessToken"])
    other = auth.signup("other@example.com")
    assert unlink(client, other["accessToken"], identity_id).status_code == 404
    assert unlink(client, other["accessToken"], 2**40).status_code == 404


def test_unlinking_needs_a_fresh_token(client):
    """A refreshed token cannot unlink."""
    tokens = provider_account(client)
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    response = unlink(client, refreshed["accessToken"], 1)
    assert (response.status_code, response.json["code"]) == (401, "fresh_token_required")


def test_admins_list_and_unlink_any_users_identities(client, auth):
    """GET and DELETE /users/<id>/identities for admins; the last way in stays 409."""
    user = provider_account(client)
    admin = auth.admin()["accessToken"]
    listed = client.get(f"/users/{user['id']}/identities", headers=bearer(admin))
    assert [identity["provider"] for identity in listed.json] == ["corp"]
    path = f"/users/{user['id']}/identities/{listed.json[0]['id']}"
    assert client.delete(path, headers=bearer(admin)).json["code"] == "last_sign_in_method"
    assert client.get("/users/999/identities", headers=bearer(admin)).status_code == 404


def test_only_admins_see_other_users_identities(client, auth):
    """Anyone else gets 403, for reading and for unlinking."""
    user = provider_account(client)
    other = auth.signup("other@example.com")["accessToken"]
    path = f"/users/{user['id']}/identities"
    assert client.get(path, headers=bearer(other)).status_code == 403
    assert client.delete(f"{path}/1", headers=bearer(other)).status_code == 403


def test_a_provider_account_has_no_password_and_signin_refuses_it(client):
    """hasPassword is false, and any password at /auth/signin is the usual 401."""
    tokens = provider_account(client)
    me = client.get("/users/me", headers=bearer(tokens["accessToken"])).json
    assert me["hasPassword"] is False
    response = client.post("/auth/signin", json={"email": me["email"], "password": PASSWORD})
    assert (response.status_code, response.json["code"]) == (401, "invalid_credentials")


def test_a_first_password_needs_only_a_fresh_token(client):
    """newPassword alone sets it; then signin works and currentPassword is required."""
    tokens = provider_account(client)
    response = set_first_password(client, tokens["accessToken"])
    assert response.status_code == 200, response.json
    me = client.get("/users/me", headers=bearer(response.json["accessToken"])).json
    assert me["hasPassword"] is True
    body = {"email": me["email"], "password": NEW_PASSWORD}
    assert client.post("/auth/signin", json=body).status_code == 200
    again = set_first_password(client, response.json["accessToken"], "another-quiet-lantern-88")
    assert again.status_code == 422 and "currentPassword" in again.json["errors"]


def test_a_first_password_needs_a_fresh_token(client):
    """A refreshed token cannot set a first password."""
    tokens = provider_account(client)
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    response = set_first_password(client, refreshed["accessToken"])
    assert (response.status_code, response.json["code"]) == (401, "fresh_token_required")


def test_a_password_reset_by_mail_gives_a_provider_account_a_password(
    database_url, hostile, github, smtp, mailbox
):
    """The reset link reaches a passwordless account and sets its first password."""
    mailing = create_app(provider_settings(database_url, hostile.url, MAIL_URL=smtp.url))
    client = mailing.test_client()
    email = provider_account(client)["email"]
    assert client.post("/auth/password-reset", json={"email": email}).status_code == 202
    with mailing.app_context():
        relay.send_pending()
    (message,) = mails_to(mailbox.messages, email, "Reset")
    body = {"token": token_in(message), "newPassword": NEW_PASSWORD}
    assert client.post("/auth/password-reset/confirm", json=body).status_code == 204
    signin = client.post("/auth/signin", json={"email": email, "password": NEW_PASSWORD})
    assert signin.status_code == 200
    empty_database(mailing)


def test_the_cli_lists_a_users_identities(app, client):
    """`users identities EMAIL` prints each identity's provider and subject."""
    email = provider_account(client)["email"]
    result = app.test_cli_runner().invoke(args=["users", "identities", email])
    assert result.exit_code == 0, result.output
    assert "\tcorp\tsubject-1\tada@example.com\t" in result.output
    other = app.test_cli_runner().invoke(args=["users", "identities", "nobody@example.com"])
    assert other.exit_code == 1
