"""The database failing for real: crashed, frozen, full, read-only, locked, misnamed; a flood.

Every failure is a 503 `database_unavailable` with Retry-After and one log
line, never a 500 or a traceback; the service comes back by itself and
loses nothing it acknowledged.
"""

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
import requests
import sqlalchemy as sa
from conftest import PASSWORD, POSTGRES_URL, bearer, postgres_database, settings
from faults import fill, private_postgres, resize, small_disk
from flask_migrate import upgrade
from live import ROOT, flask_cli, free_port, gunicorn, migrated, service_environment
from prometheus_client.parser import text_string_to_metric_families

from authsvc import create_app, relay
from authsvc.extensions import db
from authsvc.models import AuthEvent
from authsvc.outages import in_trouble

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("faults")]


@pytest.fixture(scope="module")
def cluster():
    """Yield a private PostgreSQL cluster of this module's own, to crash and freeze."""
    with private_postgres() as cluster:
        yield cluster


def new_database(cluster):
    """Create an empty database in the cluster; return its URL."""
    name = f"authsvc_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return cluster.url(name)


def migrated_app(url, **extra):
    """Return an app on a database it has just migrated."""
    app = create_app(settings(url, **extra))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return app


def signup(client, email):
    """Sign up through a client (test client or requests' module); return the response."""
    return client.post("/auth/signup", json={"email": email, "password": PASSWORD})


def assert_unavailable(response):
    """Check a response (of Flask's test client or of requests) is the database's 503."""
    body = response.json() if callable(response.json) else response.json
    assert response.status_code == 503, body
    assert body["code"] == "database_unavailable"
    assert 1 <= int(response.headers["Retry-After"]) <= 10


class Lines(logging.Handler):
    """Keep the records a logger emits (the 'authsvc.database' one here)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        """Keep a record."""
        self.records.append(record)


@pytest.fixture
def database_log():
    """Yield the records of the one-line database warnings written during a test."""
    lines, logger = Lines(), logging.getLogger("authsvc.database")
    logger.addHandler(lines)
    yield lines.records
    logger.removeHandler(lines)


def assert_one_line_each(records, *errors):
    """Check one single-line warning was logged per failure, without traceback, naming its error."""
    assert len(records) == len(errors)
    for record, error in zip(records, errors, strict=True):
        assert record.exc_info is None and "\n" not in record.getMessage()
        line = json.loads(record.getMessage())
        assert line["event"] == "database_unavailable" and error in line["error"]


class Load:
    """Client threads signing up and in, reading /users/me and refreshing, by phase."""

    def __init__(self, url, threads=3):
        self.url, self.phase, self.stop = url, "before", threading.Event()
        self.answers, self.created, self.errors = [], [], []
        self.threads = [threading.Thread(target=self.client, args=(n,)) for n in range(threads)]

    def send(self, method, path, **options):
        """Send a request; note its phase, status and problem; return the response."""
        phase = self.phase
        response = requests.request(method, f"{self.url}{path}", timeout=15, **options)
        problem = response.json() if response.status_code >= 400 else {}
        retry = response.headers.get("Retry-After")
        self.answers.append((phase, path, response.status_code, problem.get("code"), retry))
        return response

    def client(self, number):
        """Loop over a user's life until told to stop."""
        for counter in range(10_000):
            if self.stop.is_set():
                return
            body = {"email": f"load-{number}-{counter}@example.com", "password": PASSWORD}
            try:
                created = self.send("POST", "/auth/signup", json=body)
                if created.status_code != 201:
                    continue
                self.created.append(body["email"])
                tokens = created.json()
                self.send("POST", "/auth/signin", json=body)
                self.send("GET", "/users/me", headers=bearer(tokens["accessToken"]))
                self.send("POST", "/auth/refresh", headers=bearer(tokens["refreshToken"]))
            except requests.RequestException as error:
                self.errors.append(repr(error))

    def statuses(self, phase=None):
        """Count the answers' statuses, of one phase or of all."""
        return Counter(status for seen, _, status, _, _ in self.answers if phase in (None, seen))


@contextlib.contextmanager
def loaded(url):
    """Run a Load while the block runs; stop and join its threads after."""
    load = Load(url)
    for thread in load.threads:
        thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        for thread in load.threads:
            thread.join(timeout=30)


