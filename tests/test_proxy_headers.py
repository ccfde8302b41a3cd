"""Forwarded headers over real gunicorn: TRUSTED_PROXIES alone decides whether they count.

With TRUSTED_PROXIES=0 no header a client sends makes a request https (and
so earns HSTS, or https links), changes its host or its address, whether it
comes over TCP from 127.0.0.1 or over a Unix socket, where gunicorn would
otherwise trust them. With TRUSTED_PROXIES=1, as behind nginx, the proxy's
X-Forwarded-Proto and X-Forwarded-For are honoured.
"""

import http.client
import socket
import subprocess
import sys

import pytest
import requests
from conftest import PASSWORD, bearer
from live import (
    ROOT,
    flask_cli,
    free_port,
    gunicorn,
    migrated,
    service_environment,
    wait_until_serving,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("proxy_headers")]

ADMIN = "proxy-admin@example.com"
FORGED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Protocol": "ssl",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-For": "203.0.113.9",
    "Forwarded": "for=203.0.113.9;proto=https;host=evil.example",
}


def serve(folder, proxies):
    """Start gunicorn with TRUSTED_PROXIES=proxies, an admin and a second user; yield its URL."""
    env = service_environment(folder, TRUSTED_PROXIES=proxies)
    migrated(env)
    for email, flags in ((ADMIN, ["--admin"]), ("second@example.com", [])):
        created = flask_cli(
            env, "users", "create", email, *flags, "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
    with gunicorn(env, workers=1) as url:
        yield url


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory):
    """Yield the URL of gunicorn under TRUSTED_PROXIES=0."""
    yield from serve(tmp_path_factory.mktemp("untrusting"), "0")


@pytest.fixture(scope="module")
def behind_a_proxy(tmp_path_factory):
    """Yield the URL of gunicorn under TRUSTED_PROXIES=1."""
    yield from serve(tmp_path_factory.mktemp("proxied"), "1")


def signed_in(url, headers):
    """Sign the admin in with these headers; return its access token."""
    response = requests.post(
        f"{url}/auth/signin", json={"email": ADMIN, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["accessToken"]


def session_ip(url, token):
    """Return the address the caller's session was opened from."""
    sessions = requests.get(f"{url}/auth/sessions", headers=bearer(token)).json()
    return next(session["ip"] for session in sessions if session["current"])


def test_forged_headers_change_nothing_without_trusted_proxies(untrusting):
    """TRUSTED_PROXIES=0: no HSTS, the Link names the real http host, the address is the peer's."""
    url = untrusting
    token = signed_in(url, FORGED)
    listed = requests.get(f"{url}/users?limit=1", headers={**FORGED, **bearer(token)})
    assert "Strict-Transport-Security" not in listed.headers
    assert listed.headers["Link"].startswith(f"<{url}/users?")
    assert session_ip(url, token) == "127.0.0.1"


def test_a_trusted_proxy_sets_scheme_and_address(behind_a_proxy):
    """TRUSTED_PROXIES=1: the proxy's X-Forwarded-Proto and X-Forwarded-For are believed."""
    url = behind_a_proxy
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    token = signed_in(url, proxy)
    listed = requests.get(f"{url}/users?limit=1", headers={**proxy, **bearer(token)})
    assert listed.headers["Strict-Transport-Security"] == "max-age=63072000"
    assert listed.headers["Link"].startswith("<https://" + url.removeprefix("http://") + "/users?")
    assert session_ip(url, token) == "203.0.113.9"


class UnixConnection(http.client.HTTPConnection):
    """An HTTP connection over a Unix socket."""

    def __init__(self, path):
        """Remember the socket's path."""
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        """Connect to the Unix socket."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def test_forged_headers_count_for_nothing_over_a_unix_socket(tmp_path):
    """gunicorn trusts a Unix socket's forwarded headers by default; authsvc's settings do not."""
    env = service_environment(tmp_path)
    path, port = tmp_path / "authsvc.sock", free_port()
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--workers", "1"]
    command += ["--bind", f"unix:{path}", "--bind", f"127.0.0.1:{port}"]
    with open(tmp_path / "gunicorn.log", "w+b") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_serving(f"http://127.0.0.1:{port}", process, log)
            connection = UnixConnection(str(path))
            connection.request("GET", "/healthz", headers=FORGED)
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("Strict-Transport-Security") is None
        finally:
            process.terminate()
            process.wait(timeout=30)
