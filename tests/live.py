"""Running the real service for tests: `flask db upgrade`, then gunicorn on a free port."""

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
    """Return a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
def gunicorn(env, workers=2, port=None, log_path=None):
    """Run `gunicorn wsgi:app` on a loopback port (a free one by default); yield its URL; stop it.

    Its output goes to a file (log_path, if given), never an unread pipe: a
    full pipe would block the workers on their next log line.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers)]
    url = f"http://127.0.0.1:{port}"
    opened = open(log_path, "w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    with opened as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_serving(url, process, log)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_until_serving(url, process, log):
    """Wait for /healthz to answer; fail with gunicorn's output if it never does."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                log.seek(0)
                pytest.fail(f"gunicorn did not start: {log.read().decode()}")
            time.sleep(0.1)


def migrated(env):
    """Apply the migrations to the database an environment names."""
    result = flask_cli(env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
