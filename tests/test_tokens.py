"""Tokens and sessions: claims, rotation, reuse, retries and refusals."""

import threading
import time
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from conftest import PASSWORD, TEST_SECRET, bearer, settings

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import Session, User, utcnow
from authsvc.tokens import encode_refresh_token, refresh_digest


def claims_of(token):
    """Return a token's claims without checking its signature."""
    return jwt.decode(token, options={"verify_signature": False})


def forge(claims, key=TEST_SECRET, algorithm="HS256", headers=None):
    """Sign arbitrary claims, with the service's key unless told otherwise."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def valid_claims(tokens, **changes):
    """Return the claims of a real access token, changed as asked."""
    claims = {**claims_of(tokens["accessToken"]), **changes}
    return {key: value for key, value in claims.items() if value is not None}


def session_of(app, token):
    """Return the session row a token names."""
    with app.app_context():
        return db.session.get(Session, claims_of(token)["sid"])


def test_access_token_carries_the_contract_claims(auth):
    """An access token has sub (a string), email, role, sid, jti, type, iat, nbf, exp."""
    tokens = auth.signup()
    claims = claims_of(tokens["accessToken"])
    assert {"sub", "email", "role", "sid", "jti", "type", "iat", "nbf", "exp"} <= set(claims)
    assert claims["sub"] == str(tokens["id"]) and claims["type"] == "access"
    assert claims["email"] == "user@example.com" and claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 900


def test_refresh_token_carries_the_contract_claims(auth):
    """A refresh token has sub, sid, jti, type, iat and exp, and lives 7 days."""
    tokens = auth.signup()
    claims = claims_of(tokens["refreshToken"])
    assert {"sub", "sid", "jti", "type", "iat", "exp"} <= set(claims)
    assert claims["type"] == "refresh" and claims["sub"] == str(tokens["id"])
    assert claims["exp"] - claims["iat"] == 604800
    assert claims["sid"] == claims_of(tokens["accessToken"])["sid"]


def test_refresh_token_can_be_encoded_again_identically(auth, app):
    """A refresh token is a pure function of what its session stores."""
    tokens = auth.signup()
    session = session_of(app, tokens["refreshToken"])
    with app.test_request_context():
        again = encode_refresh_token(
            session.user_id,
            session.id,
            session.refresh_jti,
            session.refresh_iat,
            session.refresh_exp,
        )
    assert again == tokens["refreshToken"]
    assert refresh_digest(again) == session.refresh_digest


def test_refresh_rotates_the_token(auth, client, app):
    """Refresh returns a new pair and stores the new token's digest."""
    tokens = auth.signup()
    response = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"]))
    assert response.status_code == 200
    assert set(response.json) == {"accessToken", "refreshToken"}
    new = response.json["refreshToken"]
    assert new != tokens["refreshToken"]
    assert session_of(app, new).refresh_digest == refresh_digest(new)
    assert client.get("/users/me", headers=bearer(response.json["accessToken"])).status_code == 200


def test_refreshed_access_token_is_not_fresh(auth, client):
    """Only signin and signup give fresh access tokens."""
    tokens = auth.signup()
    assert claims_of(tokens["accessToken"])["fresh"] > time.time()
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    assert claims_of(refreshed["accessToken"])["fresh"] is False


@pytest.fixture
def no_grace_client(database_url):
    """Return a client of an app with the retry window off."""
    return create_app(settings(database_url, REFRESH_REUSE_GRACE=0)).test_client()


def test_reused_refresh_token_revokes_the_whole_session(auth, no_grace_client):
    """A rotated refresh token presented again closes its session: theft."""
    tokens = auth.signup()
    rotated = no_grace_client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    reuse = no_grace_client.post("/auth/refresh", headers=bearer(tokens["refreshToken"]))
    assert reuse.status_code == 401 and reuse.json["code"] == "token_revoked"
    newest = no_grace_client.post("/auth/refresh", headers=bearer(rotated["refreshToken"]))
    assert newest.status_code == 401
    me = no_grace_client.get("/users/me", headers=bearer(rotated["accessToken"]))
    assert me.status_code == 401


