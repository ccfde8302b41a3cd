"""The production recipe in deploy/, run for real: Debian's nginx in front of gunicorn.

nginx runs the repo's own deploy/nginx/authsvc.conf (tests/deployment.py
puts in only what a host changes) with a certificate made here, in front of
`gunicorn wsgi:app` on loopback. gunicorn runs with deploy/authsvc.env.example
as deploy/README.md fills it in (production, EdDSA, TRUSTED_PROXIES=1), on
a PostgreSQL database of its own, after the README's `db upgrade` and
`keys rotate`. Only what must stay inside the test changes: no mail, rate
limits in memory (Redis keys are shared with other tests), bcrypt's cost.
"""

import http.client
import json
import os
import secrets
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import requests
from conftest import PASSWORD, bearer, postgres_database, skip_without
from deployment import (
    ENV_EXAMPLE,
    SERVER_NAME,
    SlowClients,
    client_context,
    nginx,
    nginx_binary,
    sourced,
)
from live import ROOT, flask_cli, free_port, gunicorn, migrated, service_environment
from test_walkthrough import walkthrough_blocks

from authsvc.hooks import SECURITY_HEADERS

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deploy")]

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def nginx_installed():
    """Skip without nginx (fail under CI=true)."""
    if nginx_binary() is None:
        skip_without("nginx", "apt-get install nginx")


@pytest.fixture(scope="module")
def deployed(nginx_installed, tmp_path_factory):
    """Run gunicorn behind the repo's nginx site; yield its environment, URLs and certificate."""
    folder = tmp_path_factory.mktemp("deploy")
    databases = postgres_database()
    env = {
        **sourced(ENV_EXAMPLE.read_text(), folder),
        **service_environment(folder, MAIL_URL="none", RATELIMIT_STORAGE_URI="memory://"),
        "DATABASE_URL": next(databases),
        "TRUSTED_PROXIES": "1",
    }
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])
    try:
        migrated(env)
        assert flask_cli(env, "keys", "rotate").returncode == 0
        with gunicorn(env, log_path=folder / "gunicorn.log") as direct:
            upstream = direct.removeprefix("http://")
            with nginx(folder / "nginx", upstream) as proxy:
                yield SimpleNamespace(env=env, direct=direct, proxy=proxy, https=proxy.https)
    finally:
        next(databases, None)


