"""What one sign-in with a provider costs authsvc itself, the provider's round trips aside.

Runs the service in-process against tests/standins.py's provider on
loopback (its server threads are not counted), on SQLite or on the database
DATABASE_URL names (an empty one: the migrations run), and reports per step
of a sign-in the median of:

- SQL statements authsvc sent (an SQLAlchemy before_cursor_execute listener);
- CPU time of the request's own thread (time.thread_time: the provider's
  threads and the waits on its answers are not in it);
- wall time less the time spent in requests to the provider.

    .venv/bin/python -m bench.oauth_cost      # SQLite in a temporary folder
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/EMPTY_DB \
      .venv/bin/python -m bench.oauth_cost    # PostgreSQL, a database of its own

A sign-in that is a first one makes the account (rule 4); a returning one
finds the identity (rule 1). ROUNDS (default 50) sign-ins of each kind.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
import sqlalchemy as sa
from flask_migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from oauthhelp import PUBLIC_URL, authorize_query, pkce, provider_settings
from standins import HostileProvider

from authsvc import create_app
from authsvc.extensions import db

ROUNDS = int(os.environ.get("ROUNDS", "50"))


class Meter:
    """Count statements and time to the provider while a step runs."""

    def __init__(self, engine):
        self.statements, self.provider_seconds = 0, 0.0
        sa.event.listen(engine, "before_cursor_execute", self.count)
        original = requests.Session.send

        def timed_send(session, request, **kwargs):
            started = time.perf_counter()
            try:
                return original(session, request, **kwargs)
            finally:
                self.provider_seconds += time.perf_counter() - started

        requests.Session.send = timed_send

    def count(self, *args):
        """Count one statement."""
        self.statements += 1

    def measure(self, step):
        """Run a step; return its result, statements, thread CPU and own wall time (ms)."""
        self.statements, self.provider_seconds = 0, 0.0
        cpu, wall = time.thread_time(), time.perf_counter()
        result = step()
        wall = time.perf_counter() - wall - self.provider_seconds
        return result, self.statements, (time.thread_time() - cpu) * 1000, wall * 1000


def sign_in(client, provider):
    """Return the three steps of one sign-in: authorize, callback, token exchange."""
    verifier, challenge = pkce()
    query, headers = authorize_query(challenge), {"Accept": "application/json"}
    state = {}

    def authorize():
        state["url"] = client.get(
            "/auth/oauth/corp/authorize", query_string=query, headers=headers
        ).json["url"]

    def callback():
        location = requests.get(state["url"], allow_redirects=False, timeout=10).headers["Location"]
        answer = client.get(location.removeprefix(PUBLIC_URL)).headers["Location"]
        state["code"] = parse_qs(urlsplit(answer).query)["code"][0]

    def token():
        body = {"code": state["code"], "codeVerifier": verifier}
        assert client.post("/auth/oauth/token", json=body).status_code == 200

    return [("authorize", authorize), ("callback", callback), ("token", token)]


def main():
    """Measure ROUNDS first and ROUNDS returning sign-ins; print the medians."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    provider = HostileProvider()
    app = create_app(provider_settings(url, provider.url, TESTING=False))
    with app.app_context():
        upgrade()
        meter, client, results = Meter(db.engine), app.test_client(), {}
        for kind in ("first", "returning"):
            for round_ in range(ROUNDS):
                provider.subject = f"subject-{round_}"
                provider.email = f"user{round_}@example.com"
                for name, step in sign_in(client, provider):
                    _, *numbers = meter.measure(step)
                    results.setdefault((kind, name), []).append(numbers)
    provider.close()
    print(f"{ROUNDS} sign-ins of each kind on {sa.make_url(url).get_backend_name()}; medians:")
    print(f"{'sign-in':10} {'step':10} {'statements':>10} {'cpu ms':>8} {'own wall ms':>12}")
    for (kind, name), rows in results.items():
        statements, cpu, wall = (statistics.median(column) for column in zip(*rows, strict=True))
        print(f"{kind:10} {name:10} {statements:>10.0f} {cpu:>8.2f} {wall:>12.2f}")


if __name__ == "__main__":
    main()
