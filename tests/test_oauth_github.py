"""The GitHub preset, against a stand-in of GitHub's documented endpoints on loopback.

GitHub cannot be reached from the machines these tests run on, so
tests/standins.py's GitHubStandIn serves what GitHub documents for OAuth
apps (/login/oauth/authorize, /login/oauth/access_token) and its REST API
(/user, /user/emails) under /api/v3, where GitHub Enterprise Server serves
it; authsvc is pointed at it through OAUTH_GITHUB_URL. That api.github.com
serves github.com is checked on its own, without the network.
"""

import pytest
import sqlalchemy as sa
from oauthhelp import fixtures, round_trip, sign_in
from standins import CLIENT_SECRET

from authsvc.extensions import db
from authsvc.models import Identity, User
from authsvc.providers import _github_api

hostile, github, app = fixtures()


def test_github_signs_in_with_its_numeric_id_and_primary_address(app, client, github):
    """The subject is /user's id; the email is the primary address of /user/emails."""
    response = sign_in(client, "github")
    assert response.status_code == 200, response.json
    assert (response.json["email"], response.json["isNewUser"]) == ("octo@example.com", True)
    with app.app_context():
        identity = db.session.scalars(sa.select(Identity)).one()
        user = db.session.get(User, identity.user_id)
        assert (identity.provider, identity.subject) == ("github", "4242")
        assert user.email_verified is True


def test_github_is_reached_where_its_documents_say(client, github):
    """authorize and access_token on the web address, the API under /api/v3, secrets in the form."""
    sign_in(client, "github")
    paths = [request[1] for request in github.requests]
    assert paths == [
        "/login/oauth/authorize",
        "/login/oauth/access_token",
        "/api/v3/user",
        "/api/v3/user/emails",
    ]
    form = github.requests[1][3]
    assert form["client_secret"] == CLIENT_SECRET and len(form["code_verifier"]) == 43
    assert "nonce" not in github.requests[0][2]


def test_the_primary_addresses_own_flag_decides(app, client, github):
    """An unverified primary address is unverified, even when another address is verified."""
    github.emails = [
        {"email": "other@example.com", "primary": False, "verified": True},
        {"email": "octo@example.com", "primary": True, "verified": False},
    ]
    assert sign_in(client, "github").status_code == 200
    with app.app_context():
        user = db.session.scalars(sa.select(User)).one()
        assert (user.email, user.email_verified) == ("octo@example.com", False)


def test_an_unverified_primary_address_does_not_link_to_an_account(app, client, github, auth):
    """The same address on an existing account: account_exists, as rule 2 says."""
    auth.create_user("octo@example.com")
    github.emails = [{"email": "octo@example.com", "primary": True, "verified": False}]
    assert round_trip(client, "github")[0] == {"error": "account_exists"}


@pytest.mark.parametrize(
    "emails", [[], [{"email": "octo@example.com", "primary": False, "verified": True}]]
)
def test_no_primary_address_is_email_missing(client, github, emails):
    """No primary address in /user/emails: error=email_missing."""
    github.emails = emails
    assert round_trip(client, "github")[0] == {"error": "email_missing"}


@pytest.mark.parametrize("user", [{"login": "octocat"}, {"id": "4242"}, {"id": True}])
def test_a_user_without_a_numeric_id_is_a_provider_error(client, github, user):
    """/user must give a numeric id: anything else is provider_error."""
    github.user = user
    assert round_trip(client, "github")[0] == {"error": "provider_error"}


def test_a_refused_code_is_a_provider_error(client, github):
    """GitHub answers 200 {error: bad_verification_code} for a bad code: provider_error."""
    github.access_token_endpoint = lambda query, form, headers: (
        200,
        {"error": "bad_verification_code"},
        None,
    )
    assert round_trip(client, "github")[0] == {"error": "provider_error"}


def test_an_api_outage_is_provider_unavailable(client, github):
    """A 502 from the API: provider_unavailable."""
    github.statuses["/api/v3/user"] = 502
    assert round_trip(client, "github")[0] == {"error": "provider_unavailable"}


@pytest.mark.parametrize(
    ("web", "api"),
    [
        ("https://github.com", "https://api.github.com"),
        ("https://github.example.com", "https://github.example.com/api/v3"),
    ],
)
def test_the_api_of_github_and_of_github_enterprise(web, api):
    """github.com's API is api.github.com; GitHub Enterprise Server's is <url>/api/v3."""
    assert _github_api(web) == api
