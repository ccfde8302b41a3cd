"""POST /oauth/introspect on the wire: client authentication, the form, the per-client limit."""

import base64
import uuid

import pytest
from conftest import redis_server, settings
from introspecting import FORM, answer, basic, introspect, register
from live import free_port

from authsvc import clients, create_app
from authsvc.extensions import db

PROBLEM = "application/problem+json"


@pytest.fixture
def service(app):
    """Register a service that may introspect; return its id and secret."""
    return register(app)


def percent_encoded(text):
    """Percent-encode every character, as a form encoder may (RFC 7662 bodies are forms)."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


def assert_refused_client(response):
    """Check the 401 of a bad client: a Basic challenge, a problem, never cached."""
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="authsvc"'
    assert response.content_type == PROBLEM and response.json["code"] == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"


def raw_basic(text):
    """Return an Authorization header with `text` base64-encoded as the Basic credentials."""
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


BAD_CREDENTIALS = {
    "none": lambda service: {},
    "bearer": lambda service: {"Authorization": f"Bearer {service.secret}"},
    "not-base64": lambda service: {"Authorization": "Basic not*base64!"},
    "no-colon": lambda service: raw_basic(service.id + service.secret),
    "wrong-secret": lambda service: basic(service.id, service.secret[:-1] + "x"),
    "empty-secret": lambda service: basic(service.id, ""),
    "unknown-id": lambda service: basic(uuid.uuid4().hex, service.secret),
    "malformed-id": lambda service: basic("../" + service.id, service.secret),
    "nul-in-id": lambda service: basic(service.id + "\0", service.secret),
    "swapped": lambda service: basic(service.secret, service.id),
    "not-utf8": lambda service: {
        "Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()
    },
}


@pytest.mark.parametrize("build", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
def test_missing_malformed_or_wrong_credentials_are_401(auth, client, service, build):
    """Any client credential but a registered one is 401 with a Basic challenge."""
    token = auth.signup()["accessToken"]
    response = client.post("/oauth/introspect", data={"token": token}, headers=build(service))
    assert_refused_client(response)


def test_a_deleted_client_is_refused_at_once(auth, app, client, service):
    """Once a client is deleted, its very next request is 401."""
    token = auth.signup()["accessToken"]
    assert answer(client, service, token)["active"] is True
    with app.app_context():
        clients.delete_client(service.id)
        db.session.commit()
    assert_refused_client(introspect(client, service, token))


def test_credentials_are_checked_before_the_body(client):
    """Without Basic credentials, a request is 401 whatever its body."""
    response = client.post("/oauth/introspect", json={"token": "x"})
    assert_refused_client(response)


def test_basic_credentials_are_form_decoded(auth, client, service):
    """RFC 6749 (2.3.1): id and secret are form-encoded before base64; authsvc decodes them."""
    token = auth.signup()["accessToken"]
    headers = basic(percent_encoded(service.id), percent_encoded(service.secret))
    response = client.post("/oauth/introspect", data={"token": token}, headers=headers)
    assert response.status_code == 200 and response.json["active"] is True


def test_the_scheme_is_case_insensitive(auth, client, service):
    """`basic` works like `Basic` (RFC 9110)."""
    token = auth.signup()["accessToken"]
    scheme, credentials = basic(service.id, service.secret)["Authorization"].split()
    headers = {"Authorization": f"{scheme.lower()} {credentials}"}
    assert client.post("/oauth/introspect", data={"token": token}, headers=headers).json["active"]


def test_a_percent_encoded_token_is_read_as_the_token(auth, client, service):
    """The form body is decoded: a token with every character percent-encoded is the same token."""
    token = auth.signup()["accessToken"]
    response = client.post(
        "/oauth/introspect",
        data=f"token={percent_encoded(token)}&token_type_hint=access_token",
        content_type=f"{FORM}; charset=utf-8",
        headers=basic(service.id, service.secret),
    )
    assert response.status_code == 200 and response.json["active"] is True


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"token": "x"}', "application/json"),
        ("token=x", "text/plain"),
        ("token=x", None),
        (
            "--b\r\nContent-Disposition: form-data; name=token\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
    ids=["json", "text", "no-type", "multipart"],
)
def test_a_body_that_is_not_a_form_is_415(client, service, body, content_type):
    """Only application/x-www-form-urlencoded is read (RFC 7662); anything else is 415."""
    headers = basic(service.id, service.secret)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/oauth/introspect", data=body, headers=headers)
    assert response.status_code == 415 and response.content_type == PROBLEM
    assert response.json["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "body",
    ["", "token=", "token_type_hint=access_token", "toke=x", "token=a&token=b"],
    ids=["empty", "empty-token", "hint-only", "misspelt", "repeated"],
)
def test_a_form_without_one_token_is_400_invalid_request(client, service, body):
    """No token (or an empty one, or two): 400 invalid_request, as OAuth answers."""
    response = client.post(
        "/oauth/introspect", data=body, content_type=FORM, headers=basic(service.id, service.secret)
    )
    assert response.status_code == 400 and response.content_type == PROBLEM
    assert response.json["code"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"


def test_other_methods_are_405(client):
    """GET is not introspection: 405 with Allow."""
    response = client.get("/oauth/introspect")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


def limited_app(database_url, **extra):
    """Return an app whose introspection limit is 3 per minute per client."""
    config = {"RATELIMIT_ENABLED": True, "RATELIMIT_INTROSPECT_PER_CLIENT": "3 per minute"}
    return create_app(settings(database_url, **config, **extra))


def test_each_client_is_limited_on_its_own(auth, database_url, service, app):
    """Past RATELIMIT_INTROSPECT_PER_CLIENT a client gets 429; another client is not slowed."""
    token = auth.signup()["accessToken"]
    client, other = limited_app(database_url).test_client(), register(app, "reports")
    assert [introspect(client, service, token).status_code for _ in range(4)] == [200] * 3 + [429]
    refused = introspect(client, service, token)
    assert refused.json["code"] == "rate_limited" and int(refused.headers["Retry-After"]) > 0
    assert introspect(client, other, token).status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'authsvc_rate_limited_total{limit="introspect_per_client"}' in metrics


def test_the_limit_is_shared_by_instances_through_redis(auth, database_url, service):
    """Two instances on one Redis count one client's requests together."""
    token, url = auth.signup()["accessToken"], redis_server()
    prefix = f"authsvc-test-{uuid.uuid4().hex}"
    instances = [
        limited_app(database_url, RATELIMIT_STORAGE_URI=url, RATELIMIT_KEY_PREFIX=prefix)
        for _ in range(2)
    ]
    statuses = [introspect(instances[n % 2].test_client(), service, token) for n in range(4)]
    assert [response.status_code for response in statuses] == [200, 200, 200, 429]


