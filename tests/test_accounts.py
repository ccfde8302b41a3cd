"""Password change, account deletion, and the admins' user endpoints."""

import threading
import time

import jwt
import pytest
import sqlalchemy as sa
from conftest import PASSWORD, TEST_SECRET, bearer, settings

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import Session, User
from authsvc.passwords import hash_cost

NEW_PASSWORD = "marble-lantern-quiet-77"


def change_password(client, tokens, current=PASSWORD, new=NEW_PASSWORD):
    """POST /users/me/password with a token pair's access token."""
    return client.post(
        "/users/me/password",
        json={"currentPassword": current, "newPassword": new},
        headers=bearer(tokens["accessToken"]),
    )


def test_password_change_returns_a_new_session(auth, client):
    """A password change answers the tokens of a new, working session."""
    tokens = auth.signup()
    response = change_password(client, tokens)
    assert response.status_code == 200 and set(response.json) == {"accessToken", "refreshToken"}
    assert client.get("/users/me", headers=bearer(response.json["accessToken"])).status_code == 200


def test_password_change_ends_every_earlier_session(auth, client):
    """All earlier sessions end, the caller's included."""
    first, second = auth.signup(), auth.signin()
    change_password(client, second)
    for tokens in (first, second):
        assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 401
        assert (
            client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 401
        )


def test_password_change_swaps_the_password(auth, client):
    """Afterwards only the new password signs in."""
    change_password(client, auth.signup())
    old = client.post("/auth/signin", json={"email": "user@example.com", "password": PASSWORD})
    assert old.status_code == 401
    assert auth.signin(password=NEW_PASSWORD)["accessToken"]


def test_password_change_with_wrong_current_is_403(auth, client):
    """A wrong current password is 403 invalid_password, and nothing changes."""
    tokens = auth.signup()
    response = change_password(client, tokens, current="not-the-password-1")
    assert response.status_code == 403 and response.json["code"] == "invalid_password"
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200


def test_password_change_refuses_a_weak_new_password(auth, client):
    """The new password is rated like a signup's, and named newPassword."""
    response = change_password(client, auth.signup(), new="password1234")
    assert response.status_code == 422 and response.json["code"] == "weak_password"
    assert list(response.json["errors"]) == ["newPassword"]


def test_password_change_validates_its_body(auth, client):
    """Missing or unknown fields are 422 naming them."""
    tokens = auth.signup()
    response = client.post(
        "/users/me/password",
        json={"newPassword": NEW_PASSWORD, "x": 1},
        headers=bearer(tokens["accessToken"]),
    )
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"currentPassword", "x"}


def test_signin_rehashes_when_the_cost_changed(auth, database_url, app):
    """A hash made at another cost is redone at BCRYPT_ROUNDS on the next signin."""
    auth.create_user()
    with app.app_context():
        assert hash_cost(db.session.scalar(sa.select(User.password_hash))) == 4
    costlier = create_app(settings(database_url, BCRYPT_ROUNDS=5)).test_client()
    body = {"email": "user@example.com", "password": PASSWORD}
    assert costlier.post("/auth/signin", json=body).status_code == 200
    with app.app_context():
        assert hash_cost(db.session.scalar(sa.select(User.password_hash))) == 5
    assert costlier.post("/auth/signin", json=body).status_code == 200


def stale(tokens):
    """Return the access token of a pair re-signed as no longer fresh."""
    claims = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
    return jwt.encode({**claims, "fresh": int(time.time()) - 1}, TEST_SECRET, algorithm="HS256")


def test_delete_me_removes_user_sessions_and_tokens(auth, client, app):
    """With a fresh token the account goes, and its email can sign up again."""
    tokens = auth.signup()
    response = client.delete("/users/me", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 204
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Session)) == 0
        assert db.session.get(User, tokens["id"]) is None
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 401
    assert auth.signup()["id"] != tokens["id"]


@pytest.mark.parametrize("kind", ["stale", "refreshed"])
def test_delete_me_needs_a_fresh_token(auth, client, kind):
    """An old token, or one from refresh, is 401 fresh_token_required."""
    tokens = auth.signup()
    if kind == "stale":
        token = stale(tokens)
    else:
        token = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json[
            "accessToken"
        ]
    response = client.delete("/users/me", headers=bearer(token))
    assert response.status_code == 401 and response.json["code"] == "fresh_token_required"
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200


def test_password_change_from_a_refreshed_token_gives_no_fresh_token(auth, client):
    """A password change is no signin: its new token is only as fresh as the caller's."""
    tokens = auth.signup()
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    changed = change_password(client, refreshed).json
    response = client.delete("/users/me", headers=bearer(changed["accessToken"]))
    assert response.status_code == 401 and response.json["code"] == "fresh_token_required"


def test_last_admin_cannot_delete_itself(auth, client):
    """The only admin leaving is 409 last_admin."""
    response = client.delete("/users/me", headers=bearer(auth.admin()["accessToken"]))
    assert response.status_code == 409 and response.json["code"] == "last_admin"


