"""What operators watch: Prometheus metrics, and one JSON log line per request.

Under gunicorn every worker writes its metrics to PROMETHEUS_MULTIPROC_DIR
(gunicorn.conf.py sets it) and /metrics adds them up; without it, the
process's own registry is served.
"""

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime

from flask import g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "authsvc_requests",
    "HTTP requests by endpoint, method and status.",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "authsvc_request_duration_seconds",
    "Time to answer a request, by endpoint and method.",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
AUTH_EVENTS = Counter(
    "authsvc_auth_events", "Auth events by kind, as the audit trail records them.", ["event"]
)
SIGNINS = Counter(
    "authsvc_signins",
    "Sessions opened by a sign-in, by its first factor (pwd, oauth, hwk).",
    ["method"],
)
OAUTH = Counter(
    "authsvc_oauth",
    "Sign-ins with providers by provider and outcome: signin, signup, linked, unlinked, "
    "or the error of a refusal (provider_error, account_exists, invalid_grant...).",
    ["provider", "outcome"],
)
RATE_LIMITED = Counter(
    "authsvc_rate_limited", "Requests refused by a rate limit, by the limit's name.", ["limit"]
)

MAIL_SENT = Counter("authsvc_mail_sent", "Mails the SMTP server (or the log) accepted.")
MAIL_RETRIED = Counter("authsvc_mail_retried", "Deliveries that failed and were scheduled again.")
MAIL_GIVEN_UP = Counter("authsvc_mail_given_up", "Mails given up: a permanent refusal, or a day.")
MAIL_PENDING = Gauge(
    "authsvc_mail_pending",
    "Mails in the outbox not yet sent nor given up, as a relay last counted them.",
    multiprocess_mode="livemostrecent",
)

access_log = logging.getLogger("authsvc.access")


def count_event(event):
    """Count one auth event."""
    AUTH_EVENTS.labels(event).inc()


def count_signin(method):
    """Count one session opened by a sign-in whose first factor was `method`."""
    SIGNINS.labels(method).inc()


def count_oauth(provider, outcome):
    """Count one outcome of a sign-in or link with a provider."""
    OAUTH.labels(provider, outcome).inc()


def count_refusal(limit):
    """Count one request refused by a rate limit."""
    RATE_LIMITED.labels(limit).inc()


def start_clock():
    """Note when the request started."""
    g.started = time.perf_counter()


def observe(response):
    """Count and time the request, and log it as one JSON line."""
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.endpoint or "unmatched"
    REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    LATENCY.labels(endpoint, request.method).observe(elapsed)
    caller = g.get("session_row")
    # The path only: a query string is the client's to fill, and a careless
    # client could put a token there.
    access_log.info(
        json.dumps(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "request_id": g.get("request_id"),
                "user_id": caller.id if caller is not None else None,
                "remote_addr": request.remote_addr,
            }
        )
    )
    return response


def metrics_exposition():
    """Return the metrics of every worker in the Prometheus text format."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry)


def log_lines_to_stderr(logger, level, line_format="%(message)s"):
    """Send a logger's records at `level` and up to stderr, bare lines by default (once)."""
    logger.setLevel(level)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(line_format))
        logger.addHandler(handler)


def configure_access_log(enabled):
    """Send the access log, bare JSON lines, to stderr."""
    log_lines_to_stderr(access_log, logging.INFO if enabled else logging.WARNING)


def register_telemetry(app):
    """Time, count and log every request."""
    configure_access_log(app.config["ACCESS_LOG"])
    app.before_request(start_clock)
    app.after_request(observe)