def test_unauthenticated_requests_do_not_use_up_a_client_limit(auth, database_url, service):
    """Only a client's own authenticated requests count against its limit."""
    token = auth.signup()["accessToken"]
    client = limited_app(database_url).test_client()
    for _ in range(5):
        forged = basic(service.id, "not-the-secret")
        response = client.post("/oauth/introspect", data={"token": token}, headers=forged)
        assert response.status_code == 401
    assert introspect(client, service, token).status_code == 200


@pytest.mark.parametrize("kind", ["live", "signed-out", "refresh", "garbage"])
def test_a_wrong_secret_is_401_whatever_the_token(auth, client, service, kind):
    """A live token's session and a dead token take different reads; both refuse a wrong secret."""
    tokens = auth.signup()
    if kind == "signed-out":
        client.post("/auth/signout", headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    token = {"refresh": tokens["refreshToken"], "garbage": "x.y.z"}.get(kind, tokens["accessToken"])
    wrong = basic(service.id, "not-the-secret")
    response = client.post("/oauth/introspect", data={"token": token}, headers=wrong)
    assert_refused_client(response)
    assert introspect(client, service, token).status_code == 200


def test_a_database_that_does_not_answer_is_503():
    """With nothing listening where the database should be: 503 database_unavailable, never 500."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/authsvc"
    client = create_app(settings(url, DATABASE_TIMEOUT=1)).test_client()
    headers = basic(uuid.uuid4().hex, "some-secret")
    response = client.post("/oauth/introspect", data={"token": "a.b.c"}, headers=headers)
    assert response.status_code == 503 and response.content_type == PROBLEM
    assert response.json["code"] == "database_unavailable" and response.headers["Retry-After"]
