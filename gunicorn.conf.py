"""gunicorn settings for authsvc: `gunicorn wsgi:app` reads this file.

gunicorn binds 127.0.0.1:8000 by default, or 0.0.0.0:$PORT when PORT is set;
`--bind` overrides both.
"""

import atexit
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import uuid

from gunicorn import util


def remove_folder(folder, owner):
    """Remove a folder at exit, in the process that made it only (workers exit too)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


# Workers share their Prometheus metrics through files in this folder; it
# must be set before the app (and prometheus_client) is imported. It goes
# at every exit of this process, also those that on_exit never sees: a
# preload that fails (a bad setting), an error in the master, or a program
# that only reads this file (the benchmark).
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="authsvc-metrics-")
    atexit.register(remove_folder, os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid())

# Sync workers: signin is bcrypt, CPU-bound, so more threads per worker would
# only queue behind the GIL. Two per core keeps a core busy while the other
# worker waits on the database.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "sync"
timeout = 30
graceful_timeout = 30
# Load the app once in the master: a bad setting stops the service with its
# one-line message instead of a crash loop of workers, and workers share memory.
preload_app = True
# Recycle workers now and then so that no slow leak grows without bound.
max_requests = 20000
max_requests_jitter = 2000
errorlog = "-"
accesslog = None
# gunicorn 25 and later open a control socket for `gunicornc`, by default at
# one path per user ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl)
# that every instance shares: the second instance takes it over and the
# first one's exit deletes it under the second. authsvc is driven by signals
# (HUP, TERM, TTIN, TTOU), so the socket is off.
control_socket_disable = True
# Which forwarded headers count is TRUSTED_PROXIES's decision alone (ProxyFix,
# in the app): gunicorn itself believes none, from any address or socket.
# By default it would let a client on 127.0.0.1 (or on a Unix socket, always)
# make a request https with X-Forwarded-Proto, and set SCRIPT_NAME.
forwarded_allow_ips = ""
secure_scheme_headers = {}
forwarder_headers = ""
# The longest request line gunicorn allows (its default is 4094): a long but
# well-formed URL reaches the app and gets its 404 problem, not a 414 page.
limit_request_line = 8190

GUNICORN_ERROR_CODES = {400: "bad_request", 414: "uri_too_long", 431: "headers_too_large"}


def problem_error(sock, status_int, reason, mesg):
    """Answer a request gunicorn cannot parse with problem+json, like every other error.

    Its X-Request-ID is a new one: every response carries one, and a request
    that does not parse has none to echo.
    """
    body = json.dumps(
        {
            "type": "about:blank",
            "title": reason,
            "status": status_int,
            "detail": mesg or reason,
            "code": GUNICORN_ERROR_CODES.get(status_int, "internal_error"),
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


# gunicorn writes its own errors (a malformed request line, too many
# headers) as an HTML page through this one function.
util.write_error = problem_error


def on_starting(server):
    """Start from empty metrics, even in a folder a previous run left behind."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    """Let a dead worker's live metrics go; its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# The signals that stop a worker. A new worker keeps the master's handlers
# until gunicorn gives it its own (after post_fork), and the master's only
# queue a signal for the master's loop: a TERM sent to a worker still booting
# was lost, and the master waited out graceful_timeout (30 s) before killing it.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def stop_when_told_while_booting():
    """Let a stopping signal that reaches a booting worker stop it (the default action)."""
    for number in STOPPING_SIGNALS:
        signal.signal(number, signal.SIG_DFL)


def post_fork(server, worker):
    """Give each worker its own database connections, never the master's, and a mail relay.

    A worker told to stop while it boots stops at once. The relay is a
    thread, and threads do not survive a fork: each worker starts its own
    here; the master never runs one.
    """
    stop_when_told_while_booting()
    from authsvc import relay
    from authsvc.extensions import db
    from wsgi import app

    with app.app_context():
        db.engine.dispose(close=False)
    relay.start(app)


def worker_exit(server, worker):
    """Let the worker's relay finish the mail it is sending before the worker goes."""
    from authsvc import relay
    from wsgi import app

    relay.relay_of(app).stop(timeout=5)
