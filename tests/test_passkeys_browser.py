"""Passkeys in a real browser: headless Chromium's virtual authenticator against gunicorn.

authsvc runs as in production on http://localhost:PORT (its PUBLIC_URL, so
the relying party is `localhost`). The page is authsvc's own /docs, whose
policy lets scripts fetch from its origin; the script is docs/passkeys.md's
JavaScript as printed, run with execute_async_script: it adds a passkey
through navigator.credentials.create() and signs in with it through
navigator.credentials.get(). Chromium's virtual authenticator is a CTAP2
platform authenticator with resident keys and user verification.
"""

import re
import subprocess

import jwt
import pytest
import requests
from browser import csp_violations
from conftest import PASSWORD
from live import ROOT, flask_cli, free_port, gunicorn, migrated, service_environment
from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions

EMAIL = "ada@example.com"
DOCS = (ROOT / "docs" / "passkeys.md").read_text()
SCRIPT = re.search(r"^<!-- passkeys-js -->\n```js\n(.*?)^```", DOCS, re.M | re.S)[1]
SHELL = re.search(r"^<!-- passkeys-sh -->\n```sh\n(.*?)^```", DOCS, re.M | re.S)[1]
# What a browser without the JSON methods lacks: the script's fallback runs.
WITHOUT_JSON_METHODS = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("passkeys_browser")]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Run gunicorn on http://localhost:PORT with a verified user; yield its URL."""
    port = free_port()
    env = service_environment(
        tmp_path_factory.mktemp("passkeys"), PUBLIC_URL=f"http://localhost:{port}"
    )
    migrated(env)
    with gunicorn(env, port=port):
        url = f"http://localhost:{port}"
        body = {"email": EMAIL, "password": PASSWORD}
        assert requests.post(f"{url}/auth/signup", json=body, timeout=10).status_code == 201
        assert flask_cli(env, "users", "verify", EMAIL).returncode == 0
        yield url


def fresh_token(service):
    """Sign the user in with the password; return a fresh access token."""
    body = {"email": EMAIL, "password": PASSWORD}
    return requests.post(f"{service}/auth/signin", json=body, timeout=10).json()["accessToken"]


def run(browser, call, *arguments, prelude=""):
    """Run the docs' script and then `call` in the page; return its result or raise its error."""
    script = (
        prelude
        + SCRIPT
        + f"""
    const done = arguments[arguments.length - 1];
    ({call})(...Array.from(arguments).slice(0, -1))
      .then((value) => done({{value}}), (error) => done({{error: String(error)}}));
    """
    )
    outcome = browser.execute_async_script(script, *arguments)
    assert "error" not in outcome, outcome["error"]
    return outcome["value"]


@pytest.fixture
def chromium(browser, service):
    """Open authsvc's /docs with a virtual platform authenticator; yield the browser."""
    browser.set_script_timeout(30)
    browser.get(f"{service}/docs")
    browser.add_virtual_authenticator(
        VirtualAuthenticatorOptions(
            protocol="ctap2",
            transport="internal",
            has_resident_key=True,
            has_user_verification=True,
            is_user_verified=True,
        )
    )
    yield browser
    browser.remove_virtual_authenticator()


@pytest.mark.parametrize("prelude", ["", WITHOUT_JSON_METHODS], ids=["json-methods", "fallback"])
def test_chromium_adds_a_passkey_and_signs_in_with_it(chromium, service, prelude):
    """navigator.credentials.create() registers; navigator.credentials.get() signs in."""
    token = fresh_token(service)
    added = run(chromium, "addPasskey", token, "Chromium", prelude=prelude)
    assert set(added) == {"id", "name", "createdAt", "lastUsedAt", "backedUp"}
    assert added["name"] == "Chromium"
    (credential,) = chromium.get_credentials()
    assert credential.is_resident_credential and credential.rp_id == "localhost"
    signed_in = run(chromium, "signInWithPasskey", prelude=prelude)
    assert signed_in["email"] == EMAIL
    claims = jwt.decode(signed_in["accessToken"], options={"verify_signature": False})
    assert claims["amr"] == ["hwk", "mfa"]
    listed = requests.get(
        f"{service}/users/me/passkeys",
        headers={"Authorization": f"Bearer {signed_in['accessToken']}"},
        timeout=10,
    ).json()
    assert [item["lastUsedAt"] is not None for item in listed if item["id"] == added["id"]] == [
        True
    ]
    assert csp_violations(chromium) == []


def test_chromium_cannot_add_the_same_passkey_twice(chromium, service):
    """The options exclude the user's passkeys: the authenticator refuses a second one."""
    token = fresh_token(service)
    run(chromium, "addPasskey", token, "First")
    script = (
        SCRIPT
        + """
    const done = arguments[arguments.length - 1];
    addPasskey(arguments[0], "Second").then(() => done("added"), (error) => done(error.name));
    """
    )
    assert chromium.execute_async_script(script, fresh_token(service)) == "InvalidStateError"


def test_the_docs_shell_example_runs_as_printed(service):
    """docs/passkeys.md's curl block gets sign-in options."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", SHELL],
        env={"BASE": service, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert '"userVerification":"required"' in result.stdout.replace(" ", "")


def test_the_fallback_really_runs_without_the_json_methods(chromium):
    """This Chromium has the JSON methods, and the fallback's prelude really removes them."""
    probe = (
        "return [typeof PublicKeyCredential.parseCreationOptionsFromJSON,"
        " typeof PublicKeyCredential.prototype.toJSON];"
    )
    assert chromium.execute_script(probe) == ["function", "function"]
    assert chromium.execute_script(WITHOUT_JSON_METHODS + probe) == ["undefined", "undefined"]
