"""Blueprint "introspection": RFC 7662, so that other services see a revocation at once.

A registered service (clients.py) sends `POST /oauth/introspect` with HTTP
Basic and a form body `token=...`. The token is verified as flask-jwt-extended
verifies a Bearer token, and its session is read as the revocation callback
reads it (revocation.open_session_row), with the client's secret digest in
the same indexed query: a live token costs one query, as `GET /users/me`
does. Then the client is authenticated, then counted against its limit.
Anything that is not a live access token of an open session is
`{"active": false}`, with nothing said about why.
"""

import base64
import copy
import functools
import json
from urllib.parse import unquote_plus

import jwt as pyjwt
import marshmallow as ma
from flask import g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.utils import base64url_decode
from marshmallow import fields, validate
from webargs.flaskparser import FlaskParser

from authsvc import clients
from authsvc.errors import Problem
from authsvc.limits import named_limit
from authsvc.models import amr_methods
from authsvc.parsing import Blueprint
from authsvc.revocation import open_session_row
from authsvc.tokens import SESSION_CHECK

FORM = "application/x-www-form-urlencoded"
BASIC_CHALLENGE = 'Basic realm="authsvc"'
INACTIVE = {"active": False}
# revocation.py's SESSION_CHECK with the asking client's secret digest beside
# it: a live token's session and the client in one query, on three primary keys.
CLIENT_AND_SESSION = SESSION_CHECK.add_columns(
    clients.DIGEST_OF.scalar_subquery().label("client_digest")
)


class IntrospectionRequestSchema(ma.Schema):
    """The form RFC 7662 sends; other parameters are ignored, as it allows."""

    class Meta:
        unknown = ma.EXCLUDE

    # RFC 6749 (3.1): a parameter sent without a value counts as omitted.
    token = fields.String(required=True, validate=validate.Length(min=1))
    token_type_hint = fields.String(
        metadata={"description": "Ignored: authsvc tells the kind of token from the token."}
    )


class IntrospectionSchema(ma.Schema):
    """RFC 7662's answer: `active`, and for a live access token what it says."""

    active = fields.Boolean(required=True)
    sub = fields.String(metadata={"description": "The user's id, as the token carries it"})
    sid = fields.String(metadata={"description": "The session's id"})
    exp = fields.Integer(metadata={"description": "Expiry, epoch seconds"})
    iat = fields.Integer(metadata={"description": "Issued at, epoch seconds"})
    iss = fields.String(metadata={"description": "JWT_ISSUER, when set"})
    aud = fields.String(metadata={"description": "JWT_AUDIENCE, when set"})
    amr = fields.List(fields.String(), metadata={"description": "How the session began"})
    token_type = fields.String(validate=validate.Equal("access_token"))


class FormBodyParser(FlaskParser):
    """webargs' Flask parser for an OAuth form: 415 for any other body, 400 for a bad form.

    The schema documents the form; the form itself is checked here, by hand,
    with exactly the schema's rules (a `token` of at least one character,
    other parameters ignored): marshmallow's load cost introspection a
    tenth of its time, against a bound of 1.2 times a `GET /users/me`.
    """

    def load_form(self, req, schema):
        """Return the form; 415 unless it is form-encoded, 400 if a parameter repeats."""
        if req.mimetype != FORM:
            raise Problem(
                415,
                "unsupported_media_type",
                f"The request body must be a form, sent as Content-Type: {FORM}.",
            )
        form = req.form
        if any(len(values) > 1 for values in form.listvalues()):
            # RFC 6749 (3.1): parameters must not be included more than once.
            raise Problem(400, "invalid_request", "A parameter is given more than once.")
        return form

    def parse(self, argmap, req=None, **options):
        """Return the form's parameters that the schema names; 400 without a token."""
        form = self.load_form(req or self.get_default_request(), argmap)
        # RFC 6749 (3.1): a parameter sent without a value counts as omitted.
        if not form.get("token"):
            raise Problem(400, "invalid_request", "The form needs a token parameter.")
        return {name: form[name] for name in argmap.fields if name in form}


class FormBlueprint(Blueprint):
    """A Blueprint whose bodies are forms, as OAuth's endpoints take them."""

    ARGUMENTS_PARSER = FormBodyParser()


