"""The caller's sessions: list them, end one, end them all."""

import jwt
import pytest
from conftest import bearer


def sid_of(tokens):
    """Return the session id a token pair belongs to."""
    return jwt.decode(tokens["accessToken"], options={"verify_signature": False})["sid"]


def test_list_sessions_shows_open_ones_and_marks_current(auth, client):
    """Each open session appears once with its fields; the caller's is current."""
    laptop, phone = auth.signup(), auth.signin()
    response = client.get("/auth/sessions", headers=bearer(phone["accessToken"]))
    assert response.status_code == 200
    by_id = {session["id"]: session for session in response.json}
    assert set(by_id) == {sid_of(laptop), sid_of(phone)}
    assert by_id[sid_of(phone)]["current"] is True and by_id[sid_of(laptop)]["current"] is False
    assert set(by_id[sid_of(phone)]) == {
        "id",
        "createdAt",
        "lastUsedAt",
        "expiresAt",
        "ip",
        "userAgent",
        "current",
    }


def test_list_sessions_records_address_and_agent(auth, client):
    """A session remembers the address and user agent it was opened from."""
    response = client.post(
        "/auth/signup",
        json={"email": "ua@example.com", "password": "violet-kettle-orbit-42"},
        headers={"User-Agent": "curl/8.0\x01"},
    )
    (session,) = client.get("/auth/sessions", headers=bearer(response.json["accessToken"])).json
    assert session["ip"] == "127.0.0.1" and session["userAgent"] == "curl/8.0"


def test_list_sessions_leaves_out_closed_ones(auth, client):
    """A signed-out session is not listed."""
    first, second = auth.signup(), auth.signin()
    client.post("/auth/signout", headers=bearer(first["accessToken"]))
    listed = client.get("/auth/sessions", headers=bearer(second["accessToken"])).json
    assert [session["id"] for session in listed] == [sid_of(second)]


def test_list_sessions_shows_only_the_callers(auth, client):
    """Another user's sessions never appear."""
    mine = auth.signup()
    auth.signup("other@example.com")
    listed = client.get("/auth/sessions", headers=bearer(mine["accessToken"])).json
    assert [session["id"] for session in listed] == [sid_of(mine)]


def test_end_one_session_refuses_its_tokens_at_once(auth, client):
    """Ending a session from another device closes it; the caller's stays open."""
    lost_phone, laptop = auth.signup(), auth.signin()
    response = client.delete(
        f"/auth/sessions/{sid_of(lost_phone)}", headers=bearer(laptop["accessToken"])
    )
    assert response.status_code == 204 and response.data == b""
    assert client.get("/users/me", headers=bearer(lost_phone["accessToken"])).status_code == 401
    assert (
        client.post("/auth/refresh", headers=bearer(lost_phone["refreshToken"])).status_code == 401
    )
    assert client.get("/users/me", headers=bearer(laptop["accessToken"])).status_code == 200


@pytest.mark.parametrize("target", ["someone-elses", "unknown", "closed", "garbage"])
def test_end_session_that_is_not_yours_is_404(auth, client, target):
    """Someone else's session, an unknown id or a closed one is 404, and nothing changes."""
    mine, theirs = auth.signup(), auth.signup("other@example.com")
    closed = auth.signin()
    client.post("/auth/signout", headers=bearer(closed["accessToken"]))
    session_id = {
        "someone-elses": sid_of(theirs),
        "unknown": "AAAAAAAAAAAAAAAAAAAAAA",
        "closed": sid_of(closed),
        "garbage": "%00%27;DROP",
    }[target]
    response = client.delete(f"/auth/sessions/{session_id}", headers=bearer(mine["accessToken"]))
    assert response.status_code == 404 and response.json["code"] == "not_found"
    assert client.get("/users/me", headers=bearer(theirs["accessToken"])).status_code == 200


def test_end_all_sessions_includes_this_one(auth, client):
    """Signing out everywhere closes every session of the caller and no one else's."""
    first, second = auth.signup(), auth.signin()
    other = auth.signup("other@example.com")
    response = client.delete("/auth/sessions", headers=bearer(second["accessToken"]))
    assert response.status_code == 204
    for tokens in (first, second):
        assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 401
    assert client.get("/users/me", headers=bearer(other["accessToken"])).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/auth/sessions"), ("DELETE", "/auth/sessions"), ("DELETE", "/auth/sessions/abc")],
)
def test_session_endpoints_need_an_access_token(auth, client, method, path):
    """Without a token, or with a refresh token, session endpoints are 401."""
    tokens = auth.signup()
    assert client.open(path, method=method).status_code == 401
    assert (
        client.open(path, method=method, headers=bearer(tokens["refreshToken"])).status_code == 401
    )