def wait_until_ready(load, seconds=15):
    """Poll /readyz until it answers 200."""
    deadline = time.monotonic() + seconds
    while load.send("GET", "/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service did not get ready again"
        time.sleep(0.1)


def test_crash_under_load_is_503_then_served_again_without_restart(cluster, tmp_path):
    """A PostgreSQL crash under load: 503s while down, none after, nothing acknowledged lost."""
    env = service_environment(
        tmp_path, DATABASE_URL=new_database(cluster), DATABASE_TIMEOUT="2", RATELIMIT_ENABLED="0"
    )
    migrated(env)
    log = tmp_path / "gunicorn.log"
    with gunicorn(env, log_path=log) as url:
        with loaded(url) as load:
            time.sleep(1.5)
            cluster.crash()
            load.phase = "down"
            time.sleep(0.5)
            assert requests.get(f"{url}/healthz").status_code == 200
            assert_unavailable(load.send("GET", "/readyz"))
            time.sleep(1.5)
            cluster.start()
            load.phase = "recovering"
            wait_until_ready(load)
            load.phase = "after"
            time.sleep(2)
        signins = [signup_then_signin(url, email) for email in load.created]
    lines = log.read_text().splitlines()
    assert not load.errors
    assert set(load.statuses()) <= {200, 201, 503}, load.statuses()
    assert load.statuses("down")[503] > 0 and load.statuses("after")[503] == 0
    assert load.statuses("after")[201] > 0
    assert all(code == "database_unavailable" and retry for *_, code, retry in load.answers if code)
    assert set(signins) == {200}
    assert not [line for line in lines if "Traceback" in line]
    warnings = [line for line in lines if '"event": "database_unavailable"' in line]
    assert len(warnings) == load.statuses()[503]


def test_connections_cut_by_a_restart_are_replaced_unseen(cluster):
    """Pooled connections the server closed while idle never answer: the first request is 200."""
    client = migrated_app(new_database(cluster)).test_client()
    tokens = signup(client, "pooled@example.com").json
    cluster.crash()
    cluster.start()
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    assert signup(client, "after@example.com").status_code == 201


def signup_then_signin(url, email):
    """Sign in as a user whose signup was acknowledged; return the status."""
    body = {"email": email, "password": PASSWORD}
    return requests.post(f"{url}/auth/signin", json=body, timeout=15).status_code


def test_frozen_postgres_costs_a_request_about_the_timeout(cluster, database_log):
    """A frozen server (SIGSTOP) answers nothing: requests end in 503 after the timeout."""
    app = migrated_app(new_database(cluster), DATABASE_TIMEOUT=1)
    client = app.test_client()
    tokens = signup(client, "frozen@example.com").json
    with cluster.frozen():
        for path in ("/users/me", "/users/me"):  # a pooled connection, then a new one
            started = time.monotonic()
            assert_unavailable(client.get(path, headers=bearer(tokens["accessToken"])))
            assert time.monotonic() - started < 4
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    assert_one_line_each(database_log, "did not answer within 2 s", "connection timeout")


def lock_writes(connection, dialect):
    """Begin a transaction holding the lock every signin needs, on a connection of our own."""
    if dialect == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")
        connection.exec_driver_sql("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")


def test_lock_held_past_the_timeout_is_503(database_url, auth, database_log):
    """A signin waiting on a lock longer than DATABASE_TIMEOUT is a 503 (SQLite: locked)."""
    auth.create_user()
    client = create_app(settings(database_url, DATABASE_TIMEOUT=1)).test_client()
    dialect = sa.make_url(database_url).get_backend_name()
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    body = {"email": "user@example.com", "password": PASSWORD}
    with engine.connect() as connection:
        lock_writes(connection, dialect)
        started = time.monotonic()
        assert_unavailable(client.post("/auth/signin", json=body))
        assert time.monotonic() - started < 3
        connection.exec_driver_sql("ROLLBACK")
    engine.dispose()
    assert client.post("/auth/signin", json=body).status_code == 200
    assert_one_line_each(database_log, "locked" if dialect == "sqlite" else "statement timeout")


@pytest.fixture
def shared_postgres():
    """Yield the URL of a throwaway database on the shared PostgreSQL server."""
    yield from postgres_database()


def test_a_connection_lost_after_the_last_query_leaves_the_answer(shared_postgres):
    """The server going away between a request's last query and its end is no 500."""
    app = migrated_app(shared_postgres, TESTING=False, PROPAGATE_EXCEPTIONS=False)
    admin = sa.create_engine(shared_postgres, isolation_level="AUTOCOMMIT")

    def query_then_lose_the_connection():
        pid = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return {"status": "ok"}

    app.add_url_rule("/lose", view_func=query_then_lose_the_connection)
    assert app.test_client().get("/lose").status_code == 200
    assert app.test_client().get("/readyz").status_code == 200
    admin.dispose()


def test_the_relay_outlives_a_connection_lost_mid_pass(shared_postgres, monkeypatch):
    """A relay pass whose connection dies is logged; the relay's loop goes on."""
    app = migrated_app(shared_postgres, MAIL_URL="console://")
    admin = sa.create_engine(shared_postgres, isolation_level="AUTOCOMMIT")

    def pass_that_loses_its_connection(stopping=None):
        pid = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        raise RuntimeError("the pass failed")

    monkeypatch.setattr(relay, "send_pending", pass_that_loses_its_connection)
    relay.relay_of(app).deliver_due()  # raising here would end the relay's thread
    admin.dispose()


def test_read_only_database_refuses_writes_serves_reads(shared_postgres, database_log):
    """default_transaction_read_only: writes and /readyz are 503, reads work, then all is back."""
    tokens = signup(migrated_app(shared_postgres).test_client(), "ro@example.com").json
    name = sa.make_url(shared_postgres).database
    admin = sa.create_engine(shared_postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
        )
    client = create_app(settings(shared_postgres)).test_client()
    assert_unavailable(signup(client, "new@example.com"))
    assert_unavailable(client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])))
    assert_unavailable(client.get("/readyz"))
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    admin.dispose()
    client = create_app(settings(shared_postgres)).test_client()
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 200
    assert signup(client, "new@example.com").status_code == 201
    assert_one_line_each(database_log, *["read-only"] * 3)


