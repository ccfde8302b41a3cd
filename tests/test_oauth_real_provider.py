"""The whole round trip against a real OpenID Provider: panva's oidc-provider, OpenID Certified.

tests/oidc/server.js runs it on loopback with its development login and
consent pages. `requests` fills those forms (tests/oidc/sign_in.py) on both
databases; one test does it all in headless Chromium, from an app's link
to the app's page with the code. Its ID tokens carry no email (certified
providers leave scope claims to userinfo), so userinfo is used for real.
"""

import contextlib
import http.server
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from browser import wait_for
from conftest import bearer, empty_database, settings
from live import free_port, gunicorn, migrated, service_environment
from oauthhelp import APP_URL, PUBLIC_URL, app_answer, exchange, pkce
from oidc.sign_in import sign_in
from oidcserver import oidc_provider, provider_overrides
from selenium.webdriver.common.by import By

from authsvc import create_app

CALLBACK = f"{PUBLIC_URL}/auth/oauth/local/callback"


# One provider and browser for the module: its tests run on one xdist worker.
pytestmark = pytest.mark.xdist_group("real_provider")


@pytest.fixture(scope="module")
def issuer():
    """Run the real provider for this module's in-process apps."""
    with oidc_provider([CALLBACK]) as url:
        yield url


@pytest.fixture
def app(database_url, issuer):
    """Yield an app whose provider `local` is the real one."""
    overrides = provider_overrides(issuer)
    app = create_app(
        settings(database_url, OAUTH_REDIRECT_URLS=[APP_URL], PUBLIC_URL=PUBLIC_URL, **overrides)
    )
    yield app
    empty_database(app)


def provider_answer(client, login, decline=False):
    """Start at authsvc, sign in at the provider as `login`; return the answer and verifier."""
    verifier, challenge = pkce()
    query = {"redirectTo": APP_URL, "codeChallenge": challenge, "codeChallengeMethod": "S256"}
    started = client.get(
        "/auth/oauth/local/authorize", query_string=query, headers={"Accept": "application/json"}
    )
    assert started.status_code == 200, started.json
    callback = sign_in(started.json["url"], login, PUBLIC_URL, decline=decline)
    return app_answer(client.get(callback.removeprefix(PUBLIC_URL))), verifier


def test_a_real_provider_signs_a_new_user_in(client):
    """Login and consent at oidc-provider, the callback, the code: a verified account."""
    answer, verifier = provider_answer(client, "ada")
    response = exchange(client, answer["code"], verifier)
    assert response.status_code == 200, response.json
    assert (response.json["email"], response.json["isNewUser"]) == ("ada@example.com", True)
    me = client.get("/users/me", headers=bearer(response.json["accessToken"])).json
    assert (me["emailVerified"], me["hasPassword"]) == (True, False)
    amr = jwt.decode(response.json["accessToken"], options={"verify_signature": False})["amr"]
    assert amr == ["oauth"]


def test_the_same_real_account_signs_in_again(client):
    """A second round trip finds the identity: the same user, not new."""
    first = exchange(client, *code_and_verifier(client, "grace"))
    again = exchange(client, *code_and_verifier(client, "grace"))
    assert (again.json["id"], again.json["isNewUser"]) == (first.json["id"], False)


def code_and_verifier(client, login):
    """Return the code of a round trip and its verifier."""
    answer, verifier = provider_answer(client, login)
    return answer["code"], verifier


def test_declining_at_a_real_provider_is_access_denied(client):
    """Cancelling at the provider's page brings the browser back with error=access_denied."""
    answer, _ = provider_answer(client, "ada", decline=True)
    assert answer == {"error": "access_denied"}


def test_a_real_providers_unverified_address_does_not_take_an_account(client, auth):
    """email_verified false for an existing address: account_exists, nothing linked."""
    auth.create_user("unverified-bob@example.com")
    answer, _ = provider_answer(client, "unverified-bob")
    assert answer == {"error": "account_exists"}


class AppPages(http.server.BaseHTTPRequestHandler):
    """A tiny app: a page with a "Sign in" link to authsvc, and the page it comes back to."""

    link = ""

    def do_GET(self):
        """Serve the start page or the signed-in page."""
        if self.path.startswith("/signed-in"):
            body = "<h1 id='done'>Signed in</h1>"
        else:
            body = f"<a id='signin' href='{self.link}'>Sign in with the local provider</a>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        """Keep quiet."""


@contextlib.contextmanager
def app_server():
    """Serve AppPages on a free loopback port; yield its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AppPages)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def live_authsvc(tmp_path, app_url):
    """Run gunicorn with the real provider as `local`, both on free ports; yield authsvc's URL."""
    port = free_port()
    authsvc = f"http://127.0.0.1:{port}"
    with oidc_provider([f"{authsvc}/auth/oauth/local/callback"]) as issuer:
        env = service_environment(tmp_path, PUBLIC_URL=authsvc)
        env["OAUTH_REDIRECT_URLS"] = f"{app_url}/signed-in"
        for name, value in provider_overrides(issuer).items():
            env[name] = ",".join(value) if isinstance(value, list) else value
        migrated(env)
        with gunicorn(env, workers=1, port=port):
            yield authsvc


def sign_in_in_the_browser(browser, app_url):
    """Click the app's link, sign in and consent at the provider; return the app's final URL."""
    browser.get(app_url)
    browser.find_element(By.ID, "signin").click()
    wait_for(browser, lambda driver: driver.find_elements(By.NAME, "login"))
    browser.find_element(By.NAME, "login").send_keys("ada")
    browser.find_element(By.NAME, "password").send_keys("any password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    consent = "input[name=prompt][value=consent]"
    wait_for(browser, lambda driver: driver.find_elements(By.CSS_SELECTOR, consent))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, lambda driver: driver.find_elements(By.ID, "done"))
    return browser.current_url


@pytest.mark.e2e
def test_the_whole_flow_in_a_browser(browser, tmp_path):
    """Chromium: the app's link, the provider's login and consent, back to the app with a code."""
    verifier, challenge = pkce()
    with app_server() as app_url, live_authsvc(tmp_path, app_url) as authsvc:
        query = {"redirectTo": f"{app_url}/signed-in", "codeChallenge": challenge}
        query["codeChallengeMethod"] = "S256"
        AppPages.link = f"{authsvc}/auth/oauth/local/authorize?{urlencode(query)}"
        landed = sign_in_in_the_browser(browser, app_url)
        assert landed.startswith(f"{app_url}/signed-in?code=")
        body = {"code": parse_qs(urlsplit(landed).query)["code"][0], "codeVerifier": verifier}
        response = requests.post(f"{authsvc}/auth/oauth/token", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "ada@example.com"
