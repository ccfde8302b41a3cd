"""The committed migrations build exactly the schema the models describe."""

from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import PASSWORD, bearer, postgres_database, settings
from flask_migrate import upgrade

from authsvc import create_app
from authsvc.extensions import db
from authsvc.passwords import hash_password
from authsvc.tokens import open_session


def test_migrations_match_the_models(app):
    """After `db upgrade`, autogenerate finds nothing left to migrate."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request, tmp_path):
    """Yield the URL of a database with no schema at all, of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    databases = postgres_database()
    yield next(databases)
    next(databases, None)


def test_existing_users_and_sessions_survive_the_mail_migration(empty_database_url):
    """A database at a483ecb9716d with a user and a session upgrades; both keep working.

    The user is unverified afterwards, signs in, and its old refresh token still rotates;
    user ids are still never reused.
    """
    app = create_app(settings(empty_database_url))
    with app.app_context():
        upgrade(revision="a483ecb9716d")
        db.session.execute(
            sa.text(
                "INSERT INTO users (email, password_hash, role, disabled, created_at) "
                "VALUES (:email, :hash, 'user', false, CURRENT_TIMESTAMP)"
            ),
            {"email": "old@example.com", "hash": hash_password(PASSWORD, rounds=4)},
        )
        user_id = db.session.scalar(sa.text("SELECT id FROM users"))
        with app.test_request_context():
            _, tokens = open_session(
                SimpleNamespace(id=user_id, email="old@example.com", role="user")
            )
            db.session.commit()
        upgrade()
        db.engine.dispose()
    client = app.test_client()
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 200
    me = client.get("/users/me", headers=bearer(refreshed.json["accessToken"])).json
    assert (me["id"], me["emailVerified"]) == (user_id, False)
    assert (
        client.post(
            "/auth/signin", json={"email": "old@example.com", "password": PASSWORD}
        ).status_code
        == 200
    )
    client.delete("/users/me", headers=bearer(refreshed.json["accessToken"]))
    signup = client.post("/auth/signup", json={"email": "new@example.com", "password": PASSWORD})
    assert signup.json["id"] > user_id
    with app.app_context():
        db.engine.dispose()
