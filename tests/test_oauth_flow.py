"""The round trip of a sign-in with a provider: authorize, the callback, the one-time code.

The provider is tests/standins.py's HostileProvider on loopback, behaving
well here; test_oauth_idtokens.py makes it misbehave.
"""

import hashlib
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import sqlalchemy as sa
from conftest import bearer, empty_database
from oauthhelp import (
    APP_URL,
    PUBLIC_URL,
    app_answer,
    authorize_query,
    callback_path,
    exchange,
    fixtures,
    pkce,
    provider_settings,
    provider_url,
    round_trip,
    sign_in,
)
from standins import CLIENT_ID

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import AuthEvent, OAuthFlow, Session, User, utcnow
from authsvc.oauthflows import s256

hostile, github, app = fixtures()
AT_ONCE = 50


def query_of(url):
    """Return a URL's query as a dict of single values."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_first_sign_in_makes_a_verified_account_without_a_password(client):
    """A new identity with a verified email from a trusted provider is a new, verified account."""
    response = sign_in(client)
    assert response.status_code == 200, response.json
    assert response.json["isNewUser"] is True and response.json["email"] == "ada@example.com"
    claims = jwt.decode(response.json["accessToken"], options={"verify_signature": False})
    assert claims["amr"] == ["oauth"] and claims["fresh"] is not False
    me = client.get("/users/me", headers=bearer(response.json["accessToken"])).json
    assert (me["emailVerified"], me["hasPassword"]) == (True, False)
    again = sign_in(client)
    assert (again.json["id"], again.json["isNewUser"]) == (response.json["id"], False)


def test_authorize_sends_the_browser_to_the_provider_with_state_nonce_and_pkce(client, hostile):
    """302 to the provider's authorization endpoint with every parameter of the flow."""
    _, challenge = pkce()
    response = client.get("/auth/oauth/corp/authorize", query_string=authorize_query(challenge))
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{hostile.url}/authorize?")
    query = query_of(location)
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert query["redirect_uri"] == f"{PUBLIC_URL}/auth/oauth/corp/callback"
    assert query["scope"] == "openid email profile" and query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43
    assert query["code_challenge"] != challenge  # authsvc's own PKCE towards the provider


def test_the_flow_row_keeps_only_digests(app, client):
    """Neither the state nor the nonce is stored, only their digests."""
    query = query_of(provider_url(client, pkce()[1]))
    with app.app_context():
        flow = db.session.scalars(sa.select(OAuthFlow)).one()
    stored = " ".join(str(value) for value in flow.__dict__.values())
    assert query["state"] not in stored and query["nonce"] not in stored
    assert flow.state_digest == hashlib.sha256(query["state"].encode()).hexdigest()


def test_the_provider_gets_the_verifier_of_the_challenge_it_was_sent(client, hostile):
    """At the code exchange authsvc sends the verifier whose S256 it sent at authorize."""
    url = provider_url(client, pkce()[1])
    client.get(callback_path(url))
    (_, _, _, form) = next(r for r in hostile.requests if r[1] == "/token")
    assert s256(form["code_verifier"]) == query_of(url)["code_challenge"]
    assert form["code"] == "provider-code" and form["grant_type"] == "authorization_code"


def test_authorize_answers_json_to_a_client_that_asks(client, hostile):
    """With Accept: application/json authorize answers 200 {url} instead of a redirect."""
    assert provider_url(client, pkce()[1]).startswith(f"{hostile.url}/authorize?")


@pytest.mark.parametrize(
    "redirect_to",
    [
        "https://evil.example.com/signed-in",
        "http://127.0.0.1:5173/signed-in/../admin",
        "http://127.0.0.1:5173/signed-inx",
        "http://127.0.0.1:5173/signed-in#x",
        "//127.0.0.1:5173/signed-in",
        "http://127.0.0.1:5174/signed-in",
    ],
)
def test_authorize_refuses_a_redirect_that_is_not_listed(app, client, redirect_to):
    """Anything but a URL of OAUTH_REDIRECT_URLS is 400 invalid_redirect, and no flow opens."""
    query = authorize_query(pkce()[1], redirect_to=redirect_to)
    response = client.get("/auth/oauth/corp/authorize", query_string=query)
    assert (response.status_code, response.json["code"]) == (400, "invalid_redirect")
    with app.app_context():
        assert db.session.scalars(sa.select(OAuthFlow)).all() == []


