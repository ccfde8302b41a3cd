"""Metrics in the Prometheus text format, and one JSON log line per request."""

import json
import logging

import pytest
from conftest import PASSWORD, bearer, settings
from prometheus_client.parser import text_string_to_metric_families

from authsvc import create_app


def samples(client):
    """Scrape /metrics and return {(name, labels): value}, parsed by prometheus_client."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def event_count(scrape, event):
    """Return how many auth events of a kind a scrape counted."""
    return scrape.get(("authsvc_auth_events_total", (("event", event),)), 0)


def test_metrics_count_auth_events(auth, client):
    """Signins ok and failed, refreshes and detected reuse are counted."""
    before = samples(client)
    tokens = auth.signup()
    auth.signin()
    client.post("/auth/signin", json={"email": "user@example.com", "password": "wrong-pass-42"})
    client.post("/auth/refresh", headers=bearer(tokens["refreshToken"]))
    client.post("/auth/refresh", headers=bearer(tokens["refreshToken"] + "="))
    after = samples(client)
    for event in ("signup", "signin", "signin_failed", "refresh", "refresh_reuse"):
        assert event_count(after, event) - event_count(before, event) == 1, event


def test_metrics_count_every_refusal_by_limit(database_url, app):
    """Every 429 is counted by its limit's name; the audit trail counts the breach once."""
    limited = create_app(
        settings(database_url, RATELIMIT_ENABLED=True, RATELIMIT_SIGNUP_PER_ADDRESS="1 per minute")
    ).test_client()
    refused = ("authsvc_rate_limited_total", (("limit", "signup_per_address"),))
    before = samples(limited)
    for i in range(3):
        limited.post("/auth/signup", json={"email": f"m{i}@example.com", "password": PASSWORD})
    after = samples(limited)
    assert after[refused] - before.get(refused, 0) == 2
    assert event_count(after, "rate_limited") - event_count(before, "rate_limited") == 1


def test_metrics_count_and_time_requests_by_endpoint_and_status(client):
    """Requests are counted by endpoint, method and status, and timed."""
    before = samples(client)
    client.get("/healthz")
    client.get("/nowhere")
    after = samples(client)
    ok = (
        "authsvc_requests_total",
        (("endpoint", "service.healthz"), ("method", "GET"), ("status", "200")),
    )
    missing = (
        "authsvc_requests_total",
        (("endpoint", "unmatched"), ("method", "GET"), ("status", "404")),
    )
    assert after[ok] - before.get(ok, 0) == 1
    assert after[missing] - before.get(missing, 0) == 1
    timed = (
        "authsvc_request_duration_seconds_count",
        (("endpoint", "service.healthz"), ("method", "GET")),
    )
    assert after[timed] - before.get(timed, 0) == 1


@pytest.fixture
def access_lines(database_url, app):
    """Return a logging client and the list its access log lines land in."""
    logged = create_app(settings(database_url, ACCESS_LOG=True))
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(json.loads(record.getMessage()))
    logger = logging.getLogger("authsvc.access")
    logger.addHandler(handler)
    yield logged.test_client(), lines
    logger.removeHandler(handler)


def test_each_request_logs_one_json_line(access_lines):
    """A request logs method, path, status, duration and request id."""
    client, lines = access_lines
    client.get("/healthz?x=1", headers={"X-Request-ID": "log-1"})
    (line,) = lines
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["request_id"] == "log-1" and line["duration_ms"] >= 0


def test_log_names_the_user_and_never_a_secret(access_lines):
    """The user id is logged where known; tokens and passwords never are."""
    client, lines = access_lines
    tokens = client.post(
        "/auth/signup", json={"email": "log@example.com", "password": PASSWORD}
    ).json
    client.get(f"/users/me?token={tokens['accessToken']}", headers=bearer(tokens["accessToken"]))
    assert lines[-1]["user_id"] == tokens["id"]
    dump = json.dumps(lines)
    assert PASSWORD not in dump
    assert tokens["accessToken"] not in dump and tokens["refreshToken"] not in dump