def test_retry_within_grace_gets_the_same_new_token(auth, client):
    """The same refresh token again within the window gets the very same new token."""
    tokens = auth.signup()
    first = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"]))
    retry = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"]))
    assert first.status_code == retry.status_code == 200
    assert retry.json["refreshToken"] == first.json["refreshToken"]
    assert (
        client.post("/auth/refresh", headers=bearer(first.json["refreshToken"])).status_code == 200
    )


def age_rotation(app, token, seconds):
    """Pretend the session's last rotation happened `seconds` ago."""
    with app.app_context():
        db.session.execute(
            sa.update(Session)
            .where(Session.id == claims_of(token)["sid"])
            .values(rotated_at=utcnow() - timedelta(seconds=seconds))
        )
        db.session.commit()


def test_retry_after_grace_is_reuse(auth, client, app):
    """After the window, only the newest refresh token works; the old one is theft."""
    tokens = auth.signup()
    newest = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    age_rotation(app, tokens["refreshToken"], 11)
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 401
    assert client.post("/auth/refresh", headers=bearer(newest["refreshToken"])).status_code == 401


def test_token_two_rotations_old_is_reuse_even_within_grace(auth, client):
    """Only the token rotated last is a retry; an older one is reuse."""
    first = auth.signup()["refreshToken"]
    second = client.post("/auth/refresh", headers=bearer(first)).json["refreshToken"]
    third = client.post("/auth/refresh", headers=bearer(second)).json["refreshToken"]
    assert client.post("/auth/refresh", headers=bearer(first)).status_code == 401
    assert client.post("/auth/refresh", headers=bearer(third)).status_code == 401


def test_reencoded_refresh_token_is_reuse(auth, client):
    """The current token with '=' appended verifies but is not the stored one."""
    tokens = auth.signup()
    response = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"] + "="))
    assert response.status_code == 401 and response.json["code"] == "token_revoked"
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 401


