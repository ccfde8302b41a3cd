"""GET /users/me and the admins' list of users."""

import re

import pytest
from conftest import bearer


def test_me_returns_the_caller(auth, client):
    """/users/me answers the user object (hasPassword included) and the token's iat and exp."""
    tokens = auth.signup()
    response = client.get("/users/me", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 200
    body = response.json
    assert set(body) == {
        "sub",
        "id",
        "email",
        "role",
        "createdAt",
        "emailVerified",
        "mfaEnabled",
        "hasPassword",
        "iat",
        "exp",
    }
    assert body["mfaEnabled"] is False
    assert body["sub"] == body["id"] == tokens["id"]
    assert (body["email"], body["role"]) == ("user@example.com", "user")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["createdAt"])


def test_me_echoes_iat_and_exp_of_the_token_presented(auth, client):
    """iat and exp are those of the access token, in epoch seconds."""
    import jwt

    tokens = auth.signup()
    claims = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
    body = client.get("/users/me", headers=bearer(tokens["accessToken"])).json
    assert (body["iat"], body["exp"]) == (claims["iat"], claims["exp"])


def test_me_shows_disabled_to_admins(auth, client):
    """An admin's own user object carries `disabled`."""
    tokens = auth.admin()
    body = client.get("/users/me", headers=bearer(tokens["accessToken"])).json
    assert body["role"] == "admin" and body["disabled"] is False


def test_me_needs_a_token(client):
    """/users/me without a token is 401."""
    response = client.get("/users/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_list_users_is_for_admins_only(auth, client):
    """A non-admin gets 403 forbidden."""
    tokens = auth.signup()
    response = client.get("/users", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 403 and response.json["code"] == "forbidden"


def test_list_users_returns_a_plain_array(auth, client):
    """Admins get a JSON array of users, with `disabled`, in id order."""
    auth.create_user("someone@example.com", disabled=True)
    tokens = auth.admin()
    response = client.get("/users", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 200
    assert [user["email"] for user in response.json] == ["someone@example.com", "admin@example.com"]
    assert set(response.json[0]) == {
        "sub",
        "id",
        "email",
        "role",
        "createdAt",
        "emailVerified",
        "mfaEnabled",
        "hasPassword",
        "disabled",
    }
    assert response.json[0]["disabled"] is True
    assert "Link" not in response.headers


def test_role_change_takes_effect_at_once(auth, client, app):
    """A demoted admin loses access with the tokens they already hold."""
    import sqlalchemy as sa

    from authsvc.extensions import db
    from authsvc.models import User

    tokens = auth.admin()
    with app.app_context():
        db.session.execute(sa.update(User).values(role="user"))
        db.session.commit()
    assert client.get("/users", headers=bearer(tokens["accessToken"])).status_code == 403


def next_link(response):
    """Return the rel="next" URL of a response's Link header, or None."""
    match = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("Link", ""))
    return match and match[1]


def test_list_users_pages_by_link_header(auth, client):
    """Following rel="next" walks every user once, in pages of `limit`."""
    for i in range(6):
        auth.create_user(f"user{i}@example.com")
    headers = bearer(auth.admin()["accessToken"])
    url, seen, pages = "/users?limit=3", [], 0
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200 and len(response.json) <= 3
        seen += [user["id"] for user in response.json]
        url, pages = next_link(response), pages + 1
    assert pages == 3 and len(seen) == 7 and seen == sorted(set(seen))


def test_next_link_is_absolute_and_keeps_limit(auth, client):
    """The Link header names an absolute URL with the same limit and a cursor."""
    auth.create_user("other@example.com")
    headers = bearer(auth.admin()["accessToken"])
    link = next_link(client.get("/users?limit=1", headers=headers))
    assert link.startswith("http://localhost/users?")
    assert "limit=1" in link and "cursor=" in link


def test_list_users_caps_limit_at_200(auth, client, app):
    """A limit over 200 is served as 200."""
    from authsvc.extensions import db
    from authsvc.models import User

    with app.app_context():
        db.session.add_all(User(email=f"u{i}@example.com", password_hash="x") for i in range(205))
        db.session.commit()
    headers = bearer(auth.admin()["accessToken"])
    response = client.get("/users?limit=1000", headers=headers)
    assert len(response.json) == 200 and next_link(response)


def test_list_users_defaults_to_50(auth, client, app):
    """Without a limit a page holds 50 users."""
    from authsvc.extensions import db
    from authsvc.models import User

    with app.app_context():
        db.session.add_all(User(email=f"u{i}@example.com", password_hash="x") for i in range(55))
        db.session.commit()
    response = client.get("/users", headers=bearer(auth.admin()["accessToken"]))
    assert len(response.json) == 50 and "limit=50" in next_link(response)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=" + "9" * 5000,
        "limit=%2B5",
        "limit=1_000",
        "limit=%D9%A3",
        "limit=%205",
        "cursor=!!!",
        "cursor=eA",
        "cursor=dTk5OTk5OTk5OTk5OTk5",
        "cursor=",
    ],
)
def test_list_users_refuses_bad_paging(auth, client, query):
    """A limit that is not a positive integer, or a cursor that does not decode, is 422."""
    headers = bearer(auth.admin()["accessToken"])
    response = client.get(f"/users?{query}", headers=headers)
    assert response.status_code == 422
    assert set(response.json["errors"]) <= {"limit", "cursor"}


def test_users_page_serialises_as_its_schema(auth, app):
    """The fast page serialiser gives exactly what UserSchema(many=True) documents."""
    import sqlalchemy as sa

    from authsvc.extensions import db
    from authsvc.models import User
    from authsvc.schemas import UserSchema
    from authsvc.users import PAGE_COLUMNS, page_document, user_document

    auth.create_user("a@example.com")
    auth.create_user("b@example.com", role="admin", disabled=True)
    with app.app_context():
        db.session.execute(
            sa.update(User).where(User.email == "a@example.com").values(email_verified=True)
        )
        rows = db.session.execute(sa.select(*PAGE_COLUMNS)).all()
        expected = UserSchema(many=True).dump([user_document(row, True) for row in rows])
    assert page_document(rows) == expected