def test_the_apps_query_is_kept_and_its_code_replaced(client):
    """redirectTo's own query survives; a code or error of the app's own is not passed on."""
    url = provider_url(client, pkce()[1], redirect_to=f"{APP_URL}?next=%2Fhome&code=forged")
    location = client.get(callback_path(url)).headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["next"] == ["/home"] and len(query["code"]) == 1
    assert query["code"] != ["forged"]


@pytest.mark.parametrize(
    "changes",
    [
        {"codeChallengeMethod": "plain"},
        {"codeChallengeMethod": None},
        {"codeChallenge": None},
        {"codeChallenge": "too-short"},
        {"codeChallenge": "!" * 43},
        {"redirectTo": None},
    ],
)
def test_authorize_validates_the_apps_pkce_and_redirect(client, changes):
    """Only S256 with a well-formed challenge, and a redirectTo: anything else is 422."""
    query = {k: v for k, v in {**authorize_query(pkce()[1]), **changes}.items() if v}
    response = client.get("/auth/oauth/corp/authorize", query_string=query)
    assert (response.status_code, response.json["code"]) == (422, "validation_error")


@pytest.mark.parametrize("path", ["authorize", "callback"])
def test_an_unknown_provider_is_404(client, path):
    """A provider that is not enabled is 404, before anything else is read."""
    response = client.get(f"/auth/oauth/gitlab/{path}")
    assert (response.status_code, response.json["code"]) == (404, "not_found")


def bad_state_page(response):
    """Tell whether a callback answered with the bad-state page and went nowhere."""
    return (
        response.status_code == 400
        and response.mimetype == "text/html"
        and "Location" not in response.headers
        and b"did not work" in response.data
    )


@pytest.mark.parametrize("query", ["", "?state=unknown&code=x", "?code=x", "?state=&code=x"])
def test_a_callback_without_a_live_state_is_a_page_not_a_redirect(client, query):
    """An unknown or missing state is 400 with a small page, and no redirect anywhere."""
    assert bad_state_page(client.get(f"/auth/oauth/corp/callback{query}"))


def test_a_replayed_state_is_refused(client):
    """The state works once: the same callback again is the bad-state page."""
    callback = callback_path(provider_url(client, pkce()[1]))
    assert "code" in app_answer(client.get(callback))
    assert bad_state_page(client.get(callback))


def test_an_expired_flow_is_refused(app, client):
    """A callback more than ten minutes after authorize is the bad-state page."""
    callback = callback_path(provider_url(client, pkce()[1]))
    with app.app_context():
        db.session.execute(sa.update(OAuthFlow).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert bad_state_page(client.get(callback))


def test_a_state_is_good_only_at_its_own_providers_callback(client):
    """A state made for one provider is unknown at another provider's callback."""
    callback = callback_path(provider_url(client, pkce()[1]))
    assert bad_state_page(client.get(callback.replace("/corp/", "/github/")))


def test_a_code_works_once(client):
    """A code exchanged once is invalid_grant the second time."""
    answer, verifier = round_trip(client)
    assert exchange(client, answer["code"], verifier).status_code == 200
    again = exchange(client, answer["code"], verifier)
    assert (again.status_code, again.json["code"]) == (400, "invalid_grant")


def fifty_at_once(send):
    """Call send() from fifty threads released by one barrier; count the answers."""
    barrier = threading.Barrier(AT_ONCE)

    def released(_):
        """Wait for the others, then send."""
        barrier.wait(timeout=30)
        return send()

    with ThreadPoolExecutor(AT_ONCE) as pool:
        return Counter(pool.map(released, range(AT_ONCE), timeout=120))


def test_a_state_sent_fifty_times_at_once_makes_one_code(app, client):
    """Fifty callbacks of one flow at once: one redirects with a code, the rest get the page."""
    callback = callback_path(provider_url(client, pkce()[1]))
    statuses = fifty_at_once(lambda: app.test_client().get(callback).status_code)
    assert statuses == {302: 1, 400: AT_ONCE - 1}


def test_a_code_sent_fifty_times_at_once_signs_in_once(app, client):
    """Fifty exchanges of one code and its verifier at once: one session, the rest invalid_grant."""
    answer, verifier = round_trip(client)

    def send():
        """Exchange the code; return the status and problem code."""
        response = exchange(app.test_client(), answer["code"], verifier)
        return response.status_code, response.json.get("code")

    assert fifty_at_once(send) == {(200, None): 1, (400, "invalid_grant"): AT_ONCE - 1}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Session)) == 1


