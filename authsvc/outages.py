"""When the database is in trouble: bounded waits, a 503 rather than a 500, a clean return.

DATABASE_TIMEOUT bounds connecting and every statement. A request that finds
the database unreachable, full, read-only, locked or too slow answers `503
database_unavailable` with Retry-After and logs one line; a pooled
connection that the server closed meanwhile is replaced when it is checked
out, so none answers with an error once the database is back.
"""

import contextlib
import functools
import json
import logging
import select
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import g, has_request_context, request
from sqlalchemy import exc

from authsvc.errors import problem
from authsvc.extensions import db
from authsvc.telemetry import log_lines_to_stderr

RETRY_AFTER_SECONDS = 5
# What a PostgreSQL server is given beyond its own statement_timeout before
# the client stops waiting for it: only a frozen server or network uses it.
ANSWER_GRACE_SECONDS = 1
# read_only_sql_transaction: default_transaction_read_only, or a standby.
READ_ONLY_SQLSTATE = "25006"
# SQLite's generic error (bad SQL, no such table), which sqlite3 raises as an
# OperationalError like a locked or full database: the code's fault.
SQLITE_ERROR = 1
# The classes of error that say "the database is in trouble", not "the code
# is wrong" (IntegrityError, ProgrammingError and the like stay 500s).
TROUBLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)

log = logging.getLogger("authsvc.database")


def engine_options(url, timeout):
    """Return the engine options that bound every wait on the database by `timeout` seconds."""
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite":
        # sqlite3's timeout is SQLite's busy timeout: how long a writer waits
        # for another one's lock before "database is locked".
        return {"connect_args": {"timeout": timeout}}
    if url.get_backend_name() != "postgresql":
        return {}
    given = url.query.get("options")
    statement_timeout = f"-c statement_timeout={timeout * 1000}"
    if isinstance(given, str):
        statement_timeout = f"{given} {statement_timeout}"
    return {
        "pool_timeout": timeout,
        "connect_args": {
            "connect_timeout": timeout,  # libpq counts at least 2 s
            "options": statement_timeout,
            # A host that vanishes without closing its connections: data left
            # unacknowledged, or an idle connection's unanswered keepalive
            # probes, end the connection after `timeout`.
            "tcp_user_timeout": timeout * 1000,
            "keepalives": 1,
            "keepalives_idle": timeout,
            "keepalives_interval": timeout,
        },
    }


@functools.cache
def bounded_connection_class():
    """Return a psycopg connection class that stops waiting for a server that stopped answering.

    statement_timeout is the server's to enforce, and a frozen server (or a
    proxy that stopped forwarding) never does, while its kernel still
    acknowledges every packet; psycopg would wait for the answer forever.
    psycopg is imported here, not at the top: SQLite deployments never load it.
    """
    import psycopg

    class BoundedConnection(psycopg.Connection):
        """A psycopg connection whose every wait for the server ends after `answer_timeout`."""

        answer_timeout = None

        def wait(self, gen, *args, timeout=None, **kwargs):
            """Wait as psycopg does, but at most `answer_timeout`; then close the connection."""
            if timeout is not None or self.answer_timeout is None:
                return super().wait(gen, *args, timeout=timeout, **kwargs)
            try:
                return super().wait(gen, *args, timeout=self.answer_timeout, **kwargs)
            except psycopg.errors._WaitTimeout:
                # A query is in flight: the connection can never be used again.
                self.close()
                raise psycopg.OperationalError(
                    f"the server did not answer within {self.answer_timeout} s"
                ) from None

    return BoundedConnection


def _connect_bounded(answer_timeout):
    """Return a do_connect listener that opens BoundedConnections."""

    def connect(dialect, connection_record, cargs, cparams):
        """Open a connection whose waits for the server are bounded."""
        connection = bounded_connection_class().connect(*cargs, **cparams)
        connection.answer_timeout = answer_timeout
        return connection

    return connect


def _replace_if_hung_up(dbapi_connection, connection_record, connection_proxy):
    """Replace a pooled connection whose server hung up while it sat in the pool.

    An idle connection has nothing to read, so a readable socket means that
    the server closed it (a crash, a restart, a terminated backend), or
    rarely that it sent a notice; either way a new connection is safer. One
    poll that does not wait costs microseconds, where a pre-ping costs a
    round trip to the server on every checkout.
    """
    if not dbapi_connection.closed:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        if not poller.poll(0):
            return
    # The other connections in the pool went with the same server: replace them all.
    raise exc.InvalidatePoolError("the server closed this pooled connection")


def watch_engines(app):
    """Bound the waits of PostgreSQL connections and check pooled ones on checkout."""
    answer_timeout = app.config["DATABASE_TIMEOUT"] + ANSWER_GRACE_SECONDS
    with app.app_context():
        engines = db.engines.values()
    for engine in engines:
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            sa.event.listen(engine, "do_connect", _connect_bounded(answer_timeout))
            sa.event.listen(engine, "checkout", _replace_if_hung_up)


def in_trouble(error):
    """Tell whether an error says the database is in trouble rather than the code wrong."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError):
        code = getattr(error.orig, "sqlite_errorcode", None)
        return code is None or code & 0xFF != SQLITE_ERROR
    if isinstance(error, TROUBLE):
        return True
    return (
        isinstance(error, exc.InternalError)
        and getattr(error.orig, "sqlstate", None) == READ_ONLY_SQLSTATE
    )


def describe(error):
    """Return what went wrong in one short line: the driver's error, never SQL or parameters."""
    cause = error.orig if isinstance(error, exc.DBAPIError) and error.orig is not None else error
    lines = str(cause).strip().splitlines() or [""]
    return f"{type(cause).__name__}: {lines[0][:200]}"


def log_unavailable(reason):
    """Log one JSON line about a request the database failed, and why."""
    line = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": "database_unavailable",
        "error": reason,
    }
    if has_request_context():
        line.update(method=request.method, path=request.path, request_id=g.get("request_id"))
    log.warning(json.dumps(line))


def roll_back():
    """Roll the session back, whatever state its connection is in."""
    # If the connection is gone, the session lets go of it all the same.
    with contextlib.suppress(exc.SQLAlchemyError):
        db.session.rollback()


def database_unavailable(error):
    """Answer 503 when the database is in trouble; let any other database error be a bug."""
    if not in_trouble(error):
        raise error
    roll_back()
    log_unavailable(describe(error))
    return problem(
        503,
        "database_unavailable",
        "The database is unavailable; try again after the time in Retry-After.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def close_session(exception=None):
    """Close the request's session before Flask-SQLAlchemy would, never raising.

    Closing rolls back a transaction the request left open, after the answer
    is made: if the server went away meanwhile, that rollback raises, and
    gunicorn answers 500 instead. Here the error is swallowed and the answer
    stands; Flask-SQLAlchemy's own close then finds nothing left to do.
    """
    try:
        db.session.remove()
    except exc.SQLAlchemyError:
        roll_back()
        with contextlib.suppress(exc.SQLAlchemyError):
            db.session.remove()


def register_outages(app):
    """Bound the database's waits and answer its failures with 503."""
    log_lines_to_stderr(log, logging.WARNING)
    watch_engines(app)
    # Registered after db.init_app(): teardowns run last first, so this one runs before its.
    app.teardown_appcontext(close_session)
    for error_class in (*TROUBLE, exc.DBAPIError):
        app.register_error_handler(error_class, database_unavailable)
