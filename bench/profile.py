"""Sample the authsvc workers with py-spy under load, and say where a request's time goes."""

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

# Each sample taken inside the app is charged to the first phase whose marker
# is on its stack: a function name, or a file path prefix (markers with a "/").
# The list goes from the most to the least specific.
PHASES = [
    ("SQLAlchemy._teardown_session", "Flask-SQLAlchemy teardown: close session, roll back"),
    ("scoped_session._proxied", "Flask-SQLAlchemy: create the request's session"),
    ("Session._connection_for_bind", "SQLAlchemy: check out a connection, begin"),
    ("Connection.execute", "SQL: run the session+user query, fetch the row"),
    ("Result.first", "SQL: run the session+user query, fetch the row"),
    ("token_is_revoked", "revocation check: the rest (ORM execute, checks)"),
    ("jwt/", "PyJWT: decode and verify the token"),
    ("flask_jwt_extended/", "flask-jwt-extended: find the token, checks, loaders"),
    ("marshmallow/", "marshmallow: dump the response"),
    ("jsonify", "Flask jsonify: encode the JSON"),
    ("authsvc/", "authsvc: hooks and the view"),
    ("flask_smorest/", "flask-smorest: response wrappers"),
    ("Flask.wsgi_app", "Flask and Werkzeug: contexts, routing, request, response"),
]
# A worker's request: gunicorn reads it, calls the app, writes the answer.
REQUEST, APP = "SyncWorker.handle", "Flask.wsgi_app"
FRAME = re.compile(r"(?P<function>.*) \((?P<file>[^()]*):\d+\)$")


def py_spy():
    """Return the py-spy executable next to this Python, or on PATH, or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(master_pid, drive, seconds, output):
    """Record every worker's stacks while `drive(seconds)` loads them; summarise them."""
    executable = py_spy()
    if executable is None:
        return {"error": "py-spy is not installed: .venv/bin/pip install py-spy"}
    command = [
        executable,
        "record",
        f"--pid={master_pid}",
        "--subprocesses",
        "--format=raw",
        "--rate=250",
        f"--duration={seconds + 2}",
        f"--output={output}",
    ]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # let py-spy attach before the load starts
        load = drive(seconds)
        spy.wait(timeout=seconds + 30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    return {"load": load, **summarize(Path(output).read_text().splitlines())}


def matches(marker, frame):
    """Tell whether a py-spy frame is the marker's function or lies in its files."""
    parsed = FRAME.match(frame)
    if parsed is None:
        return False
    if "/" in marker:
        return parsed["file"].startswith(marker)
    return parsed["function"] == marker


def phase(frames):
    """Return the app phase of a sample: the first whose marker is on its stack."""
    for marker, label in PHASES:
        if any(matches(marker, frame) for frame in frames):
            return label
    return None


def summarize(lines):
    """Return how the workers' request samples split: gunicorn, then the app's phases.

    py-spy counts a worker that is runnable but waiting for a CPU as busy, and
    a worker waits most right after its socket write wakes the client; the
    gunicorn share therefore overstates gunicorn's CPU, the app's shares do not.
    """
    charged = Counter()
    requests = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # a stack py-spy read while it changed, cut by a newline
        frames = stack.split(";")
        if any(matches(REQUEST, frame) for frame in frames):
            requests += int(count)
            if any(matches(APP, frame) for frame in frames):
                charged[phase(frames)] += int(count)
    app = sum(charged.values())
    return {
        "request_samples": requests,
        "gunicorn_percent": round(100 * (requests - app) / requests, 1) if requests else None,
        "app_samples": app,
        "app_percent_by_phase": {
            label: round(100 * count / app, 1) for label, count in charged.most_common()
        },
    }
