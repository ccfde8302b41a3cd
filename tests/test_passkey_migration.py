"""The passkeys migration on a database the current release filled, on both databases."""

import pytest
import sqlalchemy as sa
from authenticator import Authenticator
from conftest import bearer, postgres_database, settings
from flask_migrate import downgrade, upgrade
from passkeyflows import passkey_signin, password_signin, register
from test_migrations import insert_signed_in_user

from authsvc import create_app
from authsvc.extensions import db

RELEASED = "e1c7a9f3b250"  # the head of the migrations before passkeys


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request, tmp_path):
    """Yield the URL of an empty database of each kind, with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authsvc.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def released(empty_database_url):
    """Yield an app on a database at the released schema, holding a signed-in, verified user."""
    app = create_app(settings(empty_database_url))
    with app.app_context():
        upgrade(revision=RELEASED)
        user_id, refresh_token = insert_signed_in_user("session-before-passkeys")
        db.session.execute(
            sa.text("UPDATE users SET email = 'user@example.com', email_verified = true")
        )
        db.session.commit()
    yield app, user_id, refresh_token
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_upgrade_keeps_users_and_sessions_and_takes_passkeys(released):
    """After the upgrade the old session refreshes, and the user adds and uses a passkey."""
    app, user_id, refresh_token = released
    with app.app_context():
        upgrade()
        db.engine.dispose()
    client = app.test_client()
    assert client.post("/auth/refresh", headers=bearer(refresh_token)).status_code == 200
    key = Authenticator()
    assert register(client, password_signin(client)["accessToken"], key).status_code == 201
    response = passkey_signin(client, key)
    assert (response.status_code, response.json["id"]) == (200, user_id)


def test_the_downgrade_drops_passkeys_and_keeps_users(released):
    """Downgrading removes the two tables and nothing else; upgrading again works."""
    app, user_id, refresh_token = released
    with app.app_context():
        upgrade()
        downgrade(revision=RELEASED)
        tables = set(sa.inspect(db.engine).get_table_names())
        assert not {"passkeys", "passkey_challenges"} & tables
        assert db.session.scalar(sa.text("SELECT id FROM users")) == user_id
        upgrade()
        db.engine.dispose()
    assert app.test_client().post("/auth/refresh", headers=bearer(refresh_token)).status_code == 200
