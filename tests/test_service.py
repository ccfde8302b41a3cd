"""Probes, the OpenAPI document, and what every response carries."""

import json
from html.parser import HTMLParser

import pytest
from conftest import settings

from authsvc import create_app


def test_healthz_answers_while_serving(client):
    """/healthz is 200."""
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_answers_when_the_database_does(client):
    """/readyz is 200 with a working database."""
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_without_a_database(tmp_path):
    """/readyz is 503 problem+json when the database cannot be reached."""
    missing = tmp_path / "no-such-folder" / "authsvc.db"
    client = create_app(settings(f"sqlite:///{missing}")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"


def test_openapi_documents_every_endpoint(client):
    """/openapi.json is an OpenAPI 3 document naming the six endpoints and probes."""
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert {
        ("/auth/signup", "post"),
        ("/auth/signin", "post"),
        ("/auth/signout", "post"),
        ("/auth/refresh", "post"),
        ("/users/me", "get"),
        ("/users", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    } <= {(path, method) for path, item in spec["paths"].items() for method in item}


def test_openapi_documents_errors_as_problems(client):
    """Error responses are documented as application/problem+json."""
    spec = client.get("/openapi.json").json
    unauthorized = spec["components"]["responses"]["UNAUTHORIZED"]
    assert "application/problem+json" in unauthorized["content"]
    assert spec["paths"]["/users/me"]["get"]["security"] == [{"bearerAuth": []}]


class Scripts(HTMLParser):
    """Collect a page's <script> elements: their src and their inline text."""

    def __init__(self):
        super().__init__()
        self.sources, self.inline, self._in_script = [], "", False

    def handle_starttag(self, tag, attrs):
        """Note a script's src."""
        if tag == "script":
            self._in_script = True
            self.sources.append(dict(attrs).get("src"))

    def handle_endtag(self, tag):
        """Leave a script."""
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        """Keep any text inside a script."""
        if self._in_script:
            self.inline += data.strip()


def test_docs_page_is_utf8_with_no_inline_script(client):
    """/docs declares UTF-8 and loads every script from the service itself."""
    response = client.get("/docs")
    assert response.status_code == 200 and b'<meta charset="utf-8">' in response.data
    scripts = Scripts()
    scripts.feed(response.text)
    assert scripts.inline == "" and scripts.sources
    assert all(source.startswith("/docs/static/") for source in scripts.sources)
    for source in scripts.sources:
        served = client.get(source)
        assert served.status_code == 200 and served.mimetype == "text/javascript"


def test_docs_policy_names_no_cdn_and_no_inline_script(client):
    """The docs page's CSP allows this service's own files only."""
    policy = client.get("/docs").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'"
    assert "unsafe" not in policy and "http" not in policy


def test_request_id_is_echoed(client):
    """A sane X-Request-ID comes back as sent."""
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("offered", [None, "", "x" * 300, "bad id\twith space"])
def test_request_id_is_made_up_when_missing_or_odd(client, offered):
    """Without a usable X-Request-ID, a new one is made and sent back."""
    headers = {} if offered is None else {"X-Request-ID": offered}
    response = client.get("/healthz", headers=headers)
    assert response.headers["X-Request-ID"] not in ("", offered)


def test_request_id_is_on_errors_too(client):
    """Even a 404 carries the request id."""
    response = client.get("/nowhere", headers={"X-Request-ID": "req-1"})
    assert response.status_code == 404 and response.headers["X-Request-ID"] == "req-1"


def operations(spec):
    """Yield (method, path, operation) for every operation of an OpenAPI document."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method, path, operation


def test_openapi_declares_request_id_on_every_response(client):
    """Every response of every operation, inline or shared, declares X-Request-ID."""
    spec = client.get("/openapi.json").json
    shared = spec["components"]["responses"]
    declared = spec["components"]["headers"]["X-Request-ID"]
    assert declared["required"] is True
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if "$ref" in response:
                response = shared[response["$ref"].rsplit("/", 1)[1]]
            headers = response.get("headers", {})
            assert headers.get("X-Request-ID") == {"$ref": "#/components/headers/X-Request-ID"}, (
                f"{method.upper()} {path} {status}"
            )


def test_openapi_declares_503_wherever_the_database_is_needed(client):
    """Every operation but /healthz and /metrics may answer 503 database_unavailable."""
    spec = client.get("/openapi.json").json
    for method, path, operation in operations(spec):
        declared = "503" in operation["responses"]
        assert declared == (path not in ("/healthz", "/metrics")), f"{method.upper()} {path}"


def test_openapi_declares_paging_of_users(client):
    """GET /users declares its Link header and a limit that defaults to 50."""
    operation = client.get("/openapi.json").json["paths"]["/users"]["get"]
    assert "Link" in operation["responses"]["200"]["headers"]
    (limit,) = [p for p in operation["parameters"] if p["name"] == "limit"]
    assert limit["schema"]["default"] == 50 and limit["schema"]["minimum"] == 1
    assert "200" in limit["description"]


def test_openapi_schemas_are_all_used(client):
    """Every schema in components is referenced somewhere else in the document."""
    spec = client.get("/openapi.json").json
    schemas = spec["components"].pop("schemas")
    text = json.dumps(spec) + json.dumps(schemas)
    unused = [name for name in schemas if text.count(f'"#/components/schemas/{name}"') == 0]
    assert unused == []
