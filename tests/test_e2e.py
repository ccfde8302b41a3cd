"""The real service: `flask db upgrade`, then `gunicorn wsgi:app` over real HTTP."""

import http.client
import json
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import jwt
import pyotp
import pytest
import redis
import requests
from alembic.script import ScriptDirectory
from conftest import redis_key_prefix, redis_server
from live import (
    ROOT,
    bound_socket,
    flask_cli,
    free_port,
    gunicorn,
    migrated,
    service_environment,
    start_gunicorn,
)

PASSWORD = "violet-kettle-orbit-42"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Start gunicorn with two workers on a migrated database; yield its URL and env."""
    env = service_environment(tmp_path_factory.mktemp("e2e"))
    migrated(env)
    with gunicorn(env) as url:
        yield url, env


def bearer(token):
    """Return the Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def test_whole_flow_over_http(server):
    """Signup, me, refresh, signin, signout and the admin list, as a client sees them."""
    url, _ = server
    signup = requests.post(
        f"{url}/auth/signup", json={"email": "flow@example.com", "password": PASSWORD}
    )
    assert signup.status_code == 201
    me = requests.get(f"{url}/users/me", headers=bearer(signup.json()["accessToken"]))
    assert me.status_code == 200 and me.json()["email"] == "flow@example.com"
    refreshed = requests.post(f"{url}/auth/refresh", headers=bearer(signup.json()["refreshToken"]))
    assert refreshed.status_code == 200
    phone = requests.post(
        f"{url}/auth/signin", json={"email": "flow@example.com", "password": PASSWORD}
    )
    assert phone.status_code == 200
    signout = requests.post(f"{url}/auth/signout", headers=bearer(refreshed.json()["accessToken"]))
    assert signout.status_code == 204 and signout.content == b""
    assert (
        requests.get(f"{url}/users/me", headers=bearer(refreshed.json()["accessToken"])).status_code
        == 401
    )
    assert (
        requests.get(f"{url}/users/me", headers=bearer(phone.json()["accessToken"])).status_code
        == 200
    )
    assert (
        requests.get(f"{url}/users", headers=bearer(phone.json()["accessToken"])).status_code == 403
    )


def test_cli_admin_lists_users_over_http(server):
    """An admin made with the CLI can page through users (two at least: a page of one links on)."""
    url, env = server
    other = {"email": "listed@example.com", "password": PASSWORD}
    assert requests.post(f"{url}/auth/signup", json=other).status_code == 201
    created = flask_cli(
        env,
        "users",
        "create",
        "root@example.com",
        "--admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    tokens = requests.post(
        f"{url}/auth/signin", json={"email": "root@example.com", "password": PASSWORD}
    ).json()
    listing = requests.get(f"{url}/users?limit=1", headers=bearer(tokens["accessToken"]))
    assert listing.status_code == 200 and len(listing.json()) == 1
    assert listing.headers["Link"].startswith(f"<{url}/users?")


def test_mfa_signin_over_http(tmp_path):
    """Enroll and confirm with an authenticator's code, then sign in with a second one.

    Under EdDSA, another service verifies the token from the JWKS alone and
    finds otp in its amr; an operator's `users mfa-reset` then ends it.
    """
    env = service_environment(tmp_path, JWT_ALGORITHM="EdDSA")
    migrated(env)
    assert flask_cli(env, "keys", "rotate").returncode == 0
    body = {"email": "mfa@example.com", "password": PASSWORD}
    with gunicorn(env) as url:
        signup = requests.post(f"{url}/auth/signup", json=body).json()
        caller = bearer(signup["accessToken"])
        # Enrolling needs a verified address; the operator vouches for this one.
        assert flask_cli(env, "users", "verify", "mfa@example.com").returncode == 0
        enrolled = requests.post(
            f"{url}/users/me/mfa/totp", json={"currentPassword": PASSWORD}, headers=caller
        )
        authenticator = pyotp.TOTP(enrolled.json()["secret"])
        confirmed = requests.post(
            f"{url}/users/me/mfa/totp/confirm", json={"code": authenticator.now()}, headers=caller
        )
        assert confirmed.status_code == 200 and len(confirmed.json()["recoveryCodes"]) == 10
        asked = requests.post(f"{url}/auth/signin", json=body)
        assert asked.status_code == 403 and asked.json()["code"] == "mfa_required"
        assert asked.headers["Content-Type"] == "application/problem+json"
        code = authenticator.at(time.time() + 30)  # the next step: the last one is used
        answer = {"mfaToken": asked.json()["mfaToken"], "code": code}
        signed_in = requests.post(f"{url}/auth/signin/mfa", json=answer)
        assert signed_in.status_code == 200
        access = signed_in.json()["accessToken"]
        key = jwt.PyJWKClient(f"{url}/.well-known/jwks.json").get_signing_key_from_jwt(access)
        assert "otp" in jwt.decode(access, key.key, algorithms=["EdDSA"])["amr"]
        assert requests.get(f"{url}/users/me", headers=bearer(access)).json()["mfaEnabled"]
        replay = {"mfaToken": requests.post(f"{url}/auth/signin", json=body).json()["mfaToken"]}
        replayed = requests.post(f"{url}/auth/signin/mfa", json={**replay, "code": code})
        assert replayed.status_code == 401 and replayed.json()["code"] == "invalid_mfa_code"
        assert flask_cli(env, "users", "mfa-reset", "mfa@example.com").returncode == 0
        assert requests.get(f"{url}/users/me", headers=bearer(access)).status_code == 401
        assert requests.post(f"{url}/auth/signin", json=body).status_code == 200


