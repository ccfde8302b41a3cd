"""The two HTML pages mailed links open, over HTTP: forms, tokens, headers."""

import pytest
import sqlalchemy as sa
from conftest import PASSWORD, empty_database, settings
from mailer import mails_to, token_in

from authsvc import create_app, relay
from authsvc.extensions import db
from authsvc.hooks import PAGE_POLICY
from authsvc.models import MailToken

EMAIL = "user@example.com"
NEW_PASSWORD = "marble-lantern-quiet-77"


@pytest.fixture
def app(database_url, smtp, mailbox):
    """Yield an app that mails through the test SMTP server, with a public address of its own."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url, PUBLIC_URL="https://auth.example"))
    yield app
    empty_database(app)


def mailed_token(app, mailbox, subject_word):
    """Deliver the outbox; return the token of the newest mail with a subject word."""
    with app.app_context():
        relay.send_pending()
    return token_in(mails_to(mailbox.messages, EMAIL, subject_word)[-1])


def reset_token(app, client, mailbox):
    """Sign up, ask for a reset through a hostile Host header; return the mailed token."""
    client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD})
    client.post("/auth/password-reset", json={"email": EMAIL}, headers={"Host": "evil.example"})
    with app.app_context():
        relay.send_pending()
    message = mails_to(mailbox.messages, EMAIL, "Reset")[-1]
    assert (
        "https://auth.example/reset-password?token=" in message.get_body(("plain",)).get_content()
    )
    return token_in(message)


def unused(app):
    """Return how many mailed tokens are still unused."""
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).select_from(MailToken).where(MailToken.used_at.is_(None))
        )


def submit(client, token, password=NEW_PASSWORD, repeat=None):
    """Submit the reset form as a browser would."""
    form = {"token": token, "newPassword": password, "repeatPassword": repeat or password}
    return client.post("/reset-password", data=form)


def test_opening_the_reset_page_shows_a_form_and_uses_nothing(app, client, mailbox):
    """GET shows the form with the token hidden in it; the token stays unused."""
    token = reset_token(app, client, mailbox)
    before = unused(app)
    page = client.get(f"/reset-password?token={token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert f'name="token" value="{token}"' in html and '<meta charset="utf-8">' in html
    assert "<script" not in html
    assert page.headers["Content-Security-Policy"] == PAGE_POLICY
    assert unused(app) == before


def test_submitting_the_reset_form_sets_the_password(app, client, mailbox):
    """POST with two equal strong passwords resets; the token is then used."""
    token = reset_token(app, client, mailbox)
    done = submit(client, token)
    assert done.status_code == 200 and "Password changed" in done.get_data(as_text=True)
    assert (
        client.post("/auth/signin", json={"email": EMAIL, "password": NEW_PASSWORD}).status_code
        == 200
    )
    assert submit(client, token).status_code == 400


@pytest.mark.parametrize(
    ("password", "repeat", "message"),
    [
        ("password1234", None, "too easy to guess"),
        (NEW_PASSWORD, "something-else-entirely-9", "differ"),
        ("short", None, "Length must be between 8 and 128"),
    ],
)
def test_a_refused_form_shows_it_again_and_keeps_the_token(
    app, client, mailbox, password, repeat, message
):
    """A weak, mismatched or short password shows the form again with why; the token lives."""
    token = reset_token(app, client, mailbox)
    again = submit(client, token, password, repeat)
    html = again.get_data(as_text=True)
    assert again.status_code == 422 and message in html and f'value="{token}"' in html
    assert submit(client, token).status_code == 200


@pytest.mark.parametrize("path", ["/reset-password", "/verify-email"])
def test_a_dead_link_says_so(client, path):
    """An unknown or missing token opens the 'link does not work' page."""
    for query in ("?token=no-such-token", "", "?token=%00"):
        page = client.get(path + query)
        assert page.status_code == 400 and "does not work" in page.get_data(as_text=True)


def test_the_verify_page_verifies_only_when_submitted(app, client, mailbox):
    """GET shows a button; POST verifies the address."""
    tokens = client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD}).json
    token = mailed_token(app, mailbox, "Confirm")
    assert client.get(f"/verify-email?token={token}").status_code == 200
    me = client.get("/users/me", headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert me.json["emailVerified"] is False
    done = client.post("/verify-email", data={"token": token})
    assert done.status_code == 200 and "Address verified" in done.get_data(as_text=True)
    assert client.post("/verify-email", data={"token": token}).status_code == 400


def test_the_stylesheet_is_served(client):
    """The pages' stylesheet comes from the service itself."""
    sheet = client.get("/static/pages.css")
    assert sheet.status_code == 200 and sheet.mimetype == "text/css"


def test_pages_stay_out_of_the_openapi_document(client):
    """The pages are not API."""
    paths = client.get("/openapi.json").json["paths"]
    assert "/reset-password" not in paths and "/verify-email" not in paths
    assert "/auth/password-reset" in paths and "/users/me/email" in paths


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/reset-password", 405),
        ("DELETE", "/verify-email", 405),
        ("GET", "/reset-password/", 404),
        ("GET", "/static/nothing.css", 404),
    ],
)
def test_page_errors_are_problems(client, method, path, status):
    """Errors other than the form's own are problem+json, as everywhere."""
    response = client.open(path, method=method)
    assert (response.status_code, response.content_type) == (status, "application/problem+json")


@pytest.mark.parametrize("path", ["/reset-password", "/verify-email"])
def test_a_submitted_page_that_is_not_a_form_is_415(client, path):
    """The pages take forms; a JSON, text or empty body is 415 problem+json."""
    for body in ({"json": {"token": "x"}}, {"data": "token=x", "content_type": "text/plain"}, {}):
        response = client.post(path, **body)
        assert (response.status_code, response.content_type) == (415, "application/problem+json")


def test_an_oversized_form_is_413(client):
    """A form over the body limit is refused before it is read."""
    response = client.post("/reset-password", data={"token": "x" * 20000})
    assert (response.status_code, response.content_type) == (413, "application/problem+json")
