"""A database filled by the release before providers upgrades, and its users go on as before."""

import pytest
import sqlalchemy as sa
from conftest import PASSWORD, bearer, postgres_database
from flask_migrate import downgrade, upgrade
from oauthhelp import provider_settings, sign_in
from standins import HostileProvider
from test_migrations import insert_signed_in_user

from authsvc import accounts, create_app
from authsvc.extensions import db

PREVIOUS_RELEASE = "e1c7a9f3b250"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    """Yield the URL of an empty database of each kind, with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authsvc.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def provider():
    """Serve an OpenID Provider for the upgraded service."""
    hostile = HostileProvider()
    yield hostile
    hostile.close()


def test_a_filled_database_upgrades_and_keeps_serving_its_users(empty_url, provider):
    """Sessions, passwords and ids survive; the user counts one way in and can link a provider."""
    app = create_app(provider_settings(empty_url, provider.url))
    with app.app_context():
        upgrade(revision=PREVIOUS_RELEASE)
        user_id, refresh_token = insert_signed_in_user("session-before-providers")
        upgrade()
        assert accounts.count_ways_in(user_id) == 1
        db.engine.dispose()
    client = app.test_client()
    assert client.post("/auth/refresh", headers=bearer(refresh_token)).status_code == 200
    signin = client.post("/auth/signin", json={"email": "old@example.com", "password": PASSWORD})
    me = client.get("/users/me", headers=bearer(signin.json["accessToken"])).json
    assert (me["id"], me["hasPassword"]) == (user_id, True)
    provider.email = "new@example.com"
    assert sign_in(client).json["id"] > user_id
    with app.app_context():
        db.engine.dispose()


def test_the_migration_goes_down_and_up_again(empty_url):
    """Downgrading drops the two tables; upgrading again makes them anew."""
    app = create_app(provider_settings(empty_url))
    with app.app_context():
        upgrade()
        downgrade(revision=PREVIOUS_RELEASE)
        tables = sa.inspect(db.engine).get_table_names()
        assert "identities" not in tables and "oauth_flows" not in tables
        upgrade()
        assert {"identities", "oauth_flows"} <= set(sa.inspect(db.engine).get_table_names())
        db.engine.dispose()
