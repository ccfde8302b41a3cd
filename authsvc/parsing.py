"""Reading request bodies: JSON only, and every bad body a clear 4xx."""

import json
from http import HTTPStatus

import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from authsvc.errors import Problem


def _unique_keys(pairs):
    """Build a JSON object, refusing a key given twice: which one counts is ambiguous."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")
    return document


def _refuse_constant(name):
    """Refuse NaN and Infinity: Python reads them, but they are not JSON."""
    raise ValueError(f"{name} is not JSON")


class JSONBodyParser(FlaskParser):
    """webargs' Flask parser, strict about what a JSON body is."""

    def load_json(self, request, schema):
        """Return the parsed body: 415 if it is not JSON, 400 if it does not parse."""
        if not is_json_request(request):
            raise Problem(
                415,
                "unsupported_media_type",
                "The request body must be JSON, sent as Content-Type: application/json.",
            )
        body = request.get_data(cache=True)
        if not body.strip():
            return core.missing
        try:
            text = body.decode("utf-8")
            return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            # ValueError covers bad UTF-8, bad JSON, NaN, duplicate keys and
            # integers too long to convert; RecursionError a body nested
            # thousands of levels deep.
            raise Problem(
                400, "invalid_json", "The request body is not valid JSON, or repeats a key."
            ) from None


class Blueprint(flask_smorest.Blueprint):
    """A flask-smorest Blueprint whose bodies go through JSONBodyParser."""

    ARGUMENTS_PARSER = JSONBodyParser()
    BODY_ERRORS = (
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    )

    def arguments(self, schema, *, location="json", **kwargs):
        """Read arguments; a JSON body also documents its 400, 413 and 415."""
        read = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return read

        def decorator(view):
            for status in self.BODY_ERRORS:
                view = self.alt_response(status, response=status.name)(view)
            return read(view)

        return decorator
