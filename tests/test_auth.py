"""Signup, signin and signout through the API, on each database."""

import pytest
import sqlalchemy as sa
from conftest import PASSWORD, bearer

from authsvc.extensions import db
from authsvc.models import Session, User


def test_signup_returns_user_and_tokens(client):
    """Signup answers 201 with the id, the email and a token pair."""
    response = client.post("/auth/signup", json={"email": "new@example.com", "password": PASSWORD})
    assert response.status_code == 201
    assert set(response.json) == {"id", "email", "accessToken", "refreshToken"}
    assert response.json["email"] == "new@example.com"
    assert isinstance(response.json["id"], int)


def test_signup_stores_email_normalised(auth, app):
    """An email is stored trimmed and lower-cased."""
    body = auth.signup(email="  Mixed.Case@Example.COM ")
    assert body["email"] == "mixed.case@example.com"
    with app.app_context():
        assert db.session.get(User, body["id"]).email == "mixed.case@example.com"


def test_signup_never_stores_the_password(auth, app):
    """The database keeps a bcrypt hash, not the password."""
    body = auth.signup()
    with app.app_context():
        stored = db.session.get(User, body["id"]).password_hash
    assert PASSWORD not in stored and stored.startswith("$2b$04$")


@pytest.mark.parametrize("email", ["user@example.com", "USER@example.com", " user@EXAMPLE.com"])
def test_signup_refuses_taken_email_whatever_its_case(auth, client, email):
    """A second signup with the same address, in any case, is 409 email_taken."""
    auth.signup("user@example.com")
    response = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 409
    assert response.json["code"] == "email_taken"
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"email", "password"}),
        ({"email": "user@example.com"}, {"password"}),
        ({"email": "not-an-email", "password": PASSWORD}, {"email"}),
        ({"email": "a@b", "password": PASSWORD}, {"email"}),
        ({"email": "x" * 250 + "@example.com", "password": PASSWORD}, {"email"}),
        ({"email": "\u0430dmin@example.com", "password": PASSWORD}, {"email"}),
        ({"email": "user@example.com", "password": "short"}, {"password"}),
        ({"email": "user@example.com", "password": "p" * 129}, {"password"}),
        ({"email": "user@example.com", "password": "\ud800" * 8}, {"password"}),
        ({"email": 42, "password": ["x"]}, {"email", "password"}),
        ({"email": None, "password": None}, {"email", "password"}),
        ({"email": "user@example.com", "password": PASSWORD, "role": "admin"}, {"role"}),
        ({"email": "user@example.com", "password": PASSWORD, "id": 1}, {"id"}),
    ],
)
def test_signup_names_every_bad_field(client, app, body, fields):
    """Invalid input is 422 naming each bad field, and creates nothing."""
    response = client.post("/auth/signup", json=body)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert set(response.json["errors"]) == fields
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_password_length_counts_code_points(client):
    """Eight characters of four bytes each are eight characters, not 32."""
    response = client.post(
        "/auth/signup", json={"email": "u@example.com", "password": "🔑🐍🌋🎻🚲🧭🪁🦉"}
    )
    assert response.status_code == 201


def test_every_password_character_is_significant(auth, client):
    """Two passwords differing only after byte 72 do not both verify."""
    prefix = "violet-kettle-orbit-42-" + "é" * 30  # 83 bytes in UTF-8
    auth.signup(password=prefix + "-one")
    response = client.post(
        "/auth/signin", json={"email": "user@example.com", "password": prefix + "-two"}
    )
    assert response.status_code == 401
    assert auth.signin(password=prefix + "-one")["accessToken"]


def test_signin_returns_user_and_tokens(auth, client):
    """Signin answers 200 with the id, the email and a token pair."""
    user_id = auth.signup()["id"]
    response = client.post("/auth/signin", json={"email": "USER@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert set(response.json) == {"id", "email", "accessToken", "refreshToken"}
    assert response.json["id"] == user_id


def test_signin_answers_unknown_email_like_wrong_password(auth, client):
    """Unknown email and wrong password give the same 401 and challenge."""
    auth.signup()
    unknown = client.post(
        "/auth/signin", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    wrong = client.post(
        "/auth/signin", json={"email": "user@example.com", "password": "wrong-pass-1"}
    )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json == wrong.json
    assert unknown.json["code"] == "invalid_credentials"
    assert unknown.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"]


def test_signin_refuses_disabled_user_after_right_password(auth, client):
    """A disabled user gets 403 account_disabled, but only with the right password."""
    auth.create_user(disabled=True)
    right = client.post("/auth/signin", json={"email": "user@example.com", "password": PASSWORD})
    wrong = client.post(
        "/auth/signin", json={"email": "user@example.com", "password": "wrong-pass-1"}
    )
    assert right.status_code == 403 and right.json["code"] == "account_disabled"
    assert wrong.status_code == 401 and wrong.json["code"] == "invalid_credentials"


def test_each_signin_opens_a_session(auth, app):
    """Every signin is a new session row holding a digest, never the token."""
    first, second = auth.signup(), auth.signin()
    with app.app_context():
        rows = db.session.scalars(sa.select(Session)).all()
    assert len(rows) == 2
    stored = {row.refresh_digest for row in rows}
    assert first["refreshToken"] not in stored and second["refreshToken"] not in stored
    assert all(len(digest) == 64 for digest in stored)


def test_session_ids_are_opaque(auth):
    """Session ids are random strings, not sequential integers."""
    import jwt

    sids = {
        jwt.decode(
            auth.signup(f"u{i}@example.com")["accessToken"], options={"verify_signature": False}
        )["sid"]
        for i in range(3)
    }
    assert len(sids) == 3
    assert all(isinstance(sid, str) and len(sid) >= 16 and not sid.isdigit() for sid in sids)


def test_signout_answers_204_with_empty_body(auth, client):
    """Signout answers 204 and nothing else."""
    tokens = auth.signup()
    response = client.post("/auth/signout", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 204
    assert response.data == b"" and "Content-Type" not in response.headers


def test_signout_refuses_access_token_at_once(auth, client):
    """After signout the session's access token is refused, not only at expiry."""
    tokens = auth.signup()
    client.post("/auth/signout", headers=bearer(tokens["accessToken"]))
    response = client.get("/users/me", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 401
    assert response.json["code"] == "token_revoked"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_signout_refuses_refresh_token(auth, client):
    """After signout the session's refresh token no longer refreshes."""
    tokens = auth.signup()
    client.post("/auth/signout", headers=bearer(tokens["accessToken"]))
    response = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"]))
    assert response.status_code == 401


def test_signout_leaves_other_sessions_alone(auth, client):
    """Signing out one device keeps the user's other sessions working."""
    laptop, phone = auth.signup(), auth.signin()
    client.post("/auth/signout", headers=bearer(laptop["accessToken"]))
    assert client.get("/users/me", headers=bearer(phone["accessToken"])).status_code == 200
    assert client.post("/auth/refresh", headers=bearer(phone["refreshToken"])).status_code == 200


def test_signout_needs_a_token(client):
    """Signout without a token is 401 with a plain Bearer challenge."""
    response = client.post("/auth/signout")
    assert response.status_code == 401
    assert response.json["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authsvc"'


def test_signout_refuses_refresh_token_in_place_of_access(auth, client):
    """A refresh token cannot sign out; its session stays open."""
    tokens = auth.signup()
    response = client.post("/auth/signout", headers=bearer(tokens["refreshToken"]))
    assert response.status_code == 401
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
