"""Every error as application/problem+json (RFC 9457), from one builder."""

import threading
from http import HTTPStatus

import marshmallow as ma
from apispec import BasePlugin
from flask import Response, json
from flask_smorest import Api
from flask_smorest.spec import openapi_cli, prepare_response

PROBLEM_MIMETYPE = "application/problem+json"
BEARER_CHALLENGE = 'Bearer realm="authsvc"'

DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

DEFAULT_DETAILS = {
    404: "There is nothing at this address.",
    405: "This address does not answer that method.",
    413: "The request body is larger than this service accepts.",
    415: "The request body must be JSON, sent as Content-Type: application/json.",
    422: "The request is invalid; see errors.",
    500: "Something went wrong on our side.",
}


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem, as every error of authsvc is shaped."""

    type = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    code = ma.fields.String(required=True)
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


class Problem(Exception):
    """An error a view raises to answer with a problem."""

    def __init__(self, status, code, detail, headers=None, **extra):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers, self.extra = headers or {}, extra


def problem(status, code=None, detail=None, headers=None, **extra):
    """Build a problem+json response; every 401 carries a Bearer challenge."""
    title = HTTPStatus(status).phrase
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail or DEFAULT_DETAILS.get(status, title),
        "code": code or DEFAULT_CODES.get(status, "error"),
        **extra,
    }
    response = Response(json.dumps(body), status, mimetype=PROBLEM_MIMETYPE)
    response.headers.extend(headers or {})
    if status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
    return response


def _validation_errors(messages):
    """Merge webargs' per-location messages into one field -> messages map."""
    errors = {}
    for location_messages in messages.values():
        if isinstance(location_messages, dict):
            errors.update(location_messages)
        else:
            errors["_body"] = location_messages
    return errors


def problem_for_http_exception(error):
    """Turn any HTTPException, webargs' validation errors included, into a problem."""
    status = error.code or 500
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    data = getattr(error, "data", None) or {}
    headers.extend((data.get("headers") or {}).items())
    messages = data.get("messages")
    if status == 400 and messages:
        return problem(400, "invalid_json", "The request body is not valid JSON.")
    if status == 422 and messages:
        return problem(422, headers=headers, errors=_validation_errors(messages))
    detail = DEFAULT_DETAILS.get(status) or error.description
    return problem(status, detail=detail, headers=headers)


REQUEST_ID_HEADER = {
    "description": "The client's X-Request-ID if it is 1 to 128 characters of "
    "A-Z a-z 0-9 . _ : / + = -, else a new one.",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:/+=-]{1,128}$"},
}


class RequestIdHeaderPlugin(BasePlugin):
    """Declare X-Request-ID on every response an operation documents inline.

    Responses shared as components (the problems) declare it themselves.
    """

    def operation_helper(self, path=None, operations=None, **kwargs):
        """Add the header to each inline response of each operation."""
        for operation in (operations or {}).values():
            for response in operation.get("responses", {}).values():
                if isinstance(response, dict) and "$ref" not in response:
                    response.setdefault("headers", {})["X-Request-ID"] = "X-Request-ID"


# The operations that never touch the database, so never answer 503 database_unavailable.
WITHOUT_DATABASE = ("/healthz", "/metrics")


class DatabaseUnavailablePlugin(BasePlugin):
    """Declare 503 on every operation that needs the database: it answers one when that fails."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        """Add the shared 503 response to each operation of a path that needs the database."""
        if path in WITHOUT_DATABASE:
            return
        for operation in (operations or {}).values():
            operation.setdefault("responses", {}).setdefault("503", "SERVICE_UNAVAILABLE")


SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "basicAuth": {"type": "http", "scheme": "basic"},
}


class ProblemApi(Api):
    """flask-smorest's Api, answering and documenting errors as problem+json.

    The OpenAPI document is written when it is first read (/openapi.json,
    /docs, `flask openapi`), not when the app is made: documenting every
    operation was more than half of create_app's time, which every gunicorn
    worker, every flask command and every test pays, and most never read it.
    """

    ERROR_SCHEMA = ProblemSchema
    # Each operation lists the errors it answers, rather than one catch-all
    # `default`, so that the document says which statuses to expect where.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def __init__(self, app=None, **kwargs):
        self._spec, self._spec_options, self._undocumented = None, None, []
        self._writing = threading.Lock()
        super().__init__(app, **kwargs)

    @property
    def spec(self):
        """Return the OpenAPI document, written on first use."""
        if self._spec is None and self._spec_options is not None:
            with self._writing:
                if self._spec is None:
                    self._write_spec()
        return self._spec

    @spec.setter
    def spec(self, value):
        self._spec = value

    def _init_spec(self, **options):
        """Keep the spec's options for later; offer `flask openapi` now."""
        self._spec_options = options
        self._app.cli.add_command(openapi_cli)

    def _write_spec(self):
        """Build the spec with the X-Request-ID and 503 plugins; document what is registered."""
        options = dict(self._spec_options)
        plugins = [*(options.pop("extra_plugins", None) or ())]
        plugins += [RequestIdHeaderPlugin(), DatabaseUnavailablePlugin()]
        super()._init_spec(extra_plugins=plugins, **options)
        for name, scheme in SECURITY_SCHEMES.items():
            self._spec.components.security_scheme(name, scheme)
        for blueprint, name, parameters in self._undocumented:
            blueprint.register_views_in_doc(
                self, self._app, self._spec, name=name, parameters=parameters
            )
            self._spec.tag({"name": name, "description": blueprint.description})

    def register_blueprint(self, blp, *, parameters=None, **options):
        """Register a blueprint in the app now; document its views when the spec is written."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def register_converter(self, converter, func):
        """Keep a path converter's schema for the spec (flask-smorest's own would write it)."""
        self._converters.append((converter, func))

    def register_field(self, field, *args):
        """Keep a field's type for the spec (flask-smorest's own would write it)."""
        self._fields.append((field, *args))

    def handle_http_exception(self, error):
        """Answer an HTTPException with a problem."""
        return problem_for_http_exception(error)

    def _register_responses(self):
        """Document every error response as problem+json, with its X-Request-ID."""
        self._spec.components.header("X-Request-ID", REQUEST_ID_HEADER)
        for status in HTTPStatus:
            response = {"description": status.phrase, "headers": {"X-Request-ID": "X-Request-ID"}}
            if status >= 400:
                response["schema"] = ProblemSchema
            prepare_response(response, self._spec, PROBLEM_MIMETYPE)
            self._spec.components.response(status.name, response, lazy=True)

    def _register_pagination_header(self):
        """Register nothing: authsvc pages with Link headers, not flask-smorest's pagination.

        flask-smorest's version registers a PaginationMetadata schema that no
        operation uses.
        """


def register_errorhandlers(app):
    """Answer raised Problems; HTTPExceptions go through ProblemApi."""
    app.register_error_handler(
        Problem,
        lambda error: problem(error.status, error.code, error.detail, error.headers, **error.extra),
    )
