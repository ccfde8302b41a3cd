"""Every error a client can cause: a clear 4xx problem+json."""

import pytest

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(response, status, code):
    """Check a response is the problem the contract names."""
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert set(response.json) >= PROBLEM_KEYS
    assert response.json["status"] == status and response.json["code"] == code


def test_unknown_path_is_404_problem(client):
    """An unknown path is a 404 problem."""
    assert_problem(client.get("/no/such/path"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/auth/signup"),
        ("PUT", "/users/me"),
        ("PUT", "/auth/refresh"),
        ("POST", "/users"),
    ],
)
def test_wrong_method_is_405_with_allow(client, method, path):
    """A method a path does not answer is 405 with an Allow header."""
    response = client.open(path, method=method)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_non_json_body_is_415(client, content_type):
    """A body that is not declared JSON is 415."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/auth/signup", data='{"email": "a@b.c"}', headers=headers)
    assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"{'email': 1}",
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
        b"1" * 5000,
        b'{"email": "a@b.c",}',
        b"\xef\xbb\xbf{}",
        b"NaN x",
    ],
)
def test_unparsable_json_is_400(client, body):
    """A body that does not parse as UTF-8 JSON is 400 invalid_json."""
    response = client.post("/auth/signup", data=body, content_type="application/json")
    assert_problem(response, 400, "invalid_json")


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"null", b"42", b"  "])
def test_json_that_is_not_an_object_is_422(client, body):
    """Valid JSON of the wrong shape is a validation error."""
    response = client.post("/auth/signin", data=body, content_type="application/json")
    assert_problem(response, 422, "validation_error")


def test_body_over_the_limit_is_413(client):
    """A body over 16 KiB is 413."""
    body = '{"email": "a@example.com", "password": "' + "x" * 17000 + '"}'
    response = client.post("/auth/signup", data=body, content_type="application/json")
    assert_problem(response, 413, "payload_too_large")


def test_body_over_the_limit_is_413_on_any_endpoint(client):
    """The limit holds where no body is read too."""
    response = client.get("/healthz", data="x" * 20000, content_type="application/json")
    assert_problem(response, 413, "payload_too_large")


def test_body_at_the_limit_is_read(client):
    """A body of exactly the limit is not refused for its size."""
    body = '{"email": "a@example.com", "password": "' + "x" * 16000 + '"}'
    body = body + " " * (16384 - len(body))
    response = client.post("/auth/signup", data=body, content_type="application/json")
    assert response.status_code == 422
