"""Two gunicorn instances on one PostgreSQL and one Redis behave as one service.

A mixed load (signup, signin, refresh, /users/me, signout) is spread over both
instances for about a minute (SCALE_TEST_SECONDS), then the cross-instance
guarantees are checked. Needs PostgreSQL and Redis: skipped without them,
required under CI=true.
"""

import os
import random
import secrets
import threading
import time
from collections import Counter

import pytest
import requests
import sqlalchemy as sa
from conftest import postgres_database, redis_key_prefix, redis_server
from live import gunicorn, migrated, service_environment

PASSWORD = "violet-kettle-orbit-42"
GRACE = 2
LOAD_SECONDS = float(os.environ.get("SCALE_TEST_SECONDS", "60"))
LOAD_THREADS = 6
MAX_ROUNDS_PER_THREAD = 2000

pytestmark = [pytest.mark.e2e, pytest.mark.starts_first, pytest.mark.xdist_group("scale")]


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    """Start two instances on one fresh PostgreSQL database and one Redis."""
    redis_url = redis_server()
    databases = postgres_database()
    url = next(databases)
    env = service_environment(
        tmp_path_factory.mktemp("scale"),
        DATABASE_URL=url,
        RATELIMIT_ENABLED="1",
        RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_KEY_PREFIX=redis_key_prefix(),
        RATELIMIT_SIGNIN_PER_EMAIL="5 per minute",
        RATELIMIT_SIGNIN_PER_ADDRESS="100000 per minute",
        RATELIMIT_SIGNUP_PER_ADDRESS="100000 per minute",
        RATELIMIT_REFRESH_PER_SESSION="100000 per minute",
        REFRESH_REUSE_GRACE=str(GRACE),
    )
    migrated(env)
    with gunicorn(env) as first, gunicorn(env) as second:
        yield (first, second), url
    next(databases, None)


def bearer(token):
    """Return the Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


class Load:
    """A bounded mixed load over both instances, and what it saw."""

    def __init__(self, urls):
        self.urls, self.statuses, self.surprises = urls, Counter(), []
        self.created, self.lock = [], threading.Lock()

    def call(self, expected, method, path, **kwargs):
        """Send a request to a random instance; note its status and any surprise."""
        response = requests.request(method, random.choice(self.urls) + path, timeout=30, **kwargs)
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code != expected:
                self.surprises.append((method, path, expected, response.status_code))
        return response

    def round(self, email):
        """One user's life: signup, signin, me, refresh, me, signout, refused."""
        body = {"email": email, "password": PASSWORD}
        if self.call(201, "POST", "/auth/signup", json=body).status_code == 201:
            with self.lock:
                self.created.append(email)
        tokens = self.call(200, "POST", "/auth/signin", json=body).json()
        self.call(200, "GET", "/users/me", headers=bearer(tokens["accessToken"]))
        tokens = self.call(
            200, "POST", "/auth/refresh", headers=bearer(tokens["refreshToken"])
        ).json()
        self.call(200, "GET", "/users/me", headers=bearer(tokens["accessToken"]))
        self.call(204, "POST", "/auth/signout", headers=bearer(tokens["accessToken"]))
        self.call(401, "GET", "/users/me", headers=bearer(tokens["accessToken"]))

    def run(self, seconds):
        """Run rounds from several threads until time or the round budget runs out."""
        deadline = time.monotonic() + seconds

        def worker(number):
            for round_number in range(MAX_ROUNDS_PER_THREAD):
                if time.monotonic() > deadline:
                    return
                self.round(f"load-{number}-{round_number}-{secrets.token_hex(3)}@example.com")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)


@pytest.fixture(scope="module")
def load(instances):
    """Run the mixed load once for the module and return what it saw."""
    urls, _ = instances
    load = Load(urls)
    load.run(LOAD_SECONDS)
    return load


def test_mixed_load_has_no_server_errors(load):
    """A minute of mixed load over both instances: no 5xx, no surprise at all."""
    assert sum(load.statuses.values()) > 100
    assert not [status for status in load.statuses if status >= 500]
    assert load.surprises == []


def test_every_user_created_exists_once(load, instances):
    """Each 201 signup is one row; nobody twice, nobody lost."""
    _, url = instances
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        emails = (
            connection.execute(sa.text("SELECT email FROM users WHERE email LIKE 'load-%'"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert sorted(emails) == sorted(load.created)


def test_concurrent_signups_of_one_email_across_instances(instances):
    """The same email signed up on both instances at once: one 201, the rest 409."""
    (first, second), _ = instances
    body = {"email": f"twice-{secrets.token_hex(4)}@example.com", "password": PASSWORD}
    barrier, statuses = threading.Barrier(8), []

    def signup(url):
        barrier.wait()
        statuses.append(requests.post(f"{url}/auth/signup", json=body, timeout=30).status_code)

    threads = [threading.Thread(target=signup, args=(url,)) for url in [first, second] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201] + [409] * 7


def test_signout_on_one_instance_is_refused_on_the_other_at_once(instances):
    """A session closed on instance A is refused on instance B immediately."""
    (first, second), _ = instances
    body = {"email": f"out-{secrets.token_hex(4)}@example.com", "password": PASSWORD}
    tokens = requests.post(f"{first}/auth/signup", json=body).json()
    assert (
        requests.get(f"{second}/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    )
    assert (
        requests.post(f"{first}/auth/signout", headers=bearer(tokens["accessToken"])).status_code
        == 204
    )
    assert (
        requests.get(f"{second}/users/me", headers=bearer(tokens["accessToken"])).status_code == 401
    )
    assert (
        requests.post(f"{second}/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code
        == 401
    )


def test_rotated_refresh_token_is_reuse_on_the_other_instance(instances):
    """After the retry window, a rotated token replayed on B revokes the session on both."""
    (first, second), _ = instances
    body = {"email": f"reuse-{secrets.token_hex(4)}@example.com", "password": PASSWORD}
    old = requests.post(f"{first}/auth/signup", json=body).json()
    new = requests.post(f"{first}/auth/refresh", headers=bearer(old["refreshToken"])).json()
    retry = requests.post(f"{second}/auth/refresh", headers=bearer(old["refreshToken"])).json()
    assert retry["refreshToken"] == new["refreshToken"]
    time.sleep(GRACE + 1)
    assert (
        requests.post(f"{second}/auth/refresh", headers=bearer(old["refreshToken"])).status_code
        == 401
    )
    assert (
        requests.post(f"{first}/auth/refresh", headers=bearer(new["refreshToken"])).status_code
        == 401
    )
    assert requests.get(f"{first}/users/me", headers=bearer(new["accessToken"])).status_code == 401


def test_rate_limit_counters_are_shared(instances):
    """Failed signins on one account count together, whichever instance answers."""
    (first, second), _ = instances
    email = f"limited-{secrets.token_hex(4)}@example.com"
    wrong = {"email": email, "password": "wrong-password-42"}
    statuses = [
        requests.post(f"{url}/auth/signin", json=wrong).status_code for url in [first, second] * 3
    ]
    assert statuses == [401] * 5 + [429]
    assert requests.post(f"{first}/auth/signin", json=wrong).status_code == 429
