"""Passkeys and the rest of an account: notices by mail, the admin's delete, resets, deletion.

Mail goes to a real SMTP server (aiosmtpd) through the outbox and the relay.
"""

from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from authenticator import Authenticator
from conftest import PASSWORD, bearer, empty_database, settings
from mailer import mails_to
from passkeyflows import (
    EMAIL,
    add_passkey,
    passkey_signin,
    password_signin,
    register,
    stored,
    verified_user,
)

from authsvc import create_app, mailtokens, relay
from authsvc.extensions import db
from authsvc.models import AuthEvent, User


@pytest.fixture
def mailing(database_url, smtp, mailbox):
    """Yield an app mailing through the test SMTP server, its client and mailbox."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url))
    yield SimpleNamespace(app=app, client=app.test_client(), mailbox=mailbox)
    empty_database(app)


def notices(mailing, subject_word):
    """Deliver the outbox; return the user's mails whose subject has a word."""
    with mailing.app.app_context():
        relay.send_pending()
    return mails_to(mailing.mailbox.messages, EMAIL, subject_word)


def text_of(message):
    """Return a mail's plain-text part."""
    return message.get_body(("plain",)).get_content()


def test_adding_a_passkey_mails_a_notice(mailing, password_hash):
    """The notice names the passkey, in text and HTML."""
    verified_user(mailing.app, password_hash)
    token = password_signin(mailing.client)["accessToken"]
    assert register(mailing.client, token, Authenticator(), name="Work laptop").status_code == 201
    (notice,) = notices(mailing, "passkey was added")
    assert '"Work laptop"' in text_of(notice)
    assert "Work laptop" in notice.get_body(("html",)).get_content()


def test_removing_a_passkey_mails_a_notice(mailing, password_hash):
    """The owner's removal is mailed, without 'by an administrator'."""
    user = verified_user(mailing.app, password_hash)
    passkey_id = add_passkey(mailing.app, user, Authenticator(), name="Old phone")
    token = password_signin(mailing.client)["accessToken"]
    path = f"/users/me/passkeys/{passkey_id}"
    assert mailing.client.delete(path, headers=bearer(token)).status_code == 204
    (notice,) = notices(mailing, "passkey was removed")
    assert '"Old phone"' in text_of(notice) and "by an administrator" not in text_of(notice)


@pytest.fixture
def admin(auth):
    """Return an admin's access token."""
    return auth.admin()["accessToken"]


def test_an_admin_removes_a_users_passkey_and_the_user_is_told(mailing, password_hash):
    """DELETE /users/<id>/passkeys/<pid>: 204, audited, mailed 'by an administrator'."""
    user = verified_user(mailing.app, password_hash)
    passkey_id = add_passkey(mailing.app, user, Authenticator())
    verified_user(mailing.app, password_hash, email="admin@example.com", role="admin")
    admin = password_signin(mailing.client, "admin@example.com")["accessToken"]
    path = f"/users/{user}/passkeys/{passkey_id}"
    assert mailing.client.delete(path, headers=bearer(admin)).status_code == 204
    assert stored(mailing.app, user) == []
    (notice,) = notices(mailing, "passkey was removed")
    assert "by an administrator" in text_of(notice)


def test_only_an_admin_removes_another_users_passkey(app, client, password_hash):
    """Anyone else is 403, even for their own passkey on this path."""
    user = verified_user(app, password_hash)
    passkey_id = add_passkey(app, user, Authenticator())
    token = password_signin(client)["accessToken"]
    response = client.delete(f"/users/{user}/passkeys/{passkey_id}", headers=bearer(token))
    assert (response.status_code, response.json["code"]) == (403, "forbidden")
    assert len(stored(app, user)) == 1


def test_the_admins_delete_is_404_for_an_unknown_user_or_passkey(app, client, password_hash, admin):
    """An unknown user, an unknown passkey or another user's passkey: 404."""
    user = verified_user(app, password_hash)
    other = verified_user(app, password_hash, email="other@example.com")
    others = add_passkey(app, other, Authenticator())
    for path in (
        f"/users/{other + 100}/passkeys/{others}",
        f"/users/{user}/passkeys/{others}",
        f"/users/{other}/passkeys/{others + 1}",
        f"/users/{2**40}/passkeys/{2**40}",
    ):
        assert client.delete(path, headers=bearer(admin)).status_code == 404, path
    assert len(stored(app, other)) == 1


def test_the_admin_cannot_remove_a_users_last_way_in(app, client, password_hash, admin):
    """A user with no password and one passkey keeps it: 409 last_sign_in_method."""
    user = verified_user(app, None)
    passkey_id = add_passkey(app, user, Authenticator())
    response = client.delete(f"/users/{user}/passkeys/{passkey_id}", headers=bearer(admin))
    assert (response.status_code, response.json["code"]) == (409, "last_sign_in_method")


def test_a_password_reset_leaves_passkeys_alone(app, client, password_hash):
    """Resetting the password ends sessions, but the passkey still signs in."""
    user = verified_user(app, password_hash)
    key = Authenticator()
    add_passkey(app, user, key)
    with app.app_context():
        token = mailtokens.issue(user, "password_reset", EMAIL)
        db.session.commit()
    body = {"token": token, "newPassword": "marble-lantern-quiet-77"}
    assert client.post("/auth/password-reset/confirm", json=body).status_code == 204
    assert len(stored(app, user)) == 1
    assert passkey_signin(client, key).status_code == 200


def test_the_admins_mfa_reset_leaves_passkeys_alone(app, client, password_hash, admin):
    """DELETE /users/<id>/mfa turns MFA off; the passkey stays and signs in."""
    user = verified_user(app, password_hash, mfa_enabled=True)
    key = Authenticator()
    add_passkey(app, user, key)
    assert client.delete(f"/users/{user}/mfa", headers=bearer(admin)).status_code == 204
    assert len(stored(app, user)) == 1
    assert passkey_signin(client, key).status_code == 200


def test_deleting_an_account_deletes_its_passkeys(app, client, password_hash):
    """Passkeys go with their account; the credential signs in to nothing after."""
    user = verified_user(app, password_hash)
    key = Authenticator()
    add_passkey(app, user, key)
    token = password_signin(client)["accessToken"]
    assert client.delete("/users/me", headers=bearer(token)).status_code == 204
    assert stored(app, user) == []
    assert passkey_signin(client, key).status_code == 401


def test_a_passkey_only_account_signs_in_and_refuses_passwords(app, client):
    """An account with no password signs in with its passkey; /auth/signin stays 401."""
    user = verified_user(app, None)
    key = Authenticator()
    add_passkey(app, user, key)
    assert passkey_signin(client, key).json["id"] == user
    response = client.post("/auth/signin", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 401


def test_a_disabled_account_cannot_sign_in_with_a_passkey(app, client, password_hash):
    """403 account_disabled, audited, and no tokens."""
    user = verified_user(app, password_hash, disabled=True)
    add_passkey(app, user, key := Authenticator())
    response = passkey_signin(client, key)
    assert (response.status_code, response.json["code"]) == (403, "account_disabled")
    with app.app_context():
        assert db.session.scalar(sa.select(AuthEvent.event).order_by(AuthEvent.id.desc())) == (
            "signin_disabled"
        )
        assert db.session.get(User, user).disabled
