"""What the wire shows: a User-Agent as sent, one charset, one reason, CORS grants and Vary."""

import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD, bearer, settings
from live import gunicorn, migrated, service_environment

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import AuthEvent

AGENT = "Navigateur/2.0 (Québec; 東京)"
ORIGIN = "https://app.example.com"


def as_wsgi_hands_it_over(text):
    """Return a header value as a WSGI server hands it over: its UTF-8 bytes read as Latin-1."""
    return text.encode("utf-8").decode("latin-1")


def test_a_non_ascii_user_agent_is_stored_as_sent(app, client):
    """Sessions and the audit trail hold "Québec", not "QuÃ©bec"."""
    environ = {"HTTP_USER_AGENT": as_wsgi_hands_it_over(AGENT)}
    body = {"email": "ua@example.com", "password": PASSWORD}
    tokens = client.post("/auth/signup", json=body, environ_base=environ).json
    (session,) = client.get("/auth/sessions", headers=bearer(tokens["accessToken"])).json
    assert session["userAgent"] == AGENT
    with app.app_context():
        assert db.session.scalar(sa.select(AuthEvent.user_agent)) == AGENT


def test_a_latin_1_user_agent_stays_latin_1(app, client):
    """Bytes that are not UTF-8 keep their Latin-1 reading."""
    environ = {"HTTP_USER_AGENT": "caf\xe9/1.0"}
    body = {"email": "ua@example.com", "password": PASSWORD}
    tokens = client.post("/auth/signup", json=body, environ_base=environ).json
    (session,) = client.get("/auth/sessions", headers=bearer(tokens["accessToken"])).json
    assert session["userAgent"] == "café/1.0"


def test_a_user_agent_over_gunicorn_is_stored_as_sent(tmp_path):
    """A real client's UTF-8 User-Agent comes back from /auth/sessions unchanged."""
    env = service_environment(tmp_path)
    migrated(env)
    with gunicorn(env, workers=1) as url:
        body = {"email": "ua@example.com", "password": PASSWORD}
        headers = {"User-Agent": AGENT.encode("utf-8")}
        tokens = requests.post(f"{url}/auth/signup", json=body, headers=headers).json()
        sessions = requests.get(f"{url}/auth/sessions", headers=bearer(tokens["accessToken"]))
    assert sessions.json()[0]["userAgent"] == AGENT


def test_a_weak_password_without_a_warning_says_so_once(database_url):
    """zxcvbn gives no warning for some weak passwords: the detail does not repeat itself."""
    client = create_app(settings(database_url, PASSWORD_MIN_SCORE=3)).test_client()
    body = {"email": "weak@example.com", "password": "correcthorse"}
    refused = client.post("/auth/signup", json=body).json
    assert refused["code"] == "weak_password"
    assert refused["detail"] == "The password is too easy to guess."
    assert refused["errors"]["password"][0].count("too easy to guess") == 1


def test_metrics_have_one_charset(client):
    """/metrics names its charset once."""
    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset") == 1


@pytest.fixture
def cors(database_url):
    """Return a client of an app that lets one origin call it from a browser."""
    return create_app(settings(database_url, CORS_ORIGINS=[ORIGIN])).test_client()


@pytest.mark.parametrize(
    ("headers", "granted"),
    [({}, None), ({"Origin": ORIGIN}, ORIGIN), ({"Origin": "https://evil.example"}, None)],
)
@pytest.mark.parametrize("path", ["/healthz", "/users/me", "/no-such-page"])
def test_cors_grants_only_a_listed_origin_and_always_varies(cors, headers, granted, path):
    """No Origin, no grant; a listed one, a grant; every answer carries Vary: Origin."""
    response = cors.get(path, headers=headers)
    assert response.headers.get("Access-Control-Allow-Origin") == granted
    assert "Origin" in response.vary


def test_without_cors_nothing_varies_by_origin(client):
    """CORS off: no grant, and nothing depends on Origin."""
    response = client.get("/healthz", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" not in response.vary