def signed_up(deployed):
    """Sign a new user up through nginx; return its email and access token."""
    email = f"deploy-{secrets.token_hex(4)}@example.com"
    response = requests.post(
        f"{deployed.https}/auth/signup",
        json={"email": email, "password": PASSWORD},
        verify=deployed.proxy.certificate,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return email, response.json()["accessToken"]


def ordinary_requests(deployed, email, access_token, count):
    """Send `count` requests through nginx, one after another; return each (status, seconds)."""
    signin = {"email": email, "password": PASSWORD}
    # verify on every call: a session's own is overridden by REQUESTS_CA_BUNDLE.
    options = {"verify": deployed.proxy.certificate, "timeout": 5}
    results = []
    with requests.Session() as session:
        for index in range(count):
            started = time.monotonic()
            if index % 5 == 0:
                response = session.post(f"{deployed.https}/auth/signin", json=signin, **options)
            elif index % 5 == 1:
                me = f"{deployed.https}/users/me"
                response = session.get(me, headers=bearer(access_token), **options)
            else:
                response = session.get(f"{deployed.https}/healthz", **options)
            results.append((response.status_code, time.monotonic() - started))
    return results


def test_slow_clients_cost_nginx_a_connection_not_a_worker(deployed):
    """50 signins trickling a byte a second leave 200 other requests each under a second."""
    email, access_token = signed_up(deployed)
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    context = client_context(deployed.proxy.certificate)
    with SlowClients(deployed.proxy.https_port, body, 50, context=context) as slow:
        slow.wait_sent(3)
        results = ordinary_requests(deployed, email, access_token, 200)
        assert not slow.errors
        assert max(slow.sent) < len(body)  # still trickling all along
        finished = slow.finish()
    assert sorted({status for status, _ in results}) == [200]
    slowest = max(seconds for _, seconds in results)
    assert slowest < 1, f"the slowest request took {slowest:.3f} s"
    assert finished == [200] * 50


def from_another_address(deployed, method, path, body=None, headers=None):
    """Send one request through nginx from 127.0.0.3; return its status and parsed JSON body.

    Not from 127.0.0.1: nginx itself connects to gunicorn from there, so that
    address would not tell the client's from nginx's own.
    """
    connection = http.client.HTTPSConnection(
        SERVER_NAME,
        deployed.proxy.https_port,
        context=client_context(deployed.proxy.certificate),
        source_address=("127.0.0.3", 0),
        timeout=10,
    )
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_authsvc_sees_the_client_address_not_a_forwarded_for_it_sent(deployed):
    """A signin from 127.0.0.3 that claims X-Forwarded-For 203.0.113.9 is recorded as 127.0.0.3."""
    email, _ = signed_up(deployed)
    body = json.dumps({"email": email, "password": PASSWORD})
    headers = {**JSON, "X-Forwarded-For": "203.0.113.9"}
    status, signed_in = from_another_address(deployed, "POST", "/auth/signin", body, headers)
    assert status == 200
    sessions = requests.get(
        f"{deployed.https}/auth/sessions",
        headers=bearer(signed_in["accessToken"]),
        verify=deployed.proxy.certificate,
        timeout=10,
    ).json()
    assert [session["ip"] for session in sessions if session["current"]] == ["127.0.0.3"]


def test_metrics_answer_this_host_only(deployed):
    """/metrics through nginx answers a client on this host, and any other a 403 problem."""
    local = requests.get(f"{deployed.https}/metrics", verify=deployed.proxy.certificate, timeout=10)
    status, problem = from_another_address(deployed, "GET", "/metrics")
    assert local.status_code == 200
    assert local.headers["Content-Type"].startswith("text/plain")
    assert (status, problem["code"]) == (403, "forbidden")


def test_answers_over_tls_carry_hsts_and_no_nginx_version(deployed):
    """authsvc learns the request came over TLS (X-Forwarded-Proto) and sends HSTS, once."""
    response = requests.get(
        f"{deployed.https}/healthz", verify=deployed.proxy.certificate, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert response.headers["Server"] == "nginx"


def test_html_pages_are_not_compressed(deployed):
    """gzip stays off (BREACH), though Debian's nginx.conf turns it on for HTML."""
    response = requests.get(
        f"{deployed.https}/docs",
        headers={"Accept-Encoding": "gzip"},
        verify=deployed.proxy.certificate,
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Content-Encoding" not in response.headers


def test_plain_http_is_redirected_to_https(deployed):
    """Port 80 answers every request with a redirect to the same path over https."""
    response = requests.get(
        f"{deployed.proxy.http}/users/me?probe=1", allow_redirects=False, timeout=10
    )
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{SERVER_NAME}/users/me?probe=1"


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_body_over_the_limit_gets_authsvcs_own_413(deployed, chunked):
    """nginx refuses a body over 16 KiB with the problem authsvc itself answers."""
    body = b'{"email": "' + b"a" * 16384 + b'"}'
    headers = {**JSON, "X-Request-ID": "deploy-test-413"}
    through = requests.post(
        f"{deployed.https}/auth/signin",
        data=iter([body]) if chunked else body,
        headers=headers,
        verify=deployed.proxy.certificate,
        timeout=10,
    )
    direct = requests.post(f"{deployed.direct}/auth/signin", data=body, headers=JSON, timeout=10)
    assert through.status_code == direct.status_code == 413
    assert through.headers["Content-Type"] == direct.headers["Content-Type"]
    assert through.headers["X-Request-ID"] == "deploy-test-413"
    for name in SECURITY_HEADERS:
        assert through.headers[name] == direct.headers[name], name
    # The title is Python's name for the status, which Python 3.13 changed.
    assert {**through.json(), "title": ""} == {**direct.json(), "title": ""}


def test_a_body_at_the_limit_reaches_authsvc(deployed):
    """A body of exactly 16 KiB passes nginx: authsvc, not nginx, answers it (422)."""
    body = b" " * (16384 - 2) + b"{}"
    response = requests.post(
        f"{deployed.https}/auth/signin",
        data=body,
        headers=JSON,
        verify=deployed.proxy.certificate,
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


def test_gunicorn_down_is_a_503_problem(nginx_installed, tmp_path):
    """With nothing listening upstream, nginx answers authsvc's 503 shape with Retry-After."""
    with nginx(tmp_path, f"127.0.0.1:{free_port()}") as proxy:
        response = requests.get(f"{proxy.https}/healthz", verify=proxy.certificate, timeout=10)
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert response.json()["code"] == "unavailable"


def test_walkthrough_first_block_passes_over_https(deployed):
    """The README walk-through's first block runs against https://, trusting our certificate."""
    block = walkthrough_blocks((ROOT / "README.md").read_text())[0]
    env = {
        **deployed.env,
        "BASE": deployed.https,
        "CURL_CA_BUNDLE": str(deployed.proxy.certificate),
    }
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
