"""The measured scenarios: what each sends, built just before it runs."""

import base64
import functools
import http.client
import json
import random
import secrets
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from authsvc.schemas import encode_cursor
from bench.database import ADMIN_EMAIL, PASSWORD, REFUSED_EMAIL, time_checkpw, user_email

JSON_HEADERS = {"Content-Type": "application/json"}
FORM_TYPE = "application/x-www-form-urlencoded"
PAGE = 50
VARIANTS = 1000  # distinct paths or bodies a scenario picks from at random
CHAINS_PER_CONNECTION = 2


def post(run, path, body, headers):
    """Send one POST to the service and return its status and body."""
    parts = urllib.parse.urlsplit(run.service.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def sign_in(run, email):
    """Sign a seeded user in over HTTP and return the answer: its id and tokens."""
    body = json.dumps({"email": email, "password": PASSWORD})
    status, answer = post(run, "/auth/signin", body, JSON_HEADERS)
    if status != 200:
        raise RuntimeError(f"signin of {email}: {status} {answer[:300]!r}")
    return json.loads(answer)


def bare(run):
    """GET / on the bare Flask app."""
    return {"method": "GET", "paths": ["/"], "headers": {}}


def me(run):
    """GET /users/me with one user's access token."""
    token = sign_in(run, user_email(1))["accessToken"]
    return {
        "method": "GET",
        "paths": ["/users/me"],
        "headers": {"Authorization": f"Bearer {token}"},
    }


def introspect(run):
    """POST /oauth/introspect: a registered service asks about one user's live access token.

    One request is checked before the load: the answer must say active, so
    that the load measures the whole path (client, token, session).
    """
    token = sign_in(run, user_email(1))["accessToken"]
    client_id, client_secret = run.client
    pair = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    headers = {"Authorization": f"Basic {pair}", "Content-Type": FORM_TYPE}
    body = f"token={token}"
    status, answer = post(run, "/oauth/introspect", body, headers)
    if status != 200 or not json.loads(answer).get("active"):
        raise RuntimeError(f"introspection: {status} {answer[:300]!r}")
    return {"method": "POST", "paths": ["/oauth/introspect"], "headers": headers, "bodies": [body]}


def refused(run):
    """POST /auth/signin with a wrong password at one account, refused with 429.

    The benchmark's RATELIMIT_SIGNIN_PER_EMAIL lets one failure a worker
    through, during the warm-up (a bcrypt check each); then every request is
    refused: validated, checked against the limits, counted, answered.
    """
    body = json.dumps({"email": REFUSED_EMAIL, "password": "not-" + PASSWORD})
    return {
        "method": "POST",
        "paths": ["/auth/signin"],
        "headers": JSON_HEADERS,
        "bodies": [body],
        "expect": 429,
    }


def users(run):
    """GET /users?limit=50 as the admin, from cursors spread over every seeded user."""
    rng = random.Random(1)
    last_full_page = run.options.users + 1 - PAGE  # user N has id N + 1
    cursors = [encode_cursor(rng.randint(1, last_full_page)) for _ in range(VARIANTS)]
    token = sign_in(run, ADMIN_EMAIL)["accessToken"]
    return {
        "method": "GET",
        "paths": [f"/users?limit={PAGE}&cursor={cursor}" for cursor in cursors],
        "headers": {"Authorization": f"Bearer {token}"},
    }


def refresh(run):
    """POST /auth/refresh along chains of rotations, one session per chain.

    Every answer's refresh token is the next request's, so no token is sent
    twice and every request rotates (a retry would get its token back).
    """
    chains = CHAINS_PER_CONNECTION * run.options.connections
    emails = [user_email(number) for number in range(1, chains + 1)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        tokens = [
            document["refreshToken"]
            for document in pool.map(functools.partial(sign_in, run), emails)
        ]
    return {"method": "POST", "paths": ["/auth/refresh"], "headers": {}, "tokens": tokens}


def signin(run):
    """POST /auth/signin as seeded users picked at random: a bcrypt check each.

    One bcrypt check is timed here, just before the load, for the bound.
    """
    run.checkpw_seconds = time_checkpw(run.password_hash)
    rng = random.Random(2)
    emails = (user_email(rng.randint(1, run.options.users)) for _ in range(VARIANTS))
    bodies = [json.dumps({"email": email, "password": PASSWORD}) for email in emails]
    return {"method": "POST", "paths": ["/auth/signin"], "headers": JSON_HEADERS, "bodies": bodies}


def signup(run):
    """POST /auth/signup with a new email on every request: a bcrypt hash each."""
    email = f"signup-{secrets.token_hex(4)}-%d-%d@example.com"
    body = json.dumps({"email": email, "password": PASSWORD})
    return {
        "method": "POST",
        "paths": ["/auth/signup"],
        "headers": JSON_HEADERS,
        "unique_body": body,
    }


class Scenario(NamedTuple):
    """A measured scenario: its key, label, target server, builder and warm-up."""

    key: str
    label: str
    server: str
    build: object
    warm_up: bool


# The bare app runs just before and just after /users/me, so that the ratio
# of the two compares like with like on a machine whose load drifts;
# introspection, measured against /users/me, and the refusals follow at once.
SCENARIOS = [
    Scenario("bare", "GET / (bare Flask)", "bare", bare, True),
    Scenario("me", "GET /users/me", "service", me, True),
    Scenario("bare_again", "GET / (bare Flask, again)", "bare", bare, False),
    Scenario("introspect", "POST /oauth/introspect", "service", introspect, True),
    Scenario("refused", "POST /auth/signin, 429", "service", refused, True),
    Scenario("users", f"GET /users?limit={PAGE}", "service", users, True),
    Scenario("refresh", "POST /auth/refresh", "service", refresh, False),
    Scenario("signin", "POST /auth/signin", "service", signin, False),
    Scenario("signup", "POST /auth/signup", "service", signup, False),
]
