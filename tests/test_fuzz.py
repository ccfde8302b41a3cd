"""Property-based fuzzing of every operation in the service's own /openapi.json.

schemathesis generates valid and invalid requests from the document, sends
them in-process, and checks each answer against the same document: never a
5xx, a documented status, a documented content type, a body that matches the
documented schema. SQLite only; a fixed seed keeps CI reproducible.
"""

import io

import schemathesis
from conftest import PASSWORD, open_session_of, settings
from flask_migrate import upgrade
from introspecting import basic, register

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import User
from authsvc.passwords import hash_password

ADMIN_EMAIL = "fuzz-admin@example.com"
# A provider, so that sign-in with providers is fuzzed past its 404: GitHub's
# preset needs no network at start-up, and nothing here reaches its address.
GITHUB = {
    "OAUTH_PROVIDERS": ["github"],
    "OAUTH_GITHUB_URL": "http://127.0.0.1:9",
    "OAUTH_GITHUB_CLIENT_ID": "fuzz-client",
    "OAUTH_GITHUB_CLIENT_SECRET": "fuzz-secret",
    "OAUTH_REDIRECT_URLS": ["http://127.0.0.1:5173/signed-in"],
}

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261126,
        "generation": {"max-examples": 100, "deterministic": True, "database": "none"},
        "checks": {
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            # X-Request-ID on every response, Link on a users page: as declared.
            "response_headers_conformance": {"enabled": True},
            # Valid JSON Schema is not valid input: an address must pass
            # email-validator, a cursor must be one the service made, so a
            # schema-valid request may rightly get 422.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)


def migrated_app():
    """Return an app on a migrated in-memory SQLite database with one admin.

    schemathesis' pytest integration loads the schema, and draws the explicit
    examples through the auth provider, while the module is collected: the
    app and its database must exist by then, before any fixture runs. A
    server error stays a 500 response rather than an exception.
    """
    app = create_app(settings("sqlite://", TESTING=False, PROPAGATE_EXCEPTIONS=False, **GITHUB))
    with app.app_context():
        upgrade()
        db.session.add(User(email=ADMIN_EMAIL, password_hash=hash_password(PASSWORD), role="admin"))
        db.session.commit()
    app.config["FUZZ_CLIENT"] = register(app, "fuzz")
    return app


# Each case carries these stand-ins until it is sent (see FreshTokens).
PENDING = {kind: f"pending-{kind}" for kind in ("accessToken", "refreshToken")}


class FreshTokens:
    """Swap the stand-in tokens of a request, as it arrives, for a new admin session's.

    Here rather than in the test: a case whose headers or body the test
    changed would be checked by schemathesis as a case of another kind.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        """Open an admin session if the request has a stand-in; put its tokens in their place."""
        kind = {f"Bearer {token}": kind for kind, token in PENDING.items()}.get(
            environ.get("HTTP_AUTHORIZATION")
        )
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        stand_in = f"token={PENDING['accessToken']}".encode()
        if kind or stand_in in body:
            tokens = open_session_of(self.app, ADMIN_EMAIL)
            if kind:
                environ["HTTP_AUTHORIZATION"] = f"Bearer {tokens[kind]}"
            body = body.replace(stand_in, f"token={tokens['accessToken']}".encode())
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
        return self.app(environ, start_response)


APP = migrated_app()
schema = schemathesis.openapi.from_wsgi("/openapi.json", FreshTokens(APP), config=CONFIG)


@schema.auth(refresh_interval=None, retry_on=[])
class FreshAdminSession:
    """Give each case a session of its own, since signout and refresh use tokens up.

    No caching and no retry on 401: each case gets a token of its own, and a
    401 is never papered over by a replay. The session is opened when the
    case is sent: schemathesis makes its coverage cases while the module is
    collected, in the controller and in every xdist worker alike, and a
    signin for each of them there cost each process some 10 s of CPU:
    FreshTokens opens the session as the request arrives.
    """

    def get(self, case, context):
        """Promise tokens to an operation that needs them (FreshTokens keeps the promise)."""
        if not context.operation.definition.raw.get("security"):
            return None
        return PENDING

    def set(self, case, tokens, context):
        """Present the refresh token to /auth/refresh, the access token elsewhere.

        A registered client's Basic credentials go to /oauth/introspect, and
        a generated token of even length is swapped for the admin's access
        token: the fuzzer's own inventions are never live, and the active
        answer must conform to the document too.
        """
        kind = "refreshToken" if case.operation.path == "/auth/refresh" else "accessToken"
        authorization = {"Authorization": f"Bearer {tokens[kind]}"}
        if case.operation.path == "/oauth/introspect":
            service = APP.config["FUZZ_CLIENT"]
            authorization = basic(service.id, service.secret)
            token = case.body.get("token") if isinstance(case.body, dict) else None
            if isinstance(token, str) and len(token) % 2 == 0:
                case.body["token"] = tokens["accessToken"]
        case.headers = {**(case.headers or {}), **authorization}


@schema.parametrize()
def test_api_conforms_to_its_document(case):
    """Whatever the fuzzer sends, the answer is documented and never a 5xx."""
    case.call_and_validate()


def test_every_operation_lists_its_statuses():
    """No operation has a catch-all `default` response, under which any status conforms."""
    catch_alls = [
        f"{method.upper()} {path}"
        for path, item in schema.raw_schema["paths"].items()
        for method, operation in item.items()
        if method != "parameters" and "default" in operation["responses"]
    ]
    assert catch_alls == []
