"""Limits hold under concurrency: 50 requests at once get no more checks than a limit's count.

Each test releases 50 threads through one barrier against a real service,
and counts how many requests were checked (a wrong code or password
answered as such) against how many were refused (429, or a dead mfaToken)
without a check. The service runs two ways, on SQLite and on PostgreSQL:

- two gunicorn instances of three workers sharing Redis (across processes
  and instances);
- one gunicorn worker with sixteen threads counting in memory (within a
  process).

TRUSTED_PROXIES=1 lets each test pick its own client addresses (and so its
own per-address buckets) with X-Forwarded-For; user ids start at a random
point in each database, so per-user keys in Redis are this run's own.
"""

import secrets
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pyotp
import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD, bearer, postgres_database, redis_server
from live import gunicorn, migrated, service_environment

pytestmark = pytest.mark.e2e

AT_ONCE = 50
LIMITS = {
    "RATELIMIT_SIGNIN_PER_EMAIL": "10 per minute",
    "RATELIMIT_SIGNIN_PER_ADDRESS": "10 per minute",
    "RATELIMIT_MFA_PER_USER": "8 per minute",
    "RATELIMIT_EMAIL_CHANGE_PER_USER": "5 per hour",
    "RATELIMIT_SIGNUP_PER_ADDRESS": "100000 per minute",
    "RATELIMIT_PASSWORD_PER_USER": "100000 per minute",
    "RATELIMIT_MAIL_PER_EMAIL": "100000 per minute",
}
WRONG = "wrong-password-42"


@pytest.fixture(
    scope="module",
    # The services of each database are started once, on one xdist worker.
    params=[
        pytest.param("sqlite", marks=pytest.mark.xdist_group("limits_sqlite")),
        pytest.param(
            "postgres", marks=[pytest.mark.postgres, pytest.mark.xdist_group("limits_postgres")]
        ),
    ],
)
def database(request, tmp_path_factory, smtp):
    """Yield the environment of a fresh database of each kind, its user ids starting at random."""
    folder = tmp_path_factory.mktemp("concurrent")
    databases = iter([None]) if request.param == "sqlite" else postgres_database()
    url = next(databases) or f"sqlite:///{folder / 'authsvc.db'}"
    env = service_environment(
        folder, DATABASE_URL=url, MAIL_URL=smtp.url, TRUSTED_PROXIES="1", **LIMITS
    )
    migrated(env)
    start_user_ids_at_random(url)
    yield env
    next(databases, None)


def start_user_ids_at_random(url):
    """Make the next user id a random large number, so that per-user limit keys are unique."""
    start = secrets.randbelow(10**9) + 10**6
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": start}
            )
        else:
            connection.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'users'"))
            connection.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('users', :n)"),
                {"n": start},
            )
    engine.dispose()


@pytest.fixture(scope="module", params=["redis-pair", "memory-threads"])
def service(request, database):
    """Yield (the URLs to spread requests over, the database URL) for each way of running."""
    if request.param == "redis-pair":
        env = {**database, "RATELIMIT_STORAGE_URI": redis_server()}
        with gunicorn(env, workers=3) as first, gunicorn(env, workers=3) as second:
            yield [first, second], env["DATABASE_URL"]
    else:
        env = {
            **database,
            "RATELIMIT_STORAGE_URI": "memory://",
            "GUNICORN_CMD_ARGS": "--threads 16",
        }
        with gunicorn(env, workers=1) as url:
            yield [url], env["DATABASE_URL"]


def at_once(send, count=AT_ONCE):
    """Call send(i) for every i below count from as many threads, released by one barrier."""
    barrier = Barrier(count)

    def released(i):
        """Wait for every other thread, then send."""
        barrier.wait(timeout=30)
        return send(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(released, range(count), timeout=120))


def post(url, path, body, address, headers=None):
    """POST a JSON body as a client at `address` (behind the one trusted proxy)."""
    headers = {"X-Forwarded-For": address, **(headers or {})}
    return requests.post(url + path, json=body, headers=headers, timeout=30)


def new_address():
    """Return a client address no other test uses."""
    return "10." + ".".join(str(secrets.randbelow(254) + 1) for _ in range(3))


def new_email():
    """Return an address no other test uses."""
    return f"{uuid.uuid4().hex}@example.com"


def tally(responses):
    """Count the answers by status and problem code."""
    return Counter((r.status_code, r.json().get("code") if r.content else None) for r in responses)


def audited(database_url, event, **where):
    """Return how many audit rows of an event match the columns given."""
    engine = sa.create_engine(database_url)
    conditions = " ".join(f"AND {column} = :{column}" for column in where)
    query = sa.text(f"SELECT count(*) FROM auth_events WHERE event = :event {conditions}")
    with engine.connect() as connection:
        count = connection.scalar(query, {"event": event, **where})
    engine.dispose()
    return count


def mfa_user(url, database_url, address):
    """Sign up a user, verify its address, turn TOTP on; return its id, email and authenticator."""
    email = new_email()
    signup = post(url, "/auth/signup", {"email": email, "password": PASSWORD}, address).json()
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE users SET email_verified = true WHERE email = :e"), {"e": email}
        )
    engine.dispose()
    caller = bearer(signup["accessToken"])
    secret = post(url, "/users/me/mfa/totp", {"currentPassword": PASSWORD}, address, caller).json()[
        "secret"
    ]
    authenticator = pyotp.TOTP(secret)
    confirmed = post(
        url, "/users/me/mfa/totp/confirm", {"code": authenticator.now()}, address, caller
    )
    assert confirmed.status_code == 200, confirmed.text
    return signup["id"], email, authenticator


