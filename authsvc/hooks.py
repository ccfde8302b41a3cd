"""What happens around every request: its id, the body limit, security headers."""

import io
import re
import uuid

from flask import abort, g, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from authsvc import docs
from authsvc.errors import Problem

REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def assign_request_id():
    """Adopt the client's X-Request-ID if it is sane, else make one up."""
    offered = request.headers.get("X-Request-ID", "")
    g.request_id = offered if REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex


def normalise_bearer_scheme():
    """Accept `bearer`, `BEARER`...: auth schemes are case-insensitive (RFC 9110).

    flask-jwt-extended looks for `Bearer` exactly; the header is rewritten
    before it reads it.
    """
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, space, rest = header.partition(" ")
    if space and scheme != "Bearer" and scheme.lower() == "bearer":
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer {rest}"


def limit_body_size():
    """Refuse a body over the limit, chunked ones included.

    Werkzeug refuses a declared Content-Length over MAX_CONTENT_LENGTH, but
    stops reading a chunked body at the limit without a word; reading one
    byte past the limit tells the two apart.
    """
    limit = request.max_content_length
    if request.content_length is not None:
        if request.content_length > limit:
            abort(413)
        return
    environ = request.environ
    if environ.get("wsgi.input_terminated"):
        try:
            body = environ["wsgi.input"].read(limit + 1)
        except Exception:
            # Each server raises its own error for a chunk size that is not
            # hex, a missing CRLF or a body cut short: the client's, not a 500.
            raise Problem(
                400, "bad_request", "The request body is not valid chunked encoding."
            ) from None
        if len(body) > limit:
            abort(413)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))


def echo_request_id(response):
    """Send the request id back on every response."""
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    return response


SECURITY_HEADERS = {
    # Tokens and account data must never sit in a shared or browser cache.
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


# The HTML pages' own policies, by blueprint; everything else is JSON under
# the default above. The pages mailed links open (pages.py) get their
# stylesheet and their form, nothing else; /docs what Swagger UI needs.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# The oauth blueprint's one page: the callback's answer to a bad state.
PAGE_POLICIES = {"pages": PAGE_POLICY, "oauth": PAGE_POLICY, "docs": docs.POLICY}


def add_security_headers(response):
    """Send the headers a JSON API should send, on every response."""
    response.headers.extend(SECURITY_HEADERS)
    if response.status_code == 204:
        # No content, so no type of content (flask-smorest labels it JSON).
        response.headers.pop("Content-Type", None)
    policy = PAGE_POLICIES.get(request.blueprint)
    if policy is not None:
        response.headers["Content-Security-Policy"] = policy
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=63072000"
    return response


def vary_by_origin(response):
    """Tell caches that the answer depends on Origin (CORS is on)."""
    response.vary.add("Origin")
    return response


def register_hooks(app):
    """Install the per-request hooks, proxy trust and CORS."""
    app.before_request(assign_request_id)
    app.before_request(limit_body_size)
    app.before_request(normalise_bearer_scheme)
    app.after_request(echo_request_id)
    app.after_request(add_security_headers)
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Only then is X-Forwarded-For believed, and only that many hops of it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    if app.config["CORS_ORIGINS"]:
        # Access-Control-Allow-Origin only for a listed Origin, never without
        # one; and Vary: Origin on every answer, since each may differ by it.
        CORS(
            app,
            origins=app.config["CORS_ORIGINS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Link", "Retry-After", "WWW-Authenticate", "X-Request-ID"],
            max_age=600,
            always_send=False,
            vary_header=False,
        )
        app.after_request(vary_by_origin)