bp = FormBlueprint(
    "introspection",
    __name__,
    url_prefix="/oauth",
    description="Token introspection for registered services (RFC 7662).",
)


def basic_credentials():
    """Return the client id and secret of this request's HTTP Basic credentials, or None.

    RFC 6749 (2.3.1) form-encodes each before joining them with a colon and
    base64-encoding the pair, so each is form-decoded here.
    """
    scheme, _, encoded = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64, or not UTF-8 inside
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def invalid_client():
    """Return the 401 of a missing, malformed or wrong client credential, or a deleted client."""
    return Problem(
        401,
        "invalid_client",
        "Authenticate with HTTP Basic: the client id and secret of a registered service.",
        headers={"WWW-Authenticate": BASIC_CHALLENGE},
    )


def credentials_required(view):
    """Refuse a request without well-formed HTTP Basic credentials: 401 with a Basic challenge.

    Whether they are a registered client's is checked later, in the same
    query as the token's session (authenticated_session).
    """

    @functools.wraps(view)
    def presented(*args, **kwargs):
        g.client_credentials = basic_credentials()
        if g.client_credentials is None:
            raise invalid_client()
        return view(*args, **kwargs)

    # What Blueprint.doc(security=...) records, without a wrapper of its own.
    apidoc = copy.deepcopy(getattr(presented, "_apidoc", {}))
    apidoc.setdefault("manual_doc", {})["security"] = [{"basicAuth": []}]
    presented._apidoc = apidoc
    return presented


def header_type(verified_token):
    """Return the `typ` of a token that decode_token verified, reading only its header.

    PyJWT's get_unverified_header would check the whole token again, at
    three times the cost of the verification decode_token's cache gives.
    """
    header = json.loads(base64url_decode(verified_token.split(".", 1)[0]))
    return header.get("typ")


def verified_access_claims(token):
    """Return the claims of a validly signed, unexpired access token, or None.

    Verified as a Bearer token is (algorithm, key and its rotation, iss, aud,
    lifetime, through the same cache), then only an access token by both
    its `type` claim and its `at+jwt` header.
    """
    try:
        claims = decode_token(token)
    except (pyjwt.PyJWTError, JWTExtendedException):
        return None
    if claims["type"] != "access" or header_type(token) != "at+jwt":
        return None
    return claims


def authenticated_session(claims):
    """Authenticate the client (401 if it may not ask); return the token's open session, or None.

    For a verified access token, the session is read as the revocation
    callback reads it, with the client's secret digest in the same query;
    for any other token, or a session that is not open, the client alone.
    """
    client_id, secret = g.client_credentials
    row = None
    if claims is not None:
        row = open_session_row(claims, CLIENT_AND_SESSION, client_id=clients.lookup_id(client_id))
    digest = clients.stored_digest(client_id) if row is None else row.client_digest
    if not clients.secret_matches(digest, secret):
        raise invalid_client()
    g.introspecting_client = client_id
    return row


def _client_key():
    """Key an introspection by the client that authenticated it."""
    return "client:" + g.introspecting_client


@named_limit("introspect_per_client", key_func=_client_key)
def count_for_the_client():
    """Count this introspection against its client's limit; over it, answer 429."""


def introspection_of(claims, row):
    """Return RFC 7662's answer: the token's claims if its session is open, else only inactive."""
    if row is None:
        return INACTIVE
    answer = {
        "active": True,
        "sub": claims["sub"],
        "sid": claims["sid"],
        "exp": claims["exp"],
        "iat": claims["iat"],
    }
    answer.update({name: claims[name] for name in ("iss", "aud") if name in claims})
    answer.update(amr=amr_methods(row.amr), token_type="access_token")
    return answer


@bp.post("/introspect")
@bp.response(200, IntrospectionSchema)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(413, response="REQUEST_ENTITY_TOO_LARGE")
@bp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@credentials_required
@bp.arguments(IntrospectionRequestSchema(), location="form", error_status_code=400)
def introspect(form):
    """Tell a registered service whether an access token is live now, and whose it is."""
    claims = verified_access_claims(form["token"])
    row = authenticated_session(claims)
    count_for_the_client()
    return introspection_of(claims, row)