def mfa_token(url, email, address):
    """Sign in with the right password; return the mfaToken of the 403 mfa_required."""
    asked = post(url, "/auth/signin", {"email": email, "password": PASSWORD}, address)
    assert asked.json()["code"] == "mfa_required", asked.text
    return asked.json()["mfaToken"]


def wrong_code(authenticator):
    """Return a six-digit code that no step within the drift accepts."""
    right = {authenticator.at(time.time() + 30 * step) for step in (-1, 0, 1, 2)}
    return next(
        code for code in ("000000", "111111", "222222", "333333", "444444") if code not in right
    )


CHECKED_CODE, DEAD_TOKEN, REFUSED = (
    (401, "invalid_mfa_code"),
    (401, "invalid_mfa_token"),
    (429, "rate_limited"),
)


def test_an_mfa_token_checks_at_most_five_codes_of_fifty_at_once(service):
    """50 wrong codes at once against one mfaToken: 5 checked, the rest refused unchecked."""
    urls, database_url = service
    address = new_address()
    user_id, email, authenticator = mfa_user(urls[0], database_url, address)
    token, code = mfa_token(urls[0], email, address), wrong_code(authenticator)
    body = {"mfaToken": token, "code": code}
    answers = tally(at_once(lambda i: post(urls[i % len(urls)], "/auth/signin/mfa", body, address)))
    assert answers[CHECKED_CODE] == 5, answers
    assert set(answers) <= {CHECKED_CODE, DEAD_TOKEN, REFUSED}, answers
    assert audited(database_url, "mfa_failed", user_id=user_id) == 5


def test_wrong_codes_per_user_hold_over_many_mfa_tokens(service):
    """50 wrong codes at once over 10 mfaTokens of one user: 8 checked (RATELIMIT_MFA_PER_USER)."""
    urls, database_url = service
    address = new_address()
    user_id, email, authenticator = mfa_user(urls[0], database_url, address)
    tokens, code = (
        [mfa_token(urls[0], email, address) for _ in range(10)],
        wrong_code(authenticator),
    )

    def send(i):
        """Send a wrong code with one of the ten tokens."""
        body = {"mfaToken": tokens[i % 10], "code": code}
        return post(urls[i % len(urls)], "/auth/signin/mfa", body, address)

    answers = tally(at_once(send))
    assert answers[CHECKED_CODE] == 8 and set(answers) <= {CHECKED_CODE, REFUSED}, answers
    assert audited(database_url, "mfa_failed", user_id=user_id) == 8


def test_wrong_passwords_for_one_address_hold_at_once(service):
    """50 wrong passwords at once for one account, from 50 addresses: 10 checked."""
    urls, database_url = service
    email = new_email()
    signup = post(urls[0], "/auth/signup", {"email": email, "password": PASSWORD}, new_address())
    body = {"email": email, "password": WRONG}
    answers = tally(
        at_once(lambda i: post(urls[i % len(urls)], "/auth/signin", body, new_address()))
    )
    assert answers == {(401, "invalid_credentials"): 10, REFUSED: AT_ONCE - 10}, answers
    assert audited(database_url, "signin_failed", user_id=signup.json()["id"]) == 10


def test_wrong_passwords_per_client_address_hold_at_once(service):
    """50 wrong passwords at once from one address, for 50 accounts: 10 checked."""
    urls, database_url = service
    address = new_address()

    def send(i):
        """Try a wrong password for an account nobody has."""
        return post(
            urls[i % len(urls)], "/auth/signin", {"email": new_email(), "password": WRONG}, address
        )

    answers = tally(at_once(send))
    assert answers == {(401, "invalid_credentials"): 10, REFUSED: AT_ONCE - 10}, answers
    assert audited(database_url, "signin_failed", ip=address) == 10


def test_email_changes_count_every_request_at_once(service):
    """50 email changes at once (taken addresses and free ones): 5 answered, 45 refused."""
    urls, _ = service
    address, taken = new_address(), new_email()
    post(urls[0], "/auth/signup", {"email": taken, "password": PASSWORD}, address)
    signup = post(urls[0], "/auth/signup", {"email": new_email(), "password": PASSWORD}, address)
    caller = bearer(signup.json()["accessToken"])

    def send(i):
        """Ask to move to a taken address (even i) or a free one (odd i)."""
        body = {"newEmail": taken if i % 2 == 0 else new_email(), "currentPassword": PASSWORD}
        return post(urls[i % len(urls)], "/users/me/email", body, address, caller)

    answers = tally(at_once(send))
    assert answers[REFUSED] == AT_ONCE - 5, answers
    # Which five got in is the scheduler's choice: all five may be taken
    # addresses (for five picked at random, one time in forty, in each of the
    # four ways this runs). Were a 409 not counted, more than
    # five would have been answered.
    assert set(answers) <= {(202, None), (409, "email_taken"), REFUSED}, answers