def test_read_only_sqlite_file_refuses_writes_serves_reads(tmp_path, database_log):
    """SQLite opened read-only (as a read-only file is): writes 503, reads 200."""
    path = tmp_path / "authsvc.db"
    app = migrated_app(f"sqlite:///{path}")
    tokens = signup(app.test_client(), "ro@example.com").json
    with app.app_context():
        db.engine.dispose()
    client = create_app(settings(f"sqlite:///file:{path}?mode=ro&uri=true")).test_client()
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    assert_unavailable(signup(client, "new@example.com"))
    assert_one_line_each(database_log, "readonly database")


def test_refresh_whose_commit_failed_leaves_the_old_token_working(shared_postgres):
    """The connection dies in COMMIT (a deferred trigger ends it): 503, and the old token works."""
    app = migrated_app(shared_postgres)
    client = app.test_client()
    tokens = signup(client, "commit@example.com").json
    engine = sa.create_engine(shared_postgres)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE FUNCTION end_backend() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$"
        )
        connection.exec_driver_sql(
            "CREATE CONSTRAINT TRIGGER end_backend AFTER INSERT ON auth_events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.event = 'refresh') "
            "EXECUTE FUNCTION end_backend()"
        )
    assert_unavailable(client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])))
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER end_backend ON auth_events")
    engine.dispose()
    assert client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 200


def test_misnamed_database_stops_start_up_with_one_line(shared_postgres, tmp_path):
    """A DATABASE_URL naming no database: gunicorn and the CLI stop with one line naming it."""
    misnamed = sa.make_url(shared_postgres).set(database="no_such_database")
    env = service_environment(tmp_path, DATABASE_URL=misnamed.render_as_string(False))
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{free_port()}"]
    started = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    named = [line for line in started.stderr.splitlines() if "no_such_database" in line]
    assert started.returncode != 0 and "Traceback" not in started.stderr
    assert len(named) == 1 and "DATABASE_URL" in named[0]
    listed = flask_cli(env, "users", "list")
    assert listed.returncode == 1 and "Traceback" not in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1 and "DATABASE_URL" in listed.stderr