def test_get_user_for_admin_and_self_only(auth, client):
    """An admin sees anyone (with disabled); a user sees itself only; others get 404."""
    mine = auth.signup()
    other_id = auth.create_user("other@example.com")
    admin = auth.admin()
    as_admin = client.get(f"/users/{mine['id']}", headers=bearer(admin["accessToken"]))
    assert as_admin.status_code == 200 and as_admin.json["disabled"] is False
    as_self = client.get(f"/users/{mine['id']}", headers=bearer(mine["accessToken"]))
    assert as_self.status_code == 200 and "disabled" not in as_self.json
    assert client.get(f"/users/{other_id}", headers=bearer(mine["accessToken"])).status_code == 404
    for missing in (999999, 99999999999999999999):
        assert (
            client.get(f"/users/{missing}", headers=bearer(admin["accessToken"])).status_code == 404
        )


def test_admin_promotes_and_demotes(auth, client):
    """PATCH role makes a user an admin, at once, and back."""
    user = auth.signup()
    admin = auth.admin()
    promoted = client.patch(
        f"/users/{user['id']}", json={"role": "admin"}, headers=bearer(admin["accessToken"])
    )
    assert promoted.status_code == 200 and promoted.json["role"] == "admin"
    assert client.get("/users", headers=bearer(user["accessToken"])).status_code == 200
    client.patch(
        f"/users/{user['id']}", json={"role": "user"}, headers=bearer(admin["accessToken"])
    )
    assert client.get("/users", headers=bearer(user["accessToken"])).status_code == 403


def test_disabled_user_is_locked_out_at_once(auth, client):
    """PATCH disabled refuses the user's tokens now and their signin after."""
    user = auth.signup()
    admin = auth.admin()
    response = client.patch(
        f"/users/{user['id']}", json={"disabled": True}, headers=bearer(admin["accessToken"])
    )
    assert response.status_code == 200 and response.json["disabled"] is True
    assert client.get("/users/me", headers=bearer(user["accessToken"])).status_code == 401
    signin = client.post("/auth/signin", json={"email": "user@example.com", "password": PASSWORD})
    assert signin.status_code == 403 and signin.json["code"] == "account_disabled"


def test_reenabled_user_starts_over(auth, client):
    """Enabling a user again lets them sign in; the sessions closed by disabling stay closed."""
    user = auth.signup()
    headers = bearer(auth.admin()["accessToken"])
    client.patch(f"/users/{user['id']}", json={"disabled": True}, headers=headers)
    client.patch(f"/users/{user['id']}", json={"disabled": False}, headers=headers)
    assert client.get("/users/me", headers=bearer(user["accessToken"])).status_code == 401
    assert auth.signin()["accessToken"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"role": "root"},
        {"disabled": "yes"},
        {"disabled": 1},
        {"email": "x@example.com"},
        {"role": None},
    ],
)
def test_patch_user_validates_its_body(auth, client, body):
    """Only role (user/admin) and disabled (a boolean) may be patched."""
    user = auth.signup()
    response = client.patch(
        f"/users/{user['id']}", json=body, headers=bearer(auth.admin()["accessToken"])
    )
    assert response.status_code == 422


@pytest.mark.parametrize(("method", "body"), [("PATCH", {"role": "admin"}), ("DELETE", None)])
def test_user_admin_endpoints_refuse_non_admins(auth, client, method, body):
    """A plain user cannot patch or delete anyone, itself included."""
    user = auth.signup()
    response = client.open(
        f"/users/{user['id']}", method=method, json=body, headers=bearer(user["accessToken"])
    )
    assert response.status_code == 403


@pytest.mark.parametrize("change", [{"role": "user"}, {"disabled": True}, None])
def test_last_admin_cannot_be_demoted_disabled_or_deleted(auth, client, change):
    """The only active admin stays: 409 last_admin."""
    admin = auth.admin()
    headers = bearer(admin["accessToken"])
    if change is None:
        response = client.delete(f"/users/{admin['id']}", headers=headers)
    else:
        response = client.patch(f"/users/{admin['id']}", json=change, headers=headers)
    assert response.status_code == 409 and response.json["code"] == "last_admin"
    assert client.get("/users", headers=headers).status_code == 200


def test_a_disabled_admin_does_not_count(auth, client):
    """With the other admin disabled, the active one is still the last."""
    auth.create_user("dormant@example.com", role="admin", disabled=True)
    admin = auth.admin()
    response = client.patch(
        f"/users/{admin['id']}", json={"role": "user"}, headers=bearer(admin["accessToken"])
    )
    assert response.status_code == 409


def test_admin_deletes_a_user(auth, client, app):
    """DELETE /users/<id> removes the user and refuses their tokens."""
    user = auth.signup()
    headers = bearer(auth.admin()["accessToken"])
    assert client.delete(f"/users/{user['id']}", headers=headers).status_code == 204
    assert client.get("/users/me", headers=bearer(user["accessToken"])).status_code == 401
    assert client.delete(f"/users/{user['id']}", headers=headers).status_code == 404


def test_two_admins_demoting_each_other_at_once_leave_one(auth, client, app):
    """The last-admin rule holds under a race: exactly one demotion wins."""
    first, second = auth.admin("a1@example.com"), auth.admin("a2@example.com")
    barrier, statuses = threading.Barrier(2), []

    def demote(actor, target):
        barrier.wait()
        response = client.patch(
            f"/users/{target['id']}", json={"role": "user"}, headers=bearer(actor["accessToken"])
        )
        statuses.append(response.status_code)

    threads = [
        threading.Thread(target=demote, args=pair) for pair in ((first, second), (second, first))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with app.app_context():
        admins = db.session.scalar(sa.select(sa.func.count()).where(User.role == "admin"))
    assert admins == 1
    assert sorted(statuses) in ([200, 403], [200, 409])
