"""Rate limits: per address, per email, per session; in memory and in Redis."""

import hashlib
import uuid
from collections import Counter

import pytest
import redis
import sqlalchemy as sa
from conftest import PASSWORD, bearer, redis_server, settings

from authsvc import create_app
from authsvc.extensions import db
from authsvc.limits import named_limit
from authsvc.models import AuthEvent

WRONG = "wrong-password-42"


@pytest.fixture
def limited(database_url):
    """Return a factory of clients of a rate-limited app with tight limits."""

    def make(**extra):
        config = {
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            "RATELIMIT_SIGNIN_PER_ADDRESS": "100 per minute",
            "RATELIMIT_SIGNIN_PER_EMAIL": "3 per minute",
            "RATELIMIT_SIGNUP_PER_ADDRESS": "100 per minute",
            "RATELIMIT_REFRESH_PER_SESSION": "100 per minute",
            **extra,
        }
        return create_app(settings(database_url, **config)).test_client()

    return make


def signin(client, email="user@example.com", password=WRONG, address="127.0.0.1"):
    """Attempt a signin from an address."""
    return client.post(
        "/auth/signin",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_failed_signins_per_email_are_limited(auth, limited):
    """After the limit of failures on one account, even the right password waits."""
    auth.create_user()
    client = limited()
    assert [signin(client).status_code for _ in range(3)] == [401] * 3
    refused = signin(client, password=PASSWORD)
    assert refused.status_code == 429
    assert refused.content_type == "application/problem+json"
    assert refused.json["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 61


def test_a_breach_is_audited_once_per_key_and_window(app, auth, limited):
    """A burst of refusals writes one rate_limited row, not one per 429."""
    auth.create_user()
    client = limited()
    assert [signin(client).status_code for _ in range(8)] == [401] * 3 + [429] * 5
    with app.app_context():
        events = Counter(db.session.scalars(sa.select(AuthEvent.event)))
    assert events == {"signin_failed": 3, "rate_limited": 1}


def test_a_shared_named_limit_counts_its_refusals_by_name(database_url, app):
    """A limit shared by several endpoints is one bucket, and its 429s carry its name."""
    config = {"RATELIMIT_ENABLED": True, "RATELIMIT_PASSWORD_PER_USER": "1 per minute"}
    limited = create_app(settings(database_url, **config))
    key = uuid.uuid4().hex
    shared = named_limit("password_per_user", shared_scope="probe", key_func=lambda: key)
    for path in ("/probe-a", "/probe-b"):
        limited.add_url_rule(path, path, shared(lambda: "ok"))
    client = limited.test_client()
    assert [client.get(path).status_code for path in ("/probe-a", "/probe-b")] == [200, 429]
    assert 'authsvc_rate_limited_total{limit="password_per_user"}' in client.get(
        "/metrics"
    ).get_data(as_text=True)


def test_refusals_need_no_database(tmp_path):
    """With the database unreachable, a refused request is still a 429, not a 503."""
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'authsvc.db'}"
    config = {"RATELIMIT_ENABLED": True, "RATELIMIT_SIGNUP_PER_ADDRESS": "1 per minute"}
    client = create_app(settings(missing, **config)).test_client()
    body = {"email": "new@example.com", "password": PASSWORD}
    assert client.post("/auth/signup", json=body).status_code == 503
    assert [client.post("/auth/signup", json=body).status_code for _ in range(3)] == [429] * 3


def test_email_limit_holds_across_addresses(auth, limited):
    """A botnet spread over many addresses still hits the per-email limit."""
    auth.create_user()
    client = limited()
    for i in range(3):
        assert signin(client, address=f"10.0.0.{i}").status_code == 401
    assert signin(client, address="10.0.0.99").status_code == 429


def test_email_limit_leaves_other_accounts_alone(auth, limited):
    """Filling one account's bucket does not block another account."""
    auth.create_user()
    auth.create_user("other@example.com")
    client = limited()
    for _ in range(4):
        signin(client)
    assert signin(client, "other@example.com", PASSWORD).status_code == 200


def test_successful_signins_do_not_fill_the_bucket(auth, limited):
    """Only failures count: the real user signing in often is never limited."""
    auth.create_user()
    client = limited()
    assert [signin(client, password=PASSWORD).status_code for _ in range(5)] == [200] * 5


def test_failed_signins_per_address_are_limited(auth, limited):
    """One address trying many accounts is stopped; another address is not."""
    client = limited(RATELIMIT_SIGNIN_PER_ADDRESS="3 per minute")
    for i in range(3):
        assert signin(client, f"u{i}@example.com").status_code == 401
    assert signin(client, "u9@example.com").status_code == 429
    assert signin(client, "u9@example.com", address="10.1.1.1").status_code == 401


def test_signups_per_address_are_limited(limited):
    """Mass account creation from one address is stopped."""
    client = limited(RATELIMIT_SIGNUP_PER_ADDRESS="2 per minute")
    statuses = [
        client.post(
            "/auth/signup", json={"email": f"n{i}@example.com", "password": PASSWORD}
        ).status_code
        for i in range(3)
    ]
    assert statuses == [201, 201, 429]


def test_refreshes_per_session_are_limited(limited):
    """One session refreshing in a loop is stopped; another session is not."""
    client = limited(RATELIMIT_REFRESH_PER_SESSION="2 per minute")
    body = {"email": "loop@example.com", "password": PASSWORD}
    token = client.post("/auth/signup", json=body).json["refreshToken"]
    for _ in range(2):
        token = client.post("/auth/refresh", headers=bearer(token)).json["refreshToken"]
    assert client.post("/auth/refresh", headers=bearer(token)).status_code == 429
    other = client.post("/auth/signin", json=body).json["refreshToken"]
    assert client.post("/auth/refresh", headers=bearer(other)).status_code == 200


def test_limits_can_be_turned_off(auth, limited):
    """RATELIMIT_ENABLED=0 turns every limit off."""
    auth.create_user()
    client = limited(RATELIMIT_ENABLED=False)
    assert {signin(client).status_code for _ in range(6)} == {401}


def test_forwarded_for_is_ignored_by_default(auth, limited):
    """Without trusted proxies, X-Forwarded-For cannot buy an attacker new buckets."""
    client = limited(RATELIMIT_SIGNIN_PER_ADDRESS="2 per minute")
    for i in range(2):
        client.post(
            "/auth/signin",
            json={"email": f"a{i}@example.com", "password": WRONG},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        )
    spoofed = client.post(
        "/auth/signin",
        json={"email": "a9@example.com", "password": WRONG},
        headers={"X-Forwarded-For": "203.0.113.50"},
    )
    assert spoofed.status_code == 429


def test_forwarded_for_is_used_behind_a_trusted_proxy(limited):
    """With TRUSTED_PROXIES=1, the address the proxy saw is the one limited."""
    client = limited(RATELIMIT_SIGNIN_PER_ADDRESS="2 per minute", TRUSTED_PROXIES=1)
    for i in range(2):
        client.post(
            "/auth/signin",
            json={"email": f"b{i}@example.com", "password": WRONG},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
    other = client.post(
        "/auth/signin",
        json={"email": "b9@example.com", "password": WRONG},
        headers={"X-Forwarded-For": "203.0.113.8"},
    )
    assert other.status_code == 401


@pytest.fixture
def redis_url():
    """Return the URL of a reachable Redis, or skip (fail under CI=true)."""
    return redis_server()


def test_counters_live_in_redis(limited, redis_url):
    """With a redis:// URI the counters are Redis keys, naming a digest of the email."""
    email = f"{uuid.uuid4().hex}@example.com"
    client = limited(RATELIMIT_STORAGE_URI=redis_url)
    for _ in range(3):
        assert signin(client, email).status_code == 401
    assert signin(client, email).status_code == 429
    digest = hashlib.sha256(email.encode()).hexdigest()
    assert redis.Redis.from_url(redis_url).keys(f"*email:{digest}*")
    assert not redis.Redis.from_url(redis_url).keys(f"*{email}*")