@contextlib.contextmanager
def droppable_database():
    """Create a database on the shared server; yield its name and a function that drops it."""
    name = f"authsvc_dropped_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")

    def execute(statement):
        """Run one statement as the server's admin."""
        with admin.connect() as connection:
            connection.exec_driver_sql(statement)

    execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, lambda: execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_database_dropped_while_serving_is_503_with_one_log_line_each(shared_postgres, tmp_path):
    """The database gone from under the service: 503s with one line each, /healthz 200."""
    body = {"email": "nobody@example.com", "password": PASSWORD}
    with droppable_database() as (name, drop):
        url = sa.make_url(POSTGRES_URL).set(database=name).render_as_string(False)
        env, log = service_environment(tmp_path, DATABASE_URL=url), tmp_path / "gunicorn.log"
        migrated(env)
        with gunicorn(env, log_path=log) as url:
            drop()
            assert requests.get(f"{url}/healthz").status_code == 200
            answers = [
                requests.post(f"{url}/auth/signin", json=body),
                requests.post(f"{url}/auth/signup", json=body),
                requests.get(f"{url}/readyz"),
            ]
    for answer in answers:
        assert answer.status_code == 503 and answer.json()["code"] == "database_unavailable"
        assert answer.headers["Retry-After"]
    lines = log.read_text().splitlines()
    assert len([line for line in lines if name in line]) == 3
    assert not [line for line in lines if "Traceback" in line]


def test_database_not_needed_for_healthz(tmp_path):
    """/healthz never touches the database (with key pairs too); /readyz and signup are 503."""
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'authsvc.db'}"
    client = create_app(settings(missing, JWT_ALGORITHM="EdDSA")).test_client()
    assert client.get("/healthz").status_code == 200
    assert_unavailable(client.get("/readyz"))
    assert_unavailable(signup(client, "someone@example.com"))


def test_full_disk_refuses_writes_keeps_reads_and_loses_nothing(tmp_path):
    """SQLite on a full tmpfs: writes 503, reads 200; once it grows, nothing acknowledged lost."""
    with small_disk(tmp_path / "disk", "4m") as disk:
        app = migrated_app(f"sqlite:///{disk / 'authsvc.db'}")
        client = app.test_client()
        tokens = signup(client, "first@example.com").json
        filler = fill(disk)
        assert_unavailable(signup(client, "second@example.com"))
        assert_unavailable(client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])))
        assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
        resize(disk, "16m")
        assert signup(client, "second@example.com").status_code == 201
        assert (
            client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).status_code == 200
        )
        for email in ("first@example.com", "second@example.com"):
            body = {"email": email, "password": PASSWORD}
            assert client.post("/auth/signin", json=body).status_code == 200
        filler.unlink()
        with app.app_context():
            db.engine.dispose()


def test_sqlite_errors_of_the_code_stay_bugs(tmp_path):
    """SQLite raises bad SQL as an OperationalError too: that is no database trouble."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'authsvc.db'}")
    with engine.connect() as connection, pytest.raises(sa.exc.OperationalError) as raised:
        connection.exec_driver_sql("SELECT * FROM no_such_table")
    engine.dispose()
    assert not in_trouble(raised.value)


def refused_total(url):
    """Return authsvc_rate_limited_total by limit, from /metrics."""
    text = requests.get(f"{url}/metrics").text
    return {
        sample.labels["limit"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "authsvc_rate_limited_total"
    }


def test_flood_of_wrong_passwords_costs_the_database_a_handful_of_rows(tmp_path):
    """A flood of wrong passwords at one account: 429s, counted in /metrics, few audit rows.

    The flood lasts until it has drawn more than 100 refusals (or 60 s, or
    4,000 requests): a fixed 3 s drew fewer than that on a busy machine.
    """
    env = service_environment(tmp_path, RATELIMIT_ENABLED="1")
    migrated(env)
    body = {"email": "target@example.com", "password": "wrong-password-42"}
    with gunicorn(env, workers=2) as url:
        created = requests.post(f"{url}/auth/signup", json={**body, "password": PASSWORD})
        assert created.status_code == 201
        answers, deadline = [], time.monotonic() + 60

        def flood():
            while time.monotonic() < deadline and len(answers) < 4000:
                if answers.count(429) > 100:
                    return
                answers.append(requests.post(f"{url}/auth/signin", json=body).status_code)

        threads = [threading.Thread(target=flood) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = Counter(answers)
        assert set(statuses) == {401, 429} and statuses[429] > 100
        assert refused_total(url) == {"signin_per_email": statuses[429]}
    engine = sa.create_engine(env["DATABASE_URL"])
    with engine.connect() as connection:
        events = Counter(connection.scalars(sa.select(AuthEvent.event)))
    engine.dispose()
    assert events["signin_failed"] == statuses[401] <= 2 * 10  # 10 a minute, per worker
    assert 1 <= events["rate_limited"] <= 2
