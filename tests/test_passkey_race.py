"""Racing passkey ceremonies against a real gunicorn (two workers), on both databases.

Each race sends two (or fifty) requests at once, from threads released by one
barrier, to two worker processes; the database settles who wins: a
challenge's conditional UPDATE, the sign count's conditional UPDATE, the
credential id's unique index. A few rounds each, bounded.
"""

import threading

import pytest
import requests
from authenticator import Authenticator
from conftest import PASSWORD
from live import free_port, gunicorn, service_environment
from passkeyflows import add_passkey, verified_user

ROUNDS = 4
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("passkey_race")]


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    """Run gunicorn with two workers on the test database, its origin http://localhost:PORT."""
    port = free_port()
    env = service_environment(
        tmp_path_factory.mktemp("race"),
        DATABASE_URL=database_url,
        PUBLIC_URL=f"http://localhost:{port}",
        WEBAUTHN_TIMEOUT="60",
        RATELIMIT_SIGNIN_PER_ADDRESS="1000 per minute",
    )
    with gunicorn(env, workers=2, port=port) as url:
        yield url


def at_once(*calls):
    """Run each call in its own thread, released together; return their results in order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(index, call):
        barrier.wait(timeout=10)
        results[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def options(server):
    """Ask the server for sign-in options."""
    return requests.post(f"{server}/auth/passkey/options", timeout=10).json()


def answer(server, challenge_id, assertion):
    """Return a function that posts an assertion and gives its status."""
    body = {"challengeId": challenge_id, "credential": assertion}
    return lambda: requests.post(f"{server}/auth/passkey", json=body, timeout=30).status_code


def origin_of(server):
    """Return the origin a browser on the server's PUBLIC_URL would report."""
    return server.replace("127.0.0.1", "localhost")


def test_the_same_assertion_twice_at_once_signs_in_once(app, password_hash, server):
    """Same signature, same counter, same challenge: exactly one sign-in."""
    key = Authenticator()
    add_passkey(app, verified_user(app, password_hash), key)
    for _ in range(ROUNDS):
        offered = options(server)
        assertion = key.get(offered["publicKey"], origin=origin_of(server))
        racer = answer(server, offered["challengeId"], assertion)
        assert sorted(at_once(racer, racer)) == [200, 401]


def test_one_assertion_fifty_times_at_once_signs_in_once(app, password_hash, server):
    """Fifty copies of one assertion, released together over two workers: one sign-in."""
    key = Authenticator()
    add_passkey(app, verified_user(app, password_hash), key)
    offered = options(server)
    assertion = key.get(offered["publicKey"], origin=origin_of(server))
    racer = answer(server, offered["challengeId"], assertion)
    assert sorted(at_once(*[racer] * 50)) == [200] + [401] * 49


def test_a_cloned_count_on_two_challenges_at_once_signs_in_once(app, password_hash, server):
    """Two assertions with the same counter over two challenges (a clone): one sign-in."""
    key = Authenticator()
    add_passkey(app, verified_user(app, password_hash), key)
    for _ in range(ROUNDS):
        first, second = options(server), options(server)
        counter = key.counter + 1
        racers = [
            answer(
                server,
                offered["challengeId"],
                key.get(offered["publicKey"], origin=origin_of(server), counter=counter),
            )
            for offered in (first, second)
        ]
        assert sorted(at_once(*racers)) == [200, 401]


def register_answer(server, email, key):
    """Sign in, ask for registration options, let the key answer; return the poster."""
    tokens = requests.post(
        f"{server}/auth/signin", json={"email": email, "password": PASSWORD}, timeout=10
    ).json()
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    offered = requests.post(f"{server}/users/me/passkeys/options", headers=headers, timeout=10)
    credential = key.create(offered.json()["publicKey"], origin=origin_of(server))
    body = {"challengeId": offered.json()["challengeId"], "credential": credential}
    return lambda: (
        requests.post(
            f"{server}/users/me/passkeys", json=body, headers=headers, timeout=30
        ).status_code
    )


def test_one_credential_id_registered_by_two_users_at_once_goes_to_one(app, password_hash, server):
    """The unique index settles it: one 201, one 409 passkey_taken."""
    for round_number in range(ROUNDS):
        emails = [f"{who}-{round_number}@example.com" for who in ("ada", "lin")]
        for email in emails:
            verified_user(app, password_hash, email=email)
        key = Authenticator()
        racers = [
            register_answer(server, email, Authenticator(credential_id=key.credential_id))
            for email in emails
        ]
        assert sorted(at_once(*racers)) == [201, 409]