def test_access_token_at_refresh_is_refused_without_touching_the_session(auth, client, app):
    """An access token cannot refresh, and its session is left exactly as it was."""
    tokens = auth.signup()
    before = session_of(app, tokens["accessToken"])
    response = client.post("/auth/refresh", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 401 and response.json["code"] == "invalid_token"
    after = session_of(app, tokens["accessToken"])
    assert (after.revoked_at, after.refresh_digest) == (None, before.refresh_digest)


def test_refresh_token_is_refused_where_access_is_expected(auth, client):
    """A refresh token does not open /users/me."""
    tokens = auth.signup()
    response = client.get("/users/me", headers=bearer(tokens["refreshToken"]))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_token_in_query_string_is_ignored(auth, client):
    """Tokens are read from the Authorization header only."""
    tokens = auth.signup()
    response = client.get(f"/users/me?jwt={tokens['accessToken']}")
    assert response.status_code == 401 and response.json["code"] == "missing_token"


def test_refresh_token_never_outlives_its_session(database_url, password_hash):
    """A refresh token's exp is capped at the session's maximum age."""
    app = create_app(settings(database_url, SESSION_MAX_AGE=3600))
    client = app.test_client()
    body = client.post(
        "/auth/signup", json={"email": "u@example.com", "password": "violet-kettle-orbit-42"}
    ).json
    claims = claims_of(body["refreshToken"])
    assert claims["exp"] - claims["iat"] == 3600
    client.post("/auth/signout", headers=bearer(body["accessToken"]))


def test_session_past_its_max_age_is_refused(auth, client, app):
    """However often it was refreshed, a session ends at its max age."""
    tokens = auth.signup()
    with app.app_context():
        db.session.execute(sa.update(Session).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 401
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 401


def test_expired_access_token_is_refused(auth, client, app):
    """An expired token is 401 token_expired."""
    tokens = auth.signup()
    claims = valid_claims(tokens, exp=int(time.time()) - 60, iat=int(time.time()) - 120)
    response = client.get("/users/me", headers=bearer(forge(claims)))
    assert response.status_code == 401 and response.json["code"] == "token_expired"


def refresh_concurrently(client, token, count=20):
    """Send `count` refreshes of one token at once; return the responses."""
    barrier, results = threading.Barrier(count), [None] * count

    def worker(index):
        barrier.wait()
        response = client.post("/auth/refresh", headers=bearer(token))
        results[index] = (response.status_code, response.json)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_refreshes_rotate_once(auth, client, app):
    """Twenty refreshes of one token at once all get the same single new token."""
    tokens = auth.signup()
    results = refresh_concurrently(client, tokens["refreshToken"])
    assert [status for status, _ in results] == [200] * 20
    new_tokens = {body["refreshToken"] for _, body in results}
    assert len(new_tokens) == 1
    (new,) = new_tokens
    session = session_of(app, new)
    assert session.refresh_digest == refresh_digest(new)
    assert session.previous_digest == refresh_digest(tokens["refreshToken"])


def test_concurrent_refreshes_without_grace_let_exactly_one_through(auth, no_grace_client):
    """With the window off, one refresh wins and the rest are reuse."""
    tokens = auth.signup()
    results = refresh_concurrently(no_grace_client, tokens["refreshToken"])
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [401] * 19


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": 1},
        {"sub": "not-a-number"},
        {"sub": "99999999999999999999"},
        {"sid": None},
        {"sid": "no-such-session"},
        {"sid": 12345},
        {"sid": "bad\u0000sid"},
        {"type": "something"},
        {"type": None, "nbf": None, "role": None},
        {"jti": None},
        {"exp": None},
        {"sub": "424242"},
    ],
)
def test_malformed_token_signed_with_our_key_is_401(auth, client, changes):
    """A token we could have signed but whose claims are wrong is 401, never 4xx else or 5xx."""
    tokens = auth.signup()
    response = client.get("/users/me", headers=bearer(forge(valid_claims(tokens, **changes))))
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize("fresh", ["yes", None, [1], {"until": 1}])
def test_malformed_fresh_claim_is_401_where_a_fresh_token_is_needed(auth, client, fresh):
    """A `fresh` claim that is neither a boolean nor a time is 401, never a 500."""
    claims = {**claims_of(auth.signup()["accessToken"]), "fresh": fresh}
    response = client.delete("/users/me", headers=bearer(forge(claims)))
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"


def test_token_of_deleted_user_is_401(auth, client, app):
    """A token whose user no longer exists is refused."""
    tokens = auth.signup()
    with app.app_context():
        db.session.execute(sa.delete(User))
        db.session.commit()
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 401


