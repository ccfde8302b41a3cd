"""The committed migrations build exactly the schema the models describe, and keep data."""

import jwt
import pyotp
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import PASSWORD, bearer, postgres_database, settings
from flask_migrate import upgrade
from introspecting import answer, register

from authsvc import audit, create_app, sealing, tokens
from authsvc.extensions import db
from authsvc.models import AuthEvent, utcnow
from authsvc.passwords import hash_password


def test_migrations_match_the_models(app):
    """After `db upgrade`, autogenerate finds nothing left to migrate."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request, tmp_path):
    """Yield the URL of an empty database of each kind, with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authsvc.db'}"
    else:
        yield from postgres_database()


def test_audit_source_migration_keeps_earlier_events(empty_database_url):
    """Events stored before the audit source existed come out as API events, and new ones add."""
    app = create_app(settings(empty_database_url))
    with app.app_context():
        upgrade(revision="a483ecb9716d")
        db.session.execute(
            sa.text(
                "INSERT INTO auth_events (created_at, event, user_id, request_id)"
                " VALUES (CURRENT_TIMESTAMP, 'signup', 7, 'req-1')"
            )
        )
        db.session.commit()
        upgrade()
        audit.record("user_created", 8)
        db.session.commit()
        rows = db.session.scalars(sa.select(AuthEvent).order_by(AuthEvent.id)).all()
        assert [(row.event, row.user_id, row.source) for row in rows] == [
            ("signup", 7, "api"),
            ("user_created", 8, "cli"),
        ]
        db.session.remove()


def insert_signed_in_user(session_id):
    """Insert a user and an open session as raw rows; return the user id and refresh token."""
    now = utcnow()
    iat = tokens.epoch(now)
    db.session.execute(
        sa.text(
            "INSERT INTO users (email, password_hash, role, disabled, created_at) "
            "VALUES ('old@example.com', :hash, 'user', false, :now)"
        ),
        {"hash": hash_password(PASSWORD, rounds=4), "now": now},
    )
    user_id = db.session.scalar(sa.text("SELECT id FROM users"))
    refresh_token = tokens.encode_refresh_token(user_id, session_id, "jti-before", iat, iat + 3600)
    db.session.execute(
        sa.text(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, "
            "refresh_digest, refresh_jti, refresh_iat, refresh_exp) VALUES "
            "(:sid, :user_id, :now, :now, :expires, :digest, 'jti-before', :iat, :exp)"
        ),
        {
            "sid": session_id,
            "user_id": user_id,
            "now": now,
            "expires": now.replace(year=now.year + 1),
            "digest": tokens.refresh_digest(refresh_token),
            "iat": iat,
            "exp": iat + 3600,
        },
    )
    db.session.commit()
    return user_id, refresh_token


def test_existing_users_and_sessions_survive_the_upgrade(empty_database_url):
    """A database at a483ecb9716d with a signed-in user upgrades; user and session keep working.

    On SQLite, batch mode would rebuild `users`, and dropping the old table
    would cascade to every session and forget AUTOINCREMENT: the migrations
    add their users columns in place. The user is unverified, has no MFA,
    its session counts as a password signin, and user ids are still never
    reused.
    """
    app = create_app(settings(empty_database_url))
    with app.app_context():
        upgrade(revision="a483ecb9716d")
        user_id, refresh_token = insert_signed_in_user("session-before-upgrade")
        upgrade()
        db.engine.dispose()
    client = app.test_client()
    refreshed = client.post("/auth/refresh", headers=bearer(refresh_token))
    assert refreshed.status_code == 200, refreshed.json
    access = refreshed.json["accessToken"]
    assert jwt.decode(access, options={"verify_signature": False})["amr"] == ["pwd"]
    me = client.get("/users/me", headers=bearer(access)).json
    assert (me["id"], me["emailVerified"], me["mfaEnabled"]) == (user_id, False, False)
    signin = client.post("/auth/signin", json={"email": "old@example.com", "password": PASSWORD})
    assert signin.status_code == 200
    assert client.delete("/users/me", headers=bearer(signin.json["accessToken"])).status_code == 204
    signup = client.post("/auth/signup", json={"email": "new@example.com", "password": PASSWORD})
    assert signup.json["id"] > user_id
    with app.app_context():
        db.engine.dispose()


