"""POST /oauth/introspect (RFC 7662): what a registered service learns about a token, and when."""

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import PASSWORD, bearer, settings
from introspecting import answer, claims_of, introspect, register, resigned

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import Session, User, utcnow

INACTIVE = {"active": False}
OTHER_KEY = "another-signing-key-that-is-long-enough-for-hs256"


@pytest.fixture
def service(app):
    """Register a service that may introspect; return its id and secret."""
    return register(app)


def test_live_access_token_is_active_with_its_claims(auth, client, service):
    """An access token of an open session: active, with exactly the claims the contract lists."""
    tokens = auth.signup()
    claims = claims_of(tokens["accessToken"])
    assert answer(client, service, tokens["accessToken"]) == {
        "active": True,
        "sub": str(tokens["id"]),
        "sid": claims["sid"],
        "exp": claims["exp"],
        "iat": claims["iat"],
        "amr": ["pwd"],
        "token_type": "access_token",
    }


@pytest.fixture
def issuing_client(database_url):
    """Return a client of an app with JWT_ISSUER and JWT_AUDIENCE set."""
    issuer = "https://auth.test"
    config = {"JWT_ENCODE_ISSUER": issuer, "JWT_DECODE_ISSUER": issuer, "JWT_AUDIENCE": "api"}
    return create_app(settings(database_url, **config)).test_client()


def signed_up(client, email="user@example.com"):
    """Sign up through a client and return the token pair."""
    response = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.json
    return response.json


def test_issuer_and_audience_are_in_the_answer_when_set(issuing_client, service):
    """With JWT_ISSUER and JWT_AUDIENCE, the answer carries iss and aud."""
    said = answer(issuing_client, service, signed_up(issuing_client)["accessToken"])
    assert (said["active"], said["iss"], said["aud"]) == (True, "https://auth.test", "api")


@pytest.mark.parametrize(
    "changes",
    [{"iss": "https://elsewhere.test"}, {"iss": None}, {"aud": "other"}, {"aud": None}],
    ids=["other-iss", "no-iss", "other-aud", "no-aud"],
)
def test_wrong_or_missing_issuer_or_audience_is_inactive(issuing_client, service, changes):
    """Where authsvc sets iss and aud, a token without the same values is inactive."""
    token = resigned(signed_up(issuing_client)["accessToken"], **changes)
    assert answer(issuing_client, service, token) == INACTIVE


def expired(tokens):
    """Return the access token expired a minute ago, validly signed."""
    return resigned(tokens["accessToken"], exp=int(time.time()) - 60)


# Every token that is not a live access token of an open session, from a signed-up user's pair.
NOT_LIVE = {
    "refresh-token": lambda tokens: tokens["refreshToken"],
    "expired": expired,
    "other-key": lambda tokens: resigned(tokens["accessToken"], key=OTHER_KEY),
    "alg-none": lambda tokens: resigned(tokens["accessToken"], key=None, algorithm="none"),
    "typ-jwt": lambda tokens: resigned(tokens["accessToken"], headers={"typ": "JWT"}),
    "no-typ": lambda tokens: resigned(tokens["accessToken"], headers={"typ": None}),
    "type-refresh": lambda tokens: resigned(tokens["accessToken"], type="refresh"),
    "type-id": lambda tokens: resigned(tokens["accessToken"], type="id"),
    "unknown-session": lambda tokens: resigned(tokens["accessToken"], sid="no-such-session"),
    "other-user": lambda tokens: resigned(tokens["accessToken"], sub="999"),
    "sub-not-a-string": lambda tokens: resigned(tokens["accessToken"], sub=tokens["id"]),
    "no-sid": lambda tokens: resigned(tokens["accessToken"], sid=None),
    "malformed": lambda tokens: "not-a-jwt",
    "three-bad-parts": lambda tokens: "a.b.c",
    "truncated": lambda tokens: tokens["accessToken"][:-5],
    "refresh-as-access-header": lambda tokens: resigned(
        tokens["refreshToken"], headers={"typ": "at+jwt"}
    ),
}


@pytest.mark.parametrize("build", NOT_LIVE.values(), ids=NOT_LIVE.keys())
def test_anything_but_a_live_access_token_is_only_inactive(auth, client, service, build):
    """Refresh, expired, foreign, forged and malformed tokens: {active: false}, nothing else."""
    assert answer(client, service, build(auth.signup())) == INACTIVE