def test_disabled_users_tokens_are_refused_at_once(auth, client, app):
    """Disabling a user refuses every token of theirs immediately."""
    tokens = auth.signup()
    with app.app_context():
        db.session.execute(sa.update(User).values(disabled=True))
        db.session.commit()
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 401
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer a.b.c",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer x y",
        "bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
        "Bearer \u00e9\u00e9\u00e9",
    ],
)
def test_garbage_authorization_header_is_401(client, header):
    """Whatever the Authorization header holds, a bad one is 401 with a challenge."""
    response = client.get("/users/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(auth, client, scheme):
    """RFC 9110: the auth scheme is case-insensitive."""
    tokens = auth.signup()
    response = client.get(
        "/users/me", headers={"Authorization": f"{scheme} {tokens['accessToken']}"}
    )
    assert response.status_code == 200


def test_token_signed_with_another_key_is_refused(auth, client):
    """A token with the right claims but another key's signature is refused."""
    tokens = auth.signup()
    forged = forge(valid_claims(tokens), key="another-key-of-sufficient-length-1234")
    response = client.get("/users/me", headers=bearer(forged))
    assert response.status_code == 401 and response.json["code"] == "invalid_token"


def test_alg_none_token_is_refused(auth, client):
    """An unsigned token is refused."""
    tokens = auth.signup()
    unsigned = jwt.encode(valid_claims(tokens), None, algorithm="none")
    assert client.get("/users/me", headers=bearer(unsigned)).status_code == 401


def make_current(app, token):
    """Store a refresh token's digest as its session's current one."""
    with app.app_context():
        db.session.execute(
            sa.update(Session)
            .where(Session.id == claims_of(token)["sid"])
            .values(refresh_digest=refresh_digest(token))
        )
        db.session.commit()


@pytest.mark.parametrize("path", ["/auth/refresh", "/users/me"])
def test_refresh_token_that_says_at_jwt_is_refused_everywhere(auth, client, app, path):
    """Header at+jwt with claims type refresh is refused, even as the session's current token."""
    tokens = auth.signup()
    mixed = forge(claims_of(tokens["refreshToken"]), headers={"typ": "at+jwt"})
    make_current(app, mixed)
    response = client.open(
        path, method="POST" if path == "/auth/refresh" else "GET", headers=bearer(mixed)
    )
    assert response.status_code == 401 and response.json["code"] == "invalid_token"
    assert session_of(app, mixed).revoked_at is None


@pytest.mark.parametrize("typ", [None, "JOSE", "rt+jwt", "application/jwt"])
def test_access_token_without_at_jwt_typ_is_refused(auth, client, typ):
    """Claims type access need the header typ at+jwt (or JWT, before the upgrade)."""
    tokens = auth.signup()
    mixed = forge(valid_claims(tokens), headers={"typ": typ})
    response = client.get("/users/me", headers=bearer(mixed))
    assert response.status_code == 401 and response.json["code"] == "invalid_token"


def pre_upgrade_app(database_url):
    """Return an app set up as before aud went on access tokens only: on every token."""
    return create_app(settings(database_url, JWT_ENCODE_AUDIENCE="api", JWT_DECODE_AUDIENCE="api"))


def signup_on(app):
    """Sign up on an app through the API and return the response body."""
    body = {"email": "upgrade@example.com", "password": PASSWORD}
    response = app.test_client().post("/auth/signup", json=body)
    assert response.status_code == 201, response.json
    return response.json


def test_refresh_token_from_before_the_upgrade_refreshes_into_the_new_shape(database_url, app):
    """A refresh token carrying aud still refreshes once; its successor has no aud."""
    legacy = signup_on(pre_upgrade_app(database_url))["refreshToken"]
    assert jwt.get_unverified_header(legacy)["typ"] == "JWT" and claims_of(legacy)["aud"] == "api"
    client = create_app(settings(database_url, JWT_AUDIENCE="api")).test_client()
    first = client.post("/auth/refresh", headers=bearer(legacy))
    assert first.status_code == 200 and "aud" not in claims_of(first.json["refreshToken"])
    retry = client.post("/auth/refresh", headers=bearer(legacy))
    assert retry.status_code == 200 and retry.json["refreshToken"] == first.json["refreshToken"]
    again = client.post("/auth/refresh", headers=bearer(first.json["refreshToken"]))
    assert again.status_code == 200


@pytest.mark.parametrize("audience", [None, "other"])
def test_refresh_token_from_before_the_upgrade_needs_the_same_audience(database_url, app, audience):
    """A refresh token whose aud is not the configured audience is refused, as before."""
    legacy = signup_on(pre_upgrade_app(database_url))["refreshToken"]
    client = create_app(settings(database_url, JWT_AUDIENCE=audience)).test_client()
    response = client.post("/auth/refresh", headers=bearer(legacy))
    assert response.status_code == 401 and response.json["code"] == "invalid_token"


def test_access_token_from_before_the_upgrade_works_until_it_expires(database_url, app):
    """An access token with the typ JWT header still opens authsvc's own endpoints."""
    upgraded = create_app(settings(database_url, JWT_AUDIENCE="api"))
    legacy = forge(claims_of(signup_on(upgraded)["accessToken"]))
    assert jwt.get_unverified_header(legacy)["typ"] == "JWT"
    assert upgraded.test_client().get("/users/me", headers=bearer(legacy)).status_code == 200