def test_concurrent_refreshes_over_http_rotate_once(server):
    """Twenty refreshes of one token across two workers all get the same new token."""
    url, _ = server
    token = requests.post(
        f"{url}/auth/signup", json={"email": "race@example.com", "password": PASSWORD}
    ).json()["refreshToken"]
    barrier, results = threading.Barrier(20), []

    def refresh():
        barrier.wait()
        response = requests.post(f"{url}/auth/refresh", headers=bearer(token), timeout=30)
        results.append((response.status_code, response.json()["refreshToken"]))

    threads = [threading.Thread(target=refresh) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 20 and {status for status, _ in results} == {200}
    assert len({new for _, new in results}) == 1


def send_chunked(url, path, chunks):
    """POST a chunked JSON body; return the status and parsed problem body."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(
        "POST",
        path,
        body=iter(chunks),
        encode_chunked=True,
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    response = connection.getresponse()
    status, content_type = response.status, response.getheader("Content-Type")
    response.read()
    connection.close()
    return status, content_type


def test_chunked_body_over_the_limit_is_413(server):
    """A chunked body past 16 KiB is refused, not cut short and parsed."""
    url, _ = server
    chunks = [b'{"email": "big@example.com", "password": "'] + [b"x" * 1024] * 20 + [b'"}']
    status, content_type = send_chunked(url, "/auth/signup", chunks)
    assert status == 413 and content_type == "application/problem+json"


def test_small_chunked_body_is_read(server):
    """A chunked body under the limit is read whole."""
    url, _ = server
    body = f'{{"email": "chunky@example.com", "password": "{PASSWORD}"}}'.encode()
    status, _ = send_chunked(url, "/auth/signup", [body[:10], body[10:]])
    assert status == 201


def test_errors_over_http_are_problems(server):
    """404 and 405 from gunicorn are problem+json with the request id."""
    url, _ = server
    missing = requests.get(f"{url}/nope", headers={"X-Request-ID": "e2e-1"})
    assert (
        missing.status_code == 404 and missing.headers["Content-Type"] == "application/problem+json"
    )
    assert missing.headers["X-Request-ID"] == "e2e-1"
    wrong = requests.get(f"{url}/auth/signin")
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]


def test_openapi_and_docs_over_http(server):
    """The OpenAPI document and the docs page are served."""
    url, _ = server
    assert requests.get(f"{url}/openapi.json").json()["openapi"].startswith("3.")
    assert requests.get(f"{url}/docs").status_code == 200


def test_flask_db_upgrade_builds_the_schema_to_the_newest_revision(tmp_path):
    """`flask db upgrade`, run as an operator runs it, migrates a fresh database to the head.

    (The other tests migrate in their own process, through live.migrated().)
    """
    env = service_environment(tmp_path)
    result = flask_cli(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    head = ScriptDirectory(str(ROOT / "migrations")).get_current_head()
    with sqlite3.connect(tmp_path / "authsvc.db") as database:
        assert database.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        assert database.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_production_refuses_to_start_without_a_secret(tmp_path):
    """gunicorn stops at once, with one line naming JWT_SECRET_KEY, and leaves no folder behind."""
    env = service_environment(tmp_path, TMPDIR=str(tmp_path))
    del env["JWT_SECRET_KEY"]
    process = subprocess.run(
        [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    lines = [line for line in process.stderr.splitlines() if "JWT_SECRET_KEY" in line]
    assert len(lines) == 1 and "32 bytes" in lines[0]
    assert not list(tmp_path.glob("authsvc-metrics-*"))


def test_a_run_leaves_no_metrics_folder_and_no_shared_control_socket(tmp_path):
    """A stopped gunicorn removes its metrics folder and never made ~/.gunicorn/gunicorn.ctl."""
    env = service_environment(tmp_path, TMPDIR=str(tmp_path))
    migrated(env)
    with gunicorn(env, workers=1) as url:
        assert requests.get(f"{url}/metrics").status_code == 200
        assert len(list(tmp_path.glob("authsvc-metrics-*"))) == 1
    assert not list(tmp_path.glob("authsvc-metrics-*"))
    assert not (tmp_path / ".gunicorn").exists()


SLOW_BOOT = """
exec(compile(open({conf!r}).read(), {conf!r}, "exec"))
import pathlib, time
_post_fork = post_fork


def post_fork(server, worker):
    _post_fork(server, worker)
    pathlib.Path({marker!r}).touch()
    time.sleep(20)
"""


def test_a_worker_told_to_stop_while_it_boots_stops_at_once(tmp_path):
    """TERM while a worker boots: gunicorn stops in seconds, not after its 30 s graceful timeout.

    The repo's gunicorn.conf.py, with a worker held in boot after its
    post_fork: the master's TERM reaches it before gunicorn gives it
    handlers of its own, and it must still stop.
    """
    env = service_environment(tmp_path)
    migrated(env)
    marker, config = tmp_path / "booting", tmp_path / "slow-boot.conf.py"
    config.write_text(SLOW_BOOT.format(conf=str(ROOT / "gunicorn.conf.py"), marker=str(marker)))
    with bound_socket() as sock, open(tmp_path / "gunicorn.log", "w+b") as log:
        sock.listen(8)
        process = start_gunicorn(env, sock, log, "-c", str(config), "--workers", "1")
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), log.read().decode()
        started = time.monotonic()
        process.terminate()
        try:
            process.wait(timeout=15)
        finally:
            process.kill()
    assert time.monotonic() - started < 15


def failed_signins(url, email, count):
    """Send `count` signins with a wrong password; return their statuses."""
    body = {"email": email, "password": "wrong-password-42"}
    return [requests.post(f"{url}/auth/signin", json=body).status_code for _ in range(count)]


def test_rate_limits_fall_back_to_memory_when_redis_is_down(tmp_path):
    """With Redis unreachable, signin still works and limits still hold per instance."""
    env = service_environment(
        tmp_path,
        RATELIMIT_ENABLED="1",
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:9",
        RATELIMIT_SIGNIN_PER_EMAIL="3 per minute",
    )
    migrated(env)
    with gunicorn(env, workers=1) as url:
        body = {"email": "down@example.com", "password": PASSWORD}
        assert requests.post(f"{url}/auth/signup", json=body).status_code == 201
        assert requests.post(f"{url}/auth/signin", json=body).status_code == 200
        assert failed_signins(url, "down@example.com", 4) == [401, 401, 401, 429]


def test_redis_counters_are_shared_between_instances(tmp_path):
    """Two instances on one Redis count one account's failures together, under their prefix."""
    prefix = redis_key_prefix()
    env = service_environment(
        tmp_path,
        RATELIMIT_ENABLED="1",
        RATELIMIT_STORAGE_URI=redis_server(),
        RATELIMIT_KEY_PREFIX=prefix,
        RATELIMIT_SIGNIN_PER_EMAIL="4 per minute",
    )
    migrated(env)
    email = f"{secrets.token_hex(8)}@example.com"
    with gunicorn(env) as first, gunicorn(env) as second:
        assert failed_signins(first, email, 2) + failed_signins(second, email, 2) == [401] * 4
        assert failed_signins(first, email, 1) == [429]
        assert failed_signins(second, email, 1) == [429]
    assert redis.Redis.from_url(env["RATELIMIT_STORAGE_URI"]).keys(f"*/{prefix}/*")


def test_examples_curl_script_runs_against_gunicorn(server):
    """examples/curl.sh walks the whole flow and every status is as it expects."""
    url, env = server
    created = flask_cli(
        env,
        "users",
        "create",
        "curl-admin@example.com",
        "--admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    script = subprocess.run(
        ["bash", str(ROOT / "examples" / "curl.sh")],
        env={
            **env,
            "BASE_URL": url,
            "ADMIN_EMAIL": "curl-admin@example.com",
            "ADMIN_PASSWORD": PASSWORD,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stdout + script.stderr
    assert "all steps answered as expected" in script.stdout


def test_metrics_add_up_every_worker(server):
    """/metrics counts requests served by any of the two workers, in Prometheus format."""
    from prometheus_client.parser import text_string_to_metric_families

    url, _ = server

    def healthz_count():
        text = requests.get(f"{url}/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "authsvc_requests_total"
            and sample.labels["endpoint"] == "service.healthz"
        )

    before = healthz_count()
    for _ in range(20):
        requests.get(f"{url}/healthz")
    assert healthz_count() - before == 20


def wait_for(condition, seconds=15):
    """Poll a condition until it holds or time runs out; return its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return value


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_another_service_verifies_tokens_from_the_jwks_alone(tmp_path, algorithm):
    """PyJWKClient verifies tokens before and after a rotation; a retired key's fail."""
    env = service_environment(
        tmp_path, JWT_ALGORITHM=algorithm, JWT_ISSUER="https://auth.test", JWT_AUDIENCE="api"
    )
    migrated(env)
    assert flask_cli(env, "keys", "rotate").returncode == 0
    body = {"email": "jwks@example.com", "password": PASSWORD}
    with gunicorn(env) as url:

        def verified(token):
            client = jwt.PyJWKClient(f"{url}/.well-known/jwks.json", cache_jwk_set=False)
            key = client.get_signing_key_from_jwt(token)
            return jwt.decode(
                token, key.key, algorithms=[algorithm], audience="api", issuer="https://auth.test"
            )

        old = requests.post(f"{url}/auth/signup", json=body).json()["accessToken"]
        assert verified(old)["email"] == "jwks@example.com"
        old_kid = jwt.get_unverified_header(old)["kid"]
        assert flask_cli(env, "keys", "rotate").returncode == 0

        def new_token():
            token = requests.post(f"{url}/auth/signin", json=body).json()["accessToken"]
            return token if jwt.get_unverified_header(token)["kid"] != old_kid else None

        new = wait_for(new_token)
        assert new and verified(new) and verified(old)
        assert flask_cli(env, "keys", "retire", old_kid).returncode == 0
        refused = wait_for(
            lambda: requests.get(f"{url}/users/me", headers=bearer(old)).status_code == 401
        )
        assert refused
        with pytest.raises(jwt.PyJWKClientError):
            verified(old)
        assert requests.get(f"{url}/users/me", headers=bearer(new)).status_code == 200


def raw_request(url, data):
    """Send raw bytes to the server; return the status line and the headers' block."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_requests_gunicorn_cannot_parse_get_problems_too(server, data):
    """Even a malformed request, refused by gunicorn itself, is answered with problem+json."""
    url, _ = server
    head, body = raw_request(url, data)
    status = int(head.split()[1])
    assert 400 <= status < 500
    assert "Content-Type: application/problem+json" in head
    assert re.search(r"^X-Request-ID: [0-9a-f]{32}$", head, re.MULTILINE)
    assert json.loads(body)["status"] == status


@pytest.mark.parametrize("chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"])
def test_malformed_chunked_body_is_400(server, chunks):
    """A chunked body that does not decode is a 400 problem, not a 500."""
    url, _ = server
    head, body = raw_request(
        url,
        b"POST /auth/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert head.split()[1] == "400" and "Content-Type: application/problem+json" in head
    assert json.loads(body)["code"] == "bad_request"


def test_long_urls_reach_the_app(server):
    """A long but well-formed URL gets the app's 404 problem."""
    url, _ = server
    response = requests.get(f"{url}/{'a' * 6000}")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