def test_session_past_its_max_age_is_inactive(auth, app, client, service):
    """A session that outlived SESSION_MAX_AGE makes its access tokens inactive at once."""
    tokens = auth.signup()
    with app.app_context():
        db.session.execute(sa.update(Session).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert answer(client, service, tokens["accessToken"]) == INACTIVE


def test_disabled_user_is_inactive_even_with_an_open_session(auth, app, client, service):
    """A user marked disabled in the database is inactive, whatever their sessions say."""
    tokens = auth.signup()
    with app.app_context():
        db.session.execute(sa.update(User).values(disabled=True))
        db.session.commit()
    assert answer(client, service, tokens["accessToken"]) == INACTIVE


def test_token_type_hint_and_other_parameters_are_ignored(auth, client, service):
    """A wrong token_type_hint or an unknown parameter changes nothing (RFC 7662)."""
    tokens = auth.signup()
    hinted = introspect(
        client, service, tokens["accessToken"], token_type_hint="refresh_token", scope="x"
    )
    assert hinted.status_code == 200 and hinted.json["active"] is True
    hinted = introspect(client, service, tokens["refreshToken"], token_type_hint="access_token")
    assert hinted.json == INACTIVE


def statements_of(app, call):
    """Run `call` and return the SQL statements it sent to the app's database."""
    statements = []

    def record(connection, cursor, statement, *rest):
        """Remember a statement sent to the database."""
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return statements


def test_a_live_token_costs_one_query_as_users_me_does(auth, app, client, service):
    """The client's digest is read in the revocation check's own query: one statement in all."""
    tokens = auth.signup()
    (statement,) = statements_of(app, lambda: answer(client, service, tokens["accessToken"]))
    assert "FROM sessions JOIN users" in statement and "FROM clients" in statement
    me = statements_of(app, lambda: client.get("/users/me", headers=bearer(tokens["accessToken"])))
    assert len(me) == 1


def active(client, service, tokens):
    """Tell whether the service hears that the pair's access token is active."""
    return answer(client, service, tokens["accessToken"])["active"]


def test_signout_makes_the_token_inactive_at_once(auth, client, service):
    """The very next introspection after a signout says inactive; the other session lives on."""
    tokens, other = auth.signup(), auth.signin()
    assert active(client, service, tokens)
    assert client.post("/auth/signout", headers=bearer(tokens["accessToken"])).status_code == 204
    assert not active(client, service, tokens)
    assert active(client, service, other)


def test_refresh_reuse_makes_the_newest_token_inactive_at_once(auth, database_url, service):
    """A rotated refresh token presented again closes the session: its newest token goes too."""
    client = create_app(settings(database_url, REFRESH_REUSE_GRACE=0)).test_client()
    tokens = auth.signup()
    rotated = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    assert active(client, service, rotated)
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 401
    assert not active(client, service, rotated)


def test_password_change_makes_earlier_tokens_inactive_at_once(auth, client, service):
    """A password change ends every earlier session; only the new session's token is active."""
    tokens = auth.signup()
    changed = client.post(
        "/users/me/password",
        json={"currentPassword": PASSWORD, "newPassword": "marble-lantern-quiet-77"},
        headers=bearer(tokens["accessToken"]),
    )
    assert changed.status_code == 200
    assert not active(client, service, tokens)
    assert active(client, service, changed.json)


def test_admin_disabling_the_user_makes_the_token_inactive_at_once(auth, client, service):
    """An admin disabling a user: that user's tokens are inactive on the next question."""
    tokens, admin = auth.signup(), auth.admin()
    assert active(client, service, tokens)
    disabled = client.patch(
        f"/users/{tokens['id']}", json={"disabled": True}, headers=bearer(admin["accessToken"])
    )
    assert disabled.status_code == 200
    assert not active(client, service, tokens)


def test_deleting_the_user_makes_the_token_inactive_at_once(auth, client, service):
    """A deleted account's tokens are inactive, not an error."""
    tokens = auth.signup()
    assert client.delete("/users/me", headers=bearer(tokens["accessToken"])).status_code == 204
    assert answer(client, service, tokens["accessToken"]) == INACTIVE
