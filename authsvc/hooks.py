"""What happens around every request: its id and the body limit."""

import io
import re
import uuid

from flask import abort, g, request

REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def assign_request_id():
    """Adopt the client's X-Request-ID if it is sane, else make one up."""
    offered = request.headers.get("X-Request-ID", "")
    g.request_id = offered if REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex


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
    stream = request.environ.get("wsgi.input")
    if stream is not None and request.environ.get("wsgi.input_terminated"):
        body = stream.read(limit + 1)
        if len(body) > limit:
            abort(413)
        request.environ["wsgi.input"] = io.BytesIO(body)
        request.environ["CONTENT_LENGTH"] = str(len(body))


def echo_request_id(response):
    """Send the request id back on every response."""
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    return response


def register_hooks(app):
    """Install the per-request hooks."""
    app.before_request(assign_request_id)
    app.before_request(limit_body_size)
    app.after_request(echo_request_id)