def test_a_code_is_useless_without_its_verifier_and_is_used_up(client):
    """Login CSRF: a code from someone else's flow, without its verifier, is dead."""
    answer, verifier = round_trip(client)
    wrong = exchange(client, answer["code"], pkce()[0])
    assert (wrong.status_code, wrong.json["code"]) == (400, "invalid_grant")
    right = exchange(client, answer["code"], verifier)
    assert (right.status_code, right.json["code"]) == (400, "invalid_grant")


def test_an_expired_code_is_refused(app, client):
    """A code lives 60 seconds."""
    answer, verifier = round_trip(client)
    with app.app_context():
        expired = utcnow() - timedelta(seconds=1)
        db.session.execute(sa.update(OAuthFlow).values(code_expires_at=expired))
        db.session.commit()
    assert exchange(client, answer["code"], verifier).json["code"] == "invalid_grant"


def test_every_bad_code_gets_the_same_answer(client):
    """Unknown, used, or with a wrong verifier: the same 400 body."""
    answer, verifier = round_trip(client)
    unknown = exchange(client, "no-such-code", verifier).json
    wrong = exchange(client, answer["code"], pkce()[0]).json
    used = exchange(client, answer["code"], verifier).json
    assert unknown == wrong == used and unknown["status"] == 400


def test_a_decline_at_the_provider_comes_back_as_access_denied(app, client, hostile):
    """error=access_denied from the provider reaches the app as such; nobody is made."""
    hostile.error = "access_denied"
    answer, _ = round_trip(client)
    assert answer == {"error": "access_denied"}
    with app.app_context():
        assert db.session.scalars(sa.select(User)).all() == []


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [("/token", 503, "provider_unavailable"), ("/token", 400, "provider_error")],
)
def test_a_failing_token_endpoint_is_an_error_for_the_app(client, hostile, path, status, error):
    """A 5xx is provider_unavailable, a refusal provider_error: a redirect, never a 500."""
    hostile.statuses[path] = status
    answer, _ = round_trip(client)
    assert answer == {"error": error}


def test_a_provider_error_is_passed_on_as_provider_error(client, hostile):
    """Any error the provider sends but access_denied reaches the app as provider_error."""
    hostile.error = "server_error"
    assert round_trip(client)[0] == {"error": "provider_error"}


def test_sign_ins_and_refusals_are_audited(app, client, hostile):
    """The trail holds the new account, the sign-in and a refusal, with the user where known."""
    sign_in(client)
    exchange(client, "no-such-code", pkce()[0])
    with app.app_context():
        events = db.session.scalars(sa.select(AuthEvent.event).order_by(AuthEvent.id)).all()
    assert events == ["signup_oauth", "signin_oauth", "oauth_invalid_grant"]


def test_rate_limit_counts_authorize_and_token_per_address(database_url, hostile):
    """RATELIMIT_OAUTH_PER_ADDRESS: authorize and the exchange share one bucket per address."""
    limited = create_app(
        provider_settings(
            database_url,
            hostile.url,
            RATELIMIT_ENABLED=True,
            RATELIMIT_OAUTH_PER_ADDRESS="2/minute",
        )
    )
    client, query = limited.test_client(), authorize_query(pkce()[1])
    assert client.get("/auth/oauth/corp/authorize", query_string=query).status_code == 302
    assert exchange(client, "code", pkce()[0]).status_code == 400
    refused = client.get("/auth/oauth/corp/authorize", query_string=query)
    assert (refused.status_code, refused.json["code"]) == (429, "rate_limited")
    empty_database(limited)
