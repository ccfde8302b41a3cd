"""Fixtures: an app on a real database (SQLite, and PostgreSQL when there is one).

PostgreSQL, Redis and Chromium are used where they are: PostgreSQL and Redis
on their default local ports unless TEST_POSTGRES_URL / TEST_REDIS_URL name
others. A test that needs one that is missing is skipped (under CI=true it
fails), and the run ends with one line saying what was skipped, why, and
how to include it.
"""

import functools
import os
import uuid
import weakref
from collections import Counter
from types import SimpleNamespace

import pytest
import redis
import sqlalchemy as sa
from flask_migrate import upgrade
from mailer import Mailbox, smtp_server
from skips import CI, USED, skip_without  # noqa: F401 (CI: for modules that import it from here)

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import User
from authsvc.passwords import hash_password
from authsvc.tokens import open_session

PASSWORD = "violet-kettle-orbit-42"
TEST_SECRET = "a-test-signing-key-that-is-long-enough-for-hs256"
POSTGRES_URL = (
    os.environ.get("TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"

pytest_plugins = ["skips", "browser"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Refuse a collection xdist would run in part; under xdist, hand out long tests first.

    xdist tells tests apart by node id, and groups them by the `@group` it
    appends to it: two tests with one id (schemathesis' under pytest 9.2)
    would run as one, and a lost suffix would split a group, both silently.
    A worker given a minute-long test at the end would run it alone while
    the others sit idle: `make test` keeps this order (--no-loadscope-reorder).
    """
    repeated = [nodeid for nodeid, count in Counter(i.nodeid for i in items).items() if count > 1]
    if repeated:
        raise pytest.UsageError(f"tests share a node id, so xdist would run one: {repeated[:3]}")
    if not hasattr(config, "workerinput"):
        return
    if config.getvalue("loadgroup"):
        grouped = [i.nodeid for i in items if i.get_closest_marker("xdist_group")]
        if any("@" not in nodeid for nodeid in grouped):
            raise pytest.UsageError(f"xdist lost the group of {grouped[0]}: is pytest < 9.2?")
    items.sort(
        key=lambda item: (
            not item.get_closest_marker("starts_first"),
            not item.get_closest_marker("e2e"),
        )
    )


def reuse_parsed_rules():
    """Parse each URL rule, and compile its URL builders, once per process, not once per app.

    Binding a rule to an app's map parses its text into the parts its
    matcher needs and writes and compiles two Python functions that build
    its URLs: some 25 ms of each of the suite's 4,000 apps. What comes out
    depends only on the rule's text, its host or subdomain, its defaults and
    the map's converters, so a rule like one compiled before takes that
    one's parts (its converters are stateless) and its builders, bound to
    itself (a builder reaches its rule through its first argument). Left as
    werkzeug has it if its internals are not the ones this knows.
    """
    from werkzeug.routing.rules import Rule

    compile_rule = Rule.compile
    if getattr(compile_rule, "reused", False) or not hasattr(Rule, "_parse_rule"):
        return
    parsed = {}

    def reused(self):
        """Compile a rule from the parts of one like it, parsing them the first time."""
        try:
            key = (
                self.rule,
                self.host if self.map.host_matching else self.subdomain,
                self.map.host_matching,
                self.merge_slashes,
                tuple(sorted(self.map.converters.items())),
                tuple(sorted((self.defaults or {}).items())),
            )
            hash(key)
        except (AttributeError, TypeError):
            return compile_rule(self)
        if key not in parsed:
            compile_rule(self)
            parsed[key] = (
                tuple(self._parts),
                tuple(self._trace),
                dict(self._converters),
                self._build.__func__,
                self._build_unknown.__func__,
            )
            return None
        parts, trace, converters, build, build_unknown = parsed[key]
        self._parts, self._trace, self._converters = list(parts), list(trace), dict(converters)
        self.arguments.update(converters)
        self._build, self._build_unknown = (
            build.__get__(self, None),
            build_unknown.__get__(self, None),
        )
        return None

    reused.reused = True
    Rule.compile = reused


reuse_parsed_rules()


def first_line(error):
    """Return the first line of an exception's message (or of its cause's)."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


@functools.cache
def postgres_problem():
    """Return why the PostgreSQL server cannot be used, or None when it answers."""
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            return None
    except sa.exc.SQLAlchemyError as error:
        return first_line(error)
    finally:
        engine.dispose()


@functools.cache
def redis_problem():
    """Return why the Redis server cannot be used, or None when it answers."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return first_line(error)
    return None


def redis_server():
    """Return the URL of a Redis that answers; skip without one (fail under CI=true)."""
    if problem := redis_problem():
        skip_without("Redis", f"{REDIS_URL}: {problem}")
    USED["Redis"] = REDIS_URL
    return REDIS_URL


def redis_key_prefix():
    """Return a RATELIMIT_KEY_PREFIX of one test's own, for a gunicorn on a shared Redis.

    Counters keyed by 127.0.0.1 in one Redis would otherwise add up across
    tests, xdist workers, and other checkouts' runs on the same machine. (In
    this process every app shares Flask-Limiter's one limiter, which keeps
    the first app's prefix: there, give each test its own emails instead.)
    """
    return f"authsvc-test-{uuid.uuid4().hex[:12]}"


def settings(database_url, **extra):
    """Return the overrides every test app is made with."""
    return {
        "AUTHSVC_ENV": "testing",
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "BCRYPT_ROUNDS": 4,
        "RATELIMIT_ENABLED": False,
        "ACCESS_LOG": False,
        # Tests drive the outbox with relay.send_pending(); the e2e tests run the thread.
        "MAIL_RELAY": False,
        **extra,
    }


def postgres_database():
    """Create a throwaway PostgreSQL database; yield its URL; drop it."""
    server = sa.make_url(POSTGRES_URL)
    if problem := postgres_problem():
        skip_without("PostgreSQL", f"{server.render_as_string()}: {problem}")
    USED["PostgreSQL"] = server.render_as_string()
    name = f"authsvc_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database_url(request, tmp_path_factory):
    """Yield the URL of a migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'authsvc.db'}"
        databases = iter([url])
    else:
        databases = postgres_database()
    url = next(databases)
    app = create_app(settings(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    yield url
    cleaner(url).dispose()
    next(databases, None)


@functools.cache
def cleaner(database_url):
    """Return the engine that empties a session's database between tests (one per database)."""
    engine = sa.create_engine(database_url)
    CLEANERS.add(engine)
    return engine


CLEANERS = weakref.WeakSet()
ENGINES = weakref.WeakSet()


def in_memory(engine):
    """Tell whether an engine's database is SQLite's in-memory one, which its connection is."""
    return engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")


@sa.event.listens_for(sa.engine.Engine, "engine_connect")
def _remember_engine(connection):
    """Note every engine that connected, so that its pooled connections close after the test."""
    ENGINES.add(connection.engine)


@pytest.fixture(autouse=True)
def emptied_after(request):
    """Empty the session's database after every test that used it, whichever app wrote to it.

    Tests that made apps of their own on `database_url` used to leave their
    rows to whichever test came next on the same database: under xdist, any.
    Their engines kept their pooled connections until the garbage collector
    came by, some 20 per worker at times: four workers used up PostgreSQL's
    100 connections. Every engine that connected during the test is disposed
    of after it (an app a module still holds opens new ones when it is next used),
    but for an in-memory SQLite database, which would go with its connection.
    """
    yield
    for engine in list(ENGINES):
        if engine not in CLEANERS and not in_memory(engine):
            engine.dispose()
    ENGINES.clear()
    if "database_url" in request.fixturenames:
        with cleaner(request.getfixturevalue("database_url")).begin() as connection:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture
def app(database_url):
    """Yield an app on the session's database, emptied after the test (emptied_after)."""
    app = create_app(settings(database_url))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def empty_database(app):
    """Delete every row an app's test left, and close its connections."""
    with app.app_context():
        db.session.remove()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """Return a test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Return a CLI runner of the app."""
    return app.test_cli_runner()


@pytest.fixture(scope="module")
def password_hash():
    """Hash the test password once per module, at the tests' low cost."""
    return hash_password(PASSWORD, rounds=4)


class AuthActions:
    """Sign up, sign in and build headers, as a client would."""

    def __init__(self, app, client, password_hash):
        self._app, self._client, self._password_hash = app, client, password_hash

    def signup(self, email="user@example.com", password=PASSWORD):
        """Sign up through the API and return the response body."""
        response = self._client.post("/auth/signup", json={"email": email, "password": password})
        assert response.status_code == 201, response.json
        return response.json

    def signin(self, email="user@example.com", password=PASSWORD):
        """Sign in through the API and return the response body."""
        response = self._client.post("/auth/signin", json={"email": email, "password": password})
        assert response.status_code == 200, response.json
        return response.json

    def session(self, email="user@example.com"):
        """Open a session as a signin does, without its request; return signin's answer.

        For tests that need a live token rather than a signin: no password
        check, audit row or limit, a fraction of the cost.
        """
        return open_session_of(self._app, email)

    def create_user(self, email="user@example.com", role="user", disabled=False):
        """Insert a user with the test password straight into the database."""
        with self._app.app_context():
            user = User(
                email=email, password_hash=self._password_hash, role=role, disabled=disabled
            )
            db.session.add(user)
            db.session.commit()
            return user.id

    def admin(self, email="admin@example.com"):
        """Create an admin and return the body of its signin."""
        self.create_user(email, role="admin")
        return self.signin(email)


def open_session_of(app, email):
    """Open a new session for a user, as gate.admit does; return signin's answer fields."""
    with app.test_request_context():
        user = db.session.execute(sa.select(User).filter_by(email=email)).scalar_one()
        _, tokens = open_session(user)
        db.session.commit()
        answer = {"id": user.id, "email": user.email}
        db.session.remove()
    return {
        **answer,
        "accessToken": tokens["access_token"],
        "refreshToken": tokens["refresh_token"],
    }


@pytest.fixture
def auth(app, client, password_hash):
    """Return the sign-up and sign-in helper."""
    return AuthActions(app, client, password_hash)


@pytest.fixture(scope="session")
def smtp():
    """Run one real SMTP server (aiosmtpd) for the session; give its mailbox and MAIL_URL."""
    mailbox = Mailbox()
    with smtp_server(mailbox) as controller:
        yield SimpleNamespace(mailbox=mailbox, url=f"smtp://127.0.0.1:{controller.port}")


@pytest.fixture
def mailbox(smtp):
    """Return the SMTP server's mailbox, empty."""
    smtp.mailbox.clear()
    yield smtp.mailbox
    smtp.mailbox.clear()


def bearer(token):
    """Return the Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}
