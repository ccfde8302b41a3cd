"""Running the real service for tests: a migrated database, then gunicorn on a free port.

gunicorn serves a socket this process binds first (`--bind fd://N`), so two
tests running at once (pytest-xdist workers, or another checkout's run) can
never be handed the same port between a probe and gunicorn's own bind.
"""

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    """Return a loopback port nobody listens on (racy: prefer a socket from bound_socket())."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bound_socket(port=0):
    """Bind a loopback TCP socket (on a free port by default) and return it, not listening.

    Until it listens, a connection to its port is refused, and no one else can take the port.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    return sock


def url_of(sock):
    """Return the http:// URL of a bound loopback socket."""
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def service_environment(tmp_path, **extra):
    """Return the environment of a production-like authsvc on a SQLite file."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AUTHSVC_ENV": "production",
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'authsvc.db'}",
        "BCRYPT_ROUNDS": "4",
        "MAIL_URL": "none",
        **extra,
    }


def flask_cli(env, *args, stdin=None):
    """Run `flask --app authsvc ...` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "authsvc", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextlib.contextmanager
def gunicorn(env, workers=2, port=None, log_path=None, sock=None):
    """Run `gunicorn wsgi:app` on a loopback socket; yield its URL; stop it.

    It serves `sock` (from bound_socket()) if given, else a socket bound here
    on `port`, or on a free port. Its output goes to a file (log_path, if
    given), never an unread pipe: a full pipe would block the workers on
    their next log line.
    """
    with contextlib.ExitStack() as stack:
        sock = sock or stack.enter_context(bound_socket(port or 0))
        sock.listen(128)
        url = url_of(sock)
        opened = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
        log = stack.enter_context(opened)
        process = start_gunicorn(env, sock, log, "--workers", str(workers))
        try:
            wait_until_serving(url, process, log)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def start_gunicorn(env, sock, log, *options):
    """Start `gunicorn wsgi:app` on a listening socket, its output to a file; return the process."""
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"fd://{sock.fileno()}"]
    return subprocess.Popen(
        [*command, *options],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        pass_fds=[sock.fileno()],
    )


def wait_until_serving(url, process, log):
    """Wait for /healthz to answer; fail with gunicorn's output if it never does.

    The socket listens from the start, so a request waits in its backlog
    until a worker takes it: each try waits long, rather than leaving a
    trail of abandoned requests for the workers to answer later.
    """
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            log.seek(0)
            pytest.fail(f"gunicorn did not start: {log.read().decode()}")
        time.sleep(0.1)


def migrated(env):
    """Apply the migrations to the database an environment names, in this process.

    Alembic runs here rather than in a `flask db upgrade` process, which
    would spend a second and a half importing authsvc each time;
    test_e2e.py runs the command itself.
    """
    from conftest import settings
    from flask_migrate import upgrade

    from authsvc import create_app
    from authsvc.extensions import db

    app = create_app(settings(env["DATABASE_URL"]))
    with app.app_context():
        upgrade()
        db.engine.dispose()