def test_optional_passwords_keep_sessions_and_never_reuse_a_deleted_id(empty_database_url):
    """Making password_hash optional rebuilds `users` on SQLite: sessions and the id sequence stay.

    The newest user is deleted before the upgrade; a user made after it
    still gets a higher id than any handed out before.
    """
    app = create_app(settings(empty_database_url))
    with app.app_context():
        upgrade(revision="5d8e2b7c4a90")
        user_id, refresh_token = insert_signed_in_user("session-before-rebuild")
        db.session.execute(
            sa.text(
                "INSERT INTO users (email, password_hash, role, disabled, created_at) "
                "VALUES ('gone@example.com', 'x', 'user', false, CURRENT_TIMESTAMP)"
            )
        )
        gone = db.session.scalar(sa.text("SELECT max(id) FROM users"))
        db.session.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": gone})
        db.session.commit()
        upgrade()
        db.engine.dispose()
    client = app.test_client()
    assert client.post("/auth/refresh", headers=bearer(refresh_token)).status_code == 200
    signup = client.post("/auth/signup", json={"email": "new@example.com", "password": PASSWORD})
    assert signup.json["id"] > gone > user_id
    with app.app_context():
        db.engine.dispose()


def test_registered_clients_migration_keeps_sessions_and_events(empty_database_url):
    """A database at e1c7a9f3b250 with a signed-in user and audit rows upgrades to clients.

    Earlier events keep their rows (with no client); the user's session still
    refreshes, and a client registered after the upgrade sees its token active.
    """
    app = create_app(settings(empty_database_url))
    with app.app_context():
        upgrade(revision="e1c7a9f3b250")
        user_id, refresh_token = insert_signed_in_user("session-before-clients")
        db.session.execute(
            sa.text(
                "INSERT INTO auth_events (created_at, event, user_id, source)"
                " VALUES (CURRENT_TIMESTAMP, 'user_created', :user_id, 'cli')"
            ),
            {"user_id": user_id},
        )
        db.session.commit()
        upgrade()
        events = db.session.execute(sa.select(AuthEvent.event, AuthEvent.client_id)).all()
        assert [tuple(row) for row in events] == [("user_created", None)]
        db.session.remove()
        db.engine.dispose()
    service = register(app)
    client = app.test_client()
    refreshed = client.post("/auth/refresh", headers=bearer(refresh_token))
    assert refreshed.status_code == 200, refreshed.json
    said = answer(client, service, refreshed.json["accessToken"])
    assert (said["active"], said["sub"]) == (True, str(user_id))
    with app.app_context():
        db.engine.dispose()


def test_the_previous_release_upgrades_and_its_users_sign_in(empty_database_url):
    """A database at the previous release's head (5d8e2b7c4a90), with a signed-in user and
    an MFA user, upgrades to this one: the session refreshes, the password user signs in,
    and the MFA user is asked for the second step and passes it with an authenticator code.
    """
    app = create_app(settings(empty_database_url))
    secret = pyotp.random_base32()
    with app.app_context():
        upgrade(revision="5d8e2b7c4a90")
        _, refresh_token = insert_signed_in_user("session-of-the-previous-release")
        db.session.execute(
            sa.text(
                "INSERT INTO users (email, password_hash, role, disabled, created_at, "
                "email_verified, mfa_enabled) VALUES "
                "('mfa@example.com', :hash, 'user', false, :now, true, true)"
            ),
            {"hash": hash_password(PASSWORD, rounds=4), "now": utcnow()},
        )
        mfa_user = db.session.scalar(
            sa.text("SELECT id FROM users WHERE email = 'mfa@example.com'")
        )
        db.session.execute(
            sa.text(
                "INSERT INTO totp_factors (user_id, secret, created_at, enabled_at) "
                "VALUES (:user_id, :secret, :now, :now)"
            ),
            {"user_id": mfa_user, "secret": sealing.seal("totp", secret.encode()), "now": utcnow()},
        )
        db.session.commit()
        upgrade()
        db.engine.dispose()
    client = app.test_client()
    assert client.post("/auth/refresh", headers=bearer(refresh_token)).status_code == 200
    signin = client.post("/auth/signin", json={"email": "old@example.com", "password": PASSWORD})
    assert signin.status_code == 200
    asked = client.post("/auth/signin", json={"email": "mfa@example.com", "password": PASSWORD})
    assert (asked.status_code, asked.json["code"]) == (403, "mfa_required")
    step = {"mfaToken": asked.json["mfaToken"], "code": pyotp.TOTP(secret).now()}
    signed_in = client.post("/auth/signin/mfa", json=step)
    assert signed_in.status_code == 200, signed_in.json
    claims = jwt.decode(signed_in.json["accessToken"], options={"verify_signature": False})
    assert set(claims["amr"]) >= {"pwd", "otp"}
    with app.app_context():
        db.engine.dispose()
