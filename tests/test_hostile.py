"""Hostile input on every endpoint: the documented 4xx problem, and nothing written.

Each case names a request and the status and code the contract gives it. The
app answers a server error with a 500 response rather than raising, so a
crash shows up as a wrong status.
"""

import base64
import functools
import io
import json
import time

import jwt
import pytest
import sqlalchemy as sa
from conftest import PASSWORD, TEST_SECRET, bearer, settings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import MfaChallenge, RecoveryCode, Session, TotpFactor, User

JSON = "application/json"
LIMIT = 16384
EMAIL = "user@example.com"
PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}
OTHER_KEY = "another-signing-key-that-is-long-enough-for-hs256"
ED25519_KEY = Ed25519PrivateKey.generate()
DROP = object()


# As in production: a server error is a 500 response, not an exception.
SERVED = {"TESTING": False, "PROPAGATE_EXCEPTIONS": False}

# The HS512 case signs with the service's 48-byte key, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.fixture(scope="module")
def served(database_url):
    """Return the app the cases are sent to, one per database."""
    return create_app(settings(database_url, **SERVED))


@pytest.fixture
def app(served):
    """Give each case the module's app, on a database emptied after the case (emptied_after)."""
    return served


class Keys:
    """A case's client, and the user's and the admin's tokens, signed in when first asked for.

    Most cases send no token, and signing both in for every case was a
    third of the module's time. A case asks for its tokens in request_for,
    before the rows are first read.
    """

    def __init__(self, auth, client):
        self._auth, self.client = auth, client

    @functools.cached_property
    def user(self):
        """Return a session of the user's (what its signin answers)."""
        return self._auth.session(EMAIL)

    @functools.cached_property
    def admin(self):
        """Return a session of the admin's (what its signin answers)."""
        return self._auth.session("admin@example.com")


@pytest.fixture
def keys(app, auth, client, password_hash):
    """Make a user and an admin; give cases their tokens (a session opened when used), the client.

    Both are rows rather than signups: rating the password took a third of
    each of the 2,000 cases' time. The admin's address is verified, as the
    CLI makes admins: enrolling a second factor needs it.
    """
    with app.app_context():
        db.session.add(User(email=EMAIL, password_hash=password_hash))
        db.session.add(
            User(
                email="admin@example.com",
                password_hash=password_hash,
                role="admin",
                email_verified=True,
            )
        )
        db.session.commit()
    return Keys(auth, client)


def snapshot(app):
    """Return every row of the users, sessions and second-factor tables."""
    with app.app_context():
        return {
            table.__tablename__: db.session.execute(
                sa.select(table.__table__).order_by(*table.__table__.primary_key)
            ).all()
            for table in (User, Session, TotpFactor, RecoveryCode, MfaChallenge)
        }


# Request builders: each returns a function of `keys` giving client.open()'s arguments.


def raw(data, content_type=JSON, **extra):
    """Send bytes or text as the body."""
    return lambda keys: {"data": data, "content_type": content_type, **extra}


def document(value):
    """Send a value serialised as JSON."""
    return raw(json.dumps(value))


def credentials(email=EMAIL, password=PASSWORD, **extra):
    """Send an email and a password, and anything else given."""
    return document({"email": email, "password": password, **extra})


def claims_of(token):
    """Return a token's claims without checking its signature."""
    return jwt.decode(token, options={"verify_signature": False})


def forged(kind="access", key=TEST_SECRET, algorithm="HS256", jwt_headers=None, **changes):
    """Send the admin's real token of a kind with its claims changed, then signed as told.

    A change may be a function of `keys`; DROP removes a claim.
    """

    def build(keys):
        claims = claims_of(keys.admin[f"{kind}Token"])
        for name, value in changes.items():
            claims[name] = value(keys) if callable(value) else value
        claims = {name: value for name, value in claims.items() if value is not DROP}
        token = jwt.encode(claims, key, algorithm=algorithm, headers=jwt_headers)
        return {"headers": bearer(token)}

    return build


def presented(kind="access", who="admin"):
    """Send a real token in the Authorization header."""
    return lambda keys: {"headers": bearer(getattr(keys, who)[f"{kind}Token"])}


def signed_out(kind):
    """Sign the admin's session out, then send its token of a kind."""

    def build(keys):
        keys.client.post("/auth/signout", headers=bearer(keys.admin["accessToken"]))
        return presented(kind)(keys)

    return build


def authorization(template):
    """Send an Authorization header; `{token}` stands for the endpoint's real token."""
    return lambda kind: (
        lambda keys: {
            "headers": {"Authorization": template.format(token=keys.admin[f"{kind}Token"])}
        }
    )


def now(offset):
    """Return a claim value `offset` seconds from the moment the token is made."""
    return lambda keys: int(time.time()) + offset


# Bodies for signup and signin: name, request, signup's and signin's status and
# code (None where the request is not hostile there, say a NUL-bearing password
# that signup rightly accepts).
INVALID = (422, "validation_error")
BAD_JSON = (400, "invalid_json")
TOO_LARGE = (413, "payload_too_large")
WRONG_TYPE = (415, "unsupported_media_type")
NO_MATCH = (401, "invalid_credentials")
EVERYWHERE_INVALID = (INVALID, INVALID)
CONFUSABLE = "us\u0435r@example.com"  # a Cyrillic "e"

BODIES = [
    ("email-number", credentials(email=42), *EVERYWHERE_INVALID),
    ("email-true", credentials(email=True), *EVERYWHERE_INVALID),
    ("email-null", credentials(email=None), *EVERYWHERE_INVALID),
    ("email-array", credentials(email=[EMAIL]), *EVERYWHERE_INVALID),
    ("email-object-operator", credentials(email={"$ne": None}), *EVERYWHERE_INVALID),
    ("password-number", credentials(password=12345678), *EVERYWHERE_INVALID),
    ("password-false", credentials(password=False), *EVERYWHERE_INVALID),
    ("password-null", credentials(password=None), *EVERYWHERE_INVALID),
    ("password-array", credentials(password=[PASSWORD]), *EVERYWHERE_INVALID),
    ("password-object", credentials(password={"value": PASSWORD}), *EVERYWHERE_INVALID),
    ("both-null", document({"email": None, "password": None}), *EVERYWHERE_INVALID),
    ("empty-object", document({}), *EVERYWHERE_INVALID),
    ("top-level-array", document([{"email": EMAIL, "password": PASSWORD}]), *EVERYWHERE_INVALID),
    ("top-level-string", document("email=user@example.com"), *EVERYWHERE_INVALID),
    ("top-level-null", raw("null"), *EVERYWHERE_INVALID),
    ("empty-body", raw(b""), *EVERYWHERE_INVALID),
    ("unknown-field-role", credentials(role="admin"), *EVERYWHERE_INVALID),
    ("unknown-field-id", credentials(id=1), *EVERYWHERE_INVALID),
    ("unknown-field-proto", credentials(__proto__={"role": "admin"}), *EVERYWHERE_INVALID),
    (
        "email-key-capitalised",
        document({"Email": EMAIL, "password": PASSWORD}),
        *EVERYWHERE_INVALID,
    ),
    (
        "email-huge-under-limit",
        credentials(email="a" * 16000 + "@example.com"),
        *EVERYWHERE_INVALID,
    ),
    ("password-huge-under-limit", credentials(password="p" * 16000), *EVERYWHERE_INVALID),
    ("body-one-byte-over-limit", raw(b" " * (LIMIT + 1)), TOO_LARGE, TOO_LARGE),
    ("body-far-over-limit", credentials(password="p" * 100_000), TOO_LARGE, TOO_LARGE),
    (
        "body-chunked-over-limit",
        lambda keys: {
            "input_stream": io.BytesIO(b" " * (LIMIT + 1)),
            "content_type": JSON,
            "environ_overrides": {"wsgi.input_terminated": True},
        },
        TOO_LARGE,
        TOO_LARGE,
    ),
    (
        "invalid-utf8",
        raw(b'{"email": "\xc3\x28@example.com", "password": "x"}'),
        BAD_JSON,
        BAD_JSON,
    ),
    ("latin1-body", raw('{"email": "é@example.com"}'.encode("latin-1")), BAD_JSON, BAD_JSON),
    ("utf16-body", raw(json.dumps({"email": EMAIL}).encode("utf-16")), BAD_JSON, BAD_JSON),
    ("nul-in-email-local", credentials(email="user\x00@example.com"), *EVERYWHERE_INVALID),
    ("nul-after-email", credentials(email=EMAIL + "\x00"), *EVERYWHERE_INVALID),
    ("nul-in-password", credentials(password=PASSWORD + "\x00"), None, NO_MATCH),
    ("nul-only-password", credentials(password="\x00" * 8), None, NO_MATCH),
    ("confusable-cyrillic-e", credentials(email=CONFUSABLE), *EVERYWHERE_INVALID),
    ("confusable-domain", credentials(email="user@ex\u0430mple.com"), *EVERYWHERE_INVALID),
    ("fullwidth-letters", credentials(email="\uff55ser@example.com"), *EVERYWHERE_INVALID),
    ("zero-width-space", credentials(email="us\u200ber@example.com"), *EVERYWHERE_INVALID),
    (
        "email-case-and-space-twin",
        credentials(email="  USER@Example.COM "),
        (409, "email_taken"),
        None,
    ),
    ("sql-or-true-email", credentials(email="' OR '1'='1"), *EVERYWHERE_INVALID),
    ("sql-comment-email", credentials(email="user@example.com'--"), *EVERYWHERE_INVALID),
    (
        "sql-drop-email",
        credentials(email="x@example.com'; DROP TABLE users; --"),
        *EVERYWHERE_INVALID,
    ),
    ("sql-quote-valid-email", credentials(email="o'brien@example.com"), None, NO_MATCH),
    ("sql-or-true-password", credentials(password="' OR '1'='1' --"), None, NO_MATCH),
    ("json-in-email", credentials(email='user@example.com", "role": "admin'), *EVERYWHERE_INVALID),
    ("json-in-password", credentials(password='x", "role": "admin", "p": "'), None, NO_MATCH),
    ("password-129-ascii", credentials(password="p" * 129), *EVERYWHERE_INVALID),
    ("password-129-accented", credentials(password="é" * 129), *EVERYWHERE_INVALID),
    ("password-129-emoji", credentials(password="\U0001f600" * 129), *EVERYWHERE_INVALID),
    ("password-7-emoji", credentials(password="\U0001f600" * 7), *EVERYWHERE_INVALID),
    (
        "lone-surrogate-email",
        raw('{"email": "\\ud800@example.com", "password": "x"}'),
        *EVERYWHERE_INVALID,
    ),
    (
        "lone-surrogate-password",
        raw('{"email": "user@example.com", "password": "violet-kettle-\\udfff"}'),
        *EVERYWHERE_INVALID,
    ),
    (
        "nested-past-recursion",
        raw('{"email": ' + "[" * 5000 + "]" * 5000 + "}"),
        BAD_JSON,
        BAD_JSON,
    ),
    ("nested-objects-deep", raw('{"a":' * 2000 + "1" + "}" * 2000), BAD_JSON, BAD_JSON),
    ("nested-shallow", raw('{"email": ' + "[" * 50 + "]" * 50 + "}"), *EVERYWHERE_INVALID),
    (
        "duplicate-email-key",
        raw(
            f'{{"email": "first@example.com", "email": "second@example.com", '
            f'"password": "{PASSWORD}"}}'
        ),
        BAD_JSON,
        BAD_JSON,
    ),
    (
        "duplicate-password-key",
        raw(f'{{"email": "new@example.com", "password": "x", "password": "{PASSWORD}"}}'),
        BAD_JSON,
        BAD_JSON,
    ),
    ("nan-literal", raw(f'{{"email": NaN, "password": "{PASSWORD}"}}'), BAD_JSON, BAD_JSON),
    (
        "infinity-literal",
        raw('{"email": "a@example.com", "password": Infinity}'),
        BAD_JSON,
        BAD_JSON,
    ),
    ("number-overflowing-float", raw('{"email": 1e400, "password": "x"}'), *EVERYWHERE_INVALID),
    ("two-documents", raw(json.dumps({"email": EMAIL}) * 2), BAD_JSON, BAD_JSON),
    ("single-quotes", raw("{'email': 'user@example.com'}"), BAD_JSON, BAD_JSON),
    ("comment", raw('{"email": "user@example.com" /* , "role": "admin" */}'), BAD_JSON, BAD_JSON),
    ("form-encoded-as-json", raw("email=user%40example.com&password=x"), BAD_JSON, BAD_JSON),
    (
        "no-content-type",
        raw(json.dumps({"email": EMAIL}), content_type=None),
        WRONG_TYPE,
        WRONG_TYPE,
    ),
    (
        "text-plain",
        raw(json.dumps({"email": EMAIL}), content_type="text/plain"),
        WRONG_TYPE,
        WRONG_TYPE,
    ),
    (
        "text-json",
        raw(json.dumps({"email": EMAIL}), content_type="text/json"),
        WRONG_TYPE,
        WRONG_TYPE,
    ),
    (
        "form-urlencoded",
        raw("email=user%40example.com", content_type="application/x-www-form-urlencoded"),
        WRONG_TYPE,
        WRONG_TYPE,
    ),
    (
        "xml",
        raw("<email>user@example.com</email>", content_type="application/xml"),
        WRONG_TYPE,
        WRONG_TYPE,
    ),
    (
        "utf16-charset",
        raw(json.dumps({"email": EMAIL}).encode("utf-16"), content_type=f"{JSON}; charset=utf-16"),
        BAD_JSON,
        BAD_JSON,
    ),
]

# Tokens where an access token is expected: name, request, status, code.
ACCESS_TOKENS = [
    ("alg-none", forged(key=None, algorithm="none"), 401, "invalid_token"),
    ("other-key", forged(key=OTHER_KEY), 401, "invalid_token"),
    ("hs512-own-key", forged(algorithm="HS512"), 401, "invalid_token"),
    ("eddsa-own-keypair", forged(key=ED25519_KEY, algorithm="EdDSA"), 401, "invalid_token"),
    (
        "kid-path-traversal",
        forged(key=OTHER_KEY, jwt_headers={"kid": "../../dev/null"}),
        401,
        "invalid_token",
    ),
    ("refresh-token", presented("refresh"), 401, "invalid_token"),
    ("type-swapped-to-refresh", forged(type="refresh"), 401, "invalid_token"),
    ("type-unknown", forged(type="admin"), 401, "token_revoked"),
    ("typ-header-unknown", forged(jwt_headers={"typ": "JOSE"}), 401, "invalid_token"),
    ("integer-sub", forged(sub=lambda keys: keys.admin["id"]), 401, "invalid_token"),
    ("sub-missing", forged(sub=DROP), 401, "invalid_token"),
    ("sub-unknown-user", forged(sub="2147483647"), 401, "token_revoked"),
    ("sub-of-other-user", forged(sub=lambda keys: str(keys.user["id"])), 401, "token_revoked"),
    ("sub-sql", forged(sub="1 OR 1=1"), 401, "token_revoked"),
    ("sid-missing", forged(sid=DROP), 401, "token_revoked"),
    ("sid-unknown", forged(sid="no-such-session"), 401, "token_revoked"),
    (
        "sid-of-other-user",
        forged(sid=lambda keys: claims_of(keys.user["accessToken"])["sid"]),
        401,
        "token_revoked",
    ),
    ("sid-integer", forged(sid=1), 401, "token_revoked"),
    ("sid-sql", forged(sid="x' OR '1'='1"), 401, "token_revoked"),
    ("expired", forged(exp=now(-60)), 401, "token_expired"),
    ("not-yet-valid", forged(nbf=now(3600)), 401, "invalid_token"),
    ("issued-in-future", forged(iat=now(3600)), 401, "invalid_token"),
    ("exp-not-a-number", forged(exp="never"), 401, "invalid_token"),
    ("nbf-missing", forged(nbf=DROP), 401, "token_revoked"),
    (
        "signature-cut",
        lambda keys: {"headers": bearer(keys.admin["accessToken"][:-4])},
        401,
        "invalid_token",
    ),
    ("signed-out-session", signed_out("access"), 401, "token_revoked"),
]

# Tokens where the refresh token is expected: name, request, status, code.
REFRESH_TOKENS = [
    ("access-token", presented("access"), 401, "invalid_token"),
    ("alg-none", forged("refresh", key=None, algorithm="none"), 401, "invalid_token"),
    ("other-key", forged("refresh", key=OTHER_KEY), 401, "invalid_token"),
    ("type-swapped-to-access", forged("refresh", type="access"), 401, "invalid_token"),
    ("typ-header-at-jwt", forged("refresh", jwt_headers={"typ": "at+jwt"}), 401, "invalid_token"),
    ("integer-sub", forged("refresh", sub=lambda keys: keys.admin["id"]), 401, "invalid_token"),
    (
        "sub-of-other-user",
        forged("refresh", sub=lambda keys: str(keys.user["id"])),
        401,
        "token_revoked",
    ),
    ("sid-missing", forged("refresh", sid=DROP), 401, "token_revoked"),
    ("sid-unknown", forged("refresh", sid="no-such-session"), 401, "token_revoked"),
    ("expired", forged("refresh", exp=now(-60)), 401, "token_expired"),
    ("not-yet-valid", forged("refresh", nbf=now(3600)), 401, "invalid_token"),
    ("signed-out-session", signed_out("refresh"), 401, "token_revoked"),
]

# Authorization headers, given the endpoint's kind of token: name, template, status, code.
HEADERS = [
    ("empty", "", 401, "missing_token"),
    ("blank", "   ", 401, "missing_token"),
    ("scheme-only", "Bearer", 401, "invalid_token"),
    ("scheme-and-space", "Bearer ", 401, "invalid_token"),
    ("no-scheme", "{token}", 401, "invalid_token"),
    ("basic-scheme", "Basic dXNlcjpwYXNzd29yZA==", 401, "invalid_token"),
    ("token-scheme", "Token {token}", 401, "invalid_token"),
    ("two-bearer-fields", "Bearer {token}, Bearer {token}", 401, "invalid_token"),
    ("bearer-then-garbage-bearer", "Bearer {token}, Bearer garbage", 401, "invalid_token"),
    ("three-parts", "Bearer {token} extra", 401, "invalid_token"),
    ("non-ascii", "Bearer t\u00f6k\u00e9n", 401, "invalid_token"),
    ("non-latin1", "Bearer \u4ee4\u724c", 401, "invalid_token"),
    ("very-long", "Bearer " + "A" * 12000, 401, "invalid_token"),
    ("three-dots", "Bearer ...", 401, "invalid_token"),
]

TOKEN_ENDPOINTS = [
    ("POST", "/auth/signout", "signout"),
    ("GET", "/users/me", "me"),
    ("GET", "/users", "users"),
    ("GET", "/auth/sessions", "sessions"),
    ("DELETE", "/auth/sessions", "end-sessions"),
    ("DELETE", "/auth/sessions/AAAAAAAAAAAAAAAAAAAAAA", "end-session"),
    ("POST", "/users/me/password", "password"),
    ("DELETE", "/users/me", "delete-me"),
    ("GET", "/users/1", "user"),
    ("PATCH", "/users/1", "patch-user"),
    ("DELETE", "/users/1", "delete-user"),
    ("POST", "/users/me/mfa/totp", "mfa-enroll"),
    ("POST", "/users/me/mfa/totp/confirm", "mfa-confirm"),
    ("POST", "/users/me/mfa/recovery-codes", "mfa-recovery-codes"),
    ("POST", "/users/me/mfa/disable", "mfa-disable"),
    ("DELETE", "/users/1/mfa", "mfa-reset"),
    ("POST", "/auth/verify-email/resend", "resend"),
    ("POST", "/users/me/email", "email-change"),
]
ADMIN_ACCESS = presented("access")


def users_query(query, token=ADMIN_ACCESS):
    """Ask for the list of users with a query string, as the admin unless told."""
    return lambda keys: {"query_string": query, **token(keys)}


def cursor(raw_bytes):
    """Return the cursor text the service would make of some bytes."""
    return base64.urlsafe_b64encode(raw_bytes).decode().rstrip("=")


QUERIES = [
    ("limit-zero", "limit=0", 422),
    ("limit-negative", "limit=-1", 422),
    ("limit-word", "limit=ten", 422),
    ("limit-empty", "limit=", 422),
    ("limit-fraction", "limit=1.5", 422),
    ("limit-exponent", "limit=1e3", 422),
    ("limit-quoted-number", "limit=%2210%22", 422),
    ("limit-hex", "limit=0x10", 422),
    ("limit-nan", "limit=NaN", 422),
    ("limit-nul", "limit=%00", 422),
    ("limit-sql", "limit=1%20OR%201=1", 422),
    ("cursor-punctuation", "cursor=!!!", 422),
    ("cursor-empty", "cursor=", 422),
    ("cursor-nul", "cursor=%00", 422),
    ("cursor-huge", "cursor=" + "A" * 8000, 422),
    ("cursor-negative-id", "cursor=" + cursor(b"u-1"), 422),
    ("cursor-id-too-long", "cursor=" + cursor(b"u99999999999"), 422),
    ("cursor-id-past-int32", "cursor=" + cursor(b"u2147483648"), 422),
    ("cursor-sql", "cursor=" + cursor(b"u1 OR 1=1"), 422),
    ("cursor-other-prefix", "cursor=" + cursor(b"x5"), 422),
    ("limit-repeated-bad-first", "limit=abc&limit=5", 422),
    ("cursor-repeated-bad-first", "cursor=!!!&cursor=" + cursor(b"u1"), 422),
    ("limit-and-cursor-both-bad", "limit=0&cursor=%%%", 422),
]


def token_in_query(kind, parameter):
    """Send a real token in the query string rather than the Authorization header."""
    return lambda keys: {"query_string": {parameter: keys.admin[f"{kind}Token"]}}


def token_in_cookie(kind):
    """Send a real token in flask-jwt-extended's cookie rather than the Authorization header."""
    return lambda keys: {"headers": {"Cookie": f"{kind}_token_cookie={keys.admin[f'{kind}Token']}"}}


OVER_LIMIT = raw(b"x" * (LIMIT + 1), content_type="text/plain")

# Everything else, already in the shape of the test's parameters.
OTHER_CASES = [
    pytest.param(
        "GET",
        "/users",
        users_query("limit=5", presented("access", "user")),
        403,
        "forbidden",
        id="users-not-admin",
    ),
    pytest.param(
        "GET",
        "/users/me",
        token_in_query("access", "access_token"),
        401,
        "missing_token",
        id="me-token-in-query",
    ),
    pytest.param(
        "GET",
        "/users",
        token_in_query("access", "jwt"),
        401,
        "missing_token",
        id="users-token-in-query",
    ),
    pytest.param(
        "POST",
        "/auth/refresh",
        token_in_query("refresh", "refresh_token"),
        401,
        "missing_token",
        id="refresh-token-in-query",
    ),
    pytest.param(
        "GET", "/users/me", token_in_cookie("access"), 401, "missing_token", id="me-token-in-cookie"
    ),
    pytest.param(
        "POST", "/auth/signout", OVER_LIMIT, 413, "payload_too_large", id="signout-over-limit"
    ),
    pytest.param(
        "POST", "/auth/refresh", OVER_LIMIT, 413, "payload_too_large", id="refresh-over-limit"
    ),
    pytest.param("GET", "/users/me", OVER_LIMIT, 413, "payload_too_large", id="me-over-limit"),
    pytest.param("GET", "/users", OVER_LIMIT, 413, "payload_too_large", id="users-over-limit"),
    pytest.param("GET", "/healthz", OVER_LIMIT, 413, "payload_too_large", id="healthz-over-limit"),
    pytest.param("GET", "/readyz", OVER_LIMIT, 413, "payload_too_large", id="readyz-over-limit"),
    pytest.param(
        "GET", "/openapi.json", OVER_LIMIT, 413, "payload_too_large", id="openapi-over-limit"
    ),
    pytest.param("GET", "/auth/signup", credentials(), 405, "method_not_allowed", id="signup-get"),
    pytest.param("PUT", "/auth/signin", credentials(), 405, "method_not_allowed", id="signin-put"),
    pytest.param(
        "DELETE", "/auth/signout", ADMIN_ACCESS, 405, "method_not_allowed", id="signout-delete"
    ),
    pytest.param(
        "GET", "/auth/refresh", presented("refresh"), 405, "method_not_allowed", id="refresh-get"
    ),
    pytest.param(
        "PUT", "/users/me", credentials(role="admin"), 405, "method_not_allowed", id="me-put"
    ),
    pytest.param(
        "POST", "/users", credentials(role="admin"), 405, "method_not_allowed", id="users-post"
    ),
    pytest.param("POST", "/healthz", raw(b"{}"), 405, "method_not_allowed", id="healthz-post"),
    pytest.param("DELETE", "/readyz", raw(b""), 405, "method_not_allowed", id="readyz-delete"),
    pytest.param("POST", "/openapi.json", raw(b"{}"), 405, "method_not_allowed", id="openapi-post"),
    pytest.param(
        "POST", "/auth/signup/", credentials(), 404, "not_found", id="signup-trailing-slash"
    ),
    pytest.param("POST", "/auth/SIGNIN", credentials(), 404, "not_found", id="signin-upper-case"),
    pytest.param("GET", "/users/me%00", ADMIN_ACCESS, 404, "not_found", id="me-nul-in-path"),
    pytest.param(
        "GET",
        "/users/me/..%2f..%2fetc%2fpasswd",
        ADMIN_ACCESS,
        404,
        "not_found",
        id="me-path-traversal",
    ),
    pytest.param("GET", "/.env", raw(b""), 404, "not_found", id="dotenv"),
]


def password_change(**body):
    """Send a password change body with the admin's access token."""
    return lambda keys: {
        "data": json.dumps(body),
        "content_type": JSON,
        "headers": bearer(keys.admin["accessToken"]),
    }


def as_admin(request):
    """Add the admin's access token to a request."""
    return lambda keys: {**request(keys), "headers": bearer(keys.admin["accessToken"])}


def target_user(method, request, status, code, name):
    """A case against /users/<the plain user's id> as the admin."""

    def build(keys):
        return {"path": f"/users/{keys.user['id']}", **as_admin(request)(keys)}

    return pytest.param(method, None, build, status, code, id=name)


WEAK = (422, "weak_password")
NEW = "marble-lantern-quiet-77"

# The endpoints that came with accounts and sessions: bodies, paths, weak passwords.
ACCOUNT_CASES = [
    pytest.param(
        "POST", "/auth/signup", credentials(password="password1234"), *WEAK, id="signup-weak-common"
    ),
    pytest.param(
        "POST",
        "/auth/signup",
        credentials(password="qwertyuiop"),
        *WEAK,
        id="signup-weak-keyboard-walk",
    ),
    pytest.param(
        "POST",
        "/auth/signup",
        credentials(password="zzzzzzzzzzzz"),
        *WEAK,
        id="signup-weak-repeated",
    ),
    pytest.param(
        "POST",
        "/auth/signup",
        credentials(password="user@example.com"),
        *WEAK,
        id="signup-weak-own-email",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        password_change(currentPassword=PASSWORD, newPassword="password1234"),
        *WEAK,
        id="password-weak-new",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        password_change(currentPassword="not-it-at-all-9", newPassword=NEW),
        403,
        "invalid_password",
        id="password-wrong-current",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        password_change(newPassword=NEW),
        *INVALID,
        id="password-missing-current",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        password_change(currentPassword=PASSWORD, newPassword=NEW, role="admin"),
        *INVALID,
        id="password-unknown-field",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        password_change(currentPassword=None, newPassword=[NEW]),
        *INVALID,
        id="password-wrong-types",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        password_change(currentPassword=PASSWORD, newPassword="n" * 129),
        *INVALID,
        id="password-new-too-long",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        password_change(currentPassword=PASSWORD, newPassword="\ud800" * 9),
        *INVALID,
        id="password-new-lone-surrogate",
    ),
    pytest.param(
        "POST", "/users/me/password", as_admin(raw("{")), *BAD_JSON, id="password-bad-json"
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        as_admin(raw("{}", content_type="text/plain")),
        *WRONG_TYPE,
        id="password-not-json",
    ),
    pytest.param(
        "POST",
        "/users/me/password",
        as_admin(raw(b" " * (LIMIT + 1))),
        *TOO_LARGE,
        id="password-too-large",
    ),
    target_user("PATCH", document({}), *INVALID, "patch-empty"),
    target_user("PATCH", document({"role": "root"}), *INVALID, "patch-unknown-role"),
    target_user("PATCH", document({"role": ["admin"]}), *INVALID, "patch-role-array"),
    target_user("PATCH", document({"disabled": "true"}), *INVALID, "patch-disabled-string"),
    target_user("PATCH", document({"disabled": 1}), *INVALID, "patch-disabled-number"),
    target_user("PATCH", document({"disabled": None}), *INVALID, "patch-disabled-null"),
    target_user("PATCH", document({"email": "x@example.com"}), *INVALID, "patch-email"),
    target_user("PATCH", document({"password_hash": "x"}), *INVALID, "patch-hash"),
    target_user("PATCH", document([{"role": "admin"}]), *INVALID, "patch-array-body"),
    target_user("PATCH", raw("{'role': 'admin'}"), *BAD_JSON, "patch-bad-json"),
    target_user(
        "PATCH", raw('{"role": "admin"}', content_type="text/plain"), *WRONG_TYPE, "patch-not-json"
    ),
    pytest.param(
        "GET", "/users/99999999999999999999", ADMIN_ACCESS, 404, "not_found", id="user-huge-id"
    ),
    pytest.param("GET", "/users/0", ADMIN_ACCESS, 404, "not_found", id="user-zero-id"),
    pytest.param("GET", "/users/-1", ADMIN_ACCESS, 404, "not_found", id="user-negative-id"),
    pytest.param("GET", "/users/1%20OR%201=1", ADMIN_ACCESS, 404, "not_found", id="user-sql-id"),
    pytest.param(
        "PATCH",
        "/users/99999999999999999999",
        as_admin(document({"role": "user"})),
        404,
        "not_found",
        id="patch-huge-id",
    ),
    pytest.param(
        "DELETE", "/users/2147483648", ADMIN_ACCESS, 404, "not_found", id="delete-id-past-int32"
    ),
    pytest.param(
        "GET",
        None,
        lambda keys: {"path": f"/users/{keys.admin['id']}", **presented("access", "user")(keys)},
        404,
        "not_found",
        id="user-someone-else",
    ),
    pytest.param(
        "PATCH",
        None,
        lambda keys: {
            "path": f"/users/{keys.admin['id']}",
            **as_admin(document({"role": "user"}))(keys),
        },
        409,
        "last_admin",
        id="patch-last-admin",
    ),
    pytest.param("DELETE", "/users/me", ADMIN_ACCESS, 409, "last_admin", id="delete-me-last-admin"),
    pytest.param(
        "DELETE", "/auth/sessions/%00", ADMIN_ACCESS, 404, "not_found", id="end-session-nul"
    ),
    pytest.param(
        "DELETE", "/auth/sessions/' OR '1'='1", ADMIN_ACCESS, 404, "not_found", id="end-session-sql"
    ),
    pytest.param(
        "DELETE",
        "/auth/sessions/" + "A" * 300,
        ADMIN_ACCESS,
        404,
        "not_found",
        id="end-session-long",
    ),
    pytest.param(
        "PUT", "/auth/sessions", ADMIN_ACCESS, 405, "method_not_allowed", id="sessions-put"
    ),
    pytest.param(
        "POST", "/.well-known/jwks.json", raw(b""), 405, "method_not_allowed", id="jwks-post"
    ),
    pytest.param("DELETE", "/metrics", raw(b""), 405, "method_not_allowed", id="metrics-delete"),
]


def mfa_signin(**body):
    """Send a body to /auth/signin/mfa; a value may be a function of `keys`."""
    return lambda keys: {
        "data": json.dumps({k: v(keys) if callable(v) else v for k, v in body.items()}),
        "content_type": JSON,
    }


def mfa_case(path, request, status, code, name, method="POST"):
    """A case against a second-factor endpoint."""
    return pytest.param(method, path, request, status, code, id=f"mfa-{name}")


def user_mfa(token):
    """Send a token to /users/<the plain user's id>/mfa."""
    return lambda keys: {"path": f"/users/{keys.user['id']}/mfa", **token(keys)}


SIGNIN_MFA = "/auth/signin/mfa"
NO_MFA_TOKEN = (401, "invalid_mfa_token")
CODE = "123456"

# The second-factor endpoints: bodies, tokens that are not mfaTokens, states.
MFA_CASES = [
    mfa_case(SIGNIN_MFA, document({}), *INVALID, "signin-empty"),
    mfa_case(SIGNIN_MFA, mfa_signin(mfaToken=42, code=CODE), *INVALID, "signin-token-number"),
    mfa_case(SIGNIN_MFA, mfa_signin(mfaToken=None, code=CODE), *INVALID, "signin-token-null"),
    mfa_case(SIGNIN_MFA, mfa_signin(mfaToken="x", code=123456), *INVALID, "signin-code-number"),
    mfa_case(SIGNIN_MFA, mfa_signin(mfaToken="x", code=""), *INVALID, "signin-code-empty"),
    mfa_case(SIGNIN_MFA, mfa_signin(mfaToken="x", code="1" * 65), *INVALID, "signin-code-long"),
    mfa_case(SIGNIN_MFA, mfa_signin(mfaToken="x", code=[CODE]), *INVALID, "signin-code-array"),
    mfa_case(
        SIGNIN_MFA, mfa_signin(mfaToken="x", code=CODE, role="admin"), *INVALID, "signin-unknown"
    ),
    mfa_case(SIGNIN_MFA, raw('{"mfaToken": "x", "code": '), *BAD_JSON, "signin-bad-json"),
    mfa_case(
        SIGNIN_MFA,
        raw('{"mfaToken": "x", "mfaToken": "y", "code": "123456"}'),
        *BAD_JSON,
        "signin-duplicate-key",
    ),
    mfa_case(SIGNIN_MFA, raw("{}", content_type="text/plain"), *WRONG_TYPE, "signin-not-json"),
    mfa_case(SIGNIN_MFA, raw(b" " * (LIMIT + 1)), *TOO_LARGE, "signin-too-large"),
    mfa_case(
        SIGNIN_MFA,
        mfa_signin(mfaToken=lambda keys: keys.admin["accessToken"], code=CODE),
        *NO_MFA_TOKEN,
        "signin-access-token",
    ),
    mfa_case(
        SIGNIN_MFA,
        mfa_signin(mfaToken=lambda keys: keys.admin["refreshToken"], code=CODE),
        *NO_MFA_TOKEN,
        "signin-refresh-token",
    ),
    mfa_case(SIGNIN_MFA, mfa_signin(mfaToken="", code=CODE), *NO_MFA_TOKEN, "signin-token-empty"),
    mfa_case(
        SIGNIN_MFA, mfa_signin(mfaToken="' OR '1'='1", code=CODE), *NO_MFA_TOKEN, "signin-sql"
    ),
    mfa_case(
        SIGNIN_MFA,
        raw('{"mfaToken": "\\ud800", "code": "123456"}'),
        *NO_MFA_TOKEN,
        "signin-lone-surrogate",
    ),
    mfa_case(
        SIGNIN_MFA, mfa_signin(mfaToken="A" * 12000, code=CODE), *NO_MFA_TOKEN, "signin-huge-token"
    ),
    mfa_case(
        "/users/me/mfa/totp",
        as_admin(document({"currentPassword": "not-it-at-all-9"})),
        403,
        "invalid_password",
        "enroll-wrong-password",
    ),
    mfa_case("/users/me/mfa/totp", as_admin(document({})), *INVALID, "enroll-empty"),
    mfa_case(
        "/users/me/mfa/totp",
        as_admin(document({"currentPassword": PASSWORD, "secret": "A" * 32})),
        *INVALID,
        "enroll-chosen-secret",
    ),
    mfa_case(
        "/users/me/mfa/totp/confirm",
        as_admin(document({"code": CODE})),
        409,
        "no_pending_mfa",
        "confirm-nothing-pending",
    ),
    mfa_case(
        "/users/me/mfa/totp/confirm", as_admin(document({"code": None})), *INVALID, "confirm-null"
    ),
    mfa_case(
        "/users/me/mfa/recovery-codes",
        as_admin(document({"code": CODE})),
        409,
        "mfa_not_enabled",
        "recovery-codes-without-mfa",
    ),
    mfa_case(
        "/users/me/mfa/recovery-codes", as_admin(document({})), *INVALID, "recovery-codes-empty"
    ),
    mfa_case(
        "/users/me/mfa/disable",
        as_admin(document({"currentPassword": PASSWORD, "code": CODE})),
        409,
        "mfa_not_enabled",
        "disable-without-mfa",
    ),
    mfa_case(
        "/users/me/mfa/disable",
        as_admin(document({"currentPassword": "short", "code": CODE})),
        *INVALID,
        "disable-short-password",
    ),
    mfa_case(
        "/users/me/mfa/totp", ADMIN_ACCESS, 405, "method_not_allowed", "enroll-get", method="GET"
    ),
    mfa_case(
        "/users/2147483648/mfa", ADMIN_ACCESS, 404, "not_found", "reset-id-past-int32", "DELETE"
    ),
    mfa_case("/users/0/mfa", ADMIN_ACCESS, 404, "not_found", "reset-zero-id", "DELETE"),
    mfa_case(None, user_mfa(ADMIN_ACCESS), 409, "mfa_not_enabled", "reset-without-mfa", "DELETE"),
    mfa_case(
        None, user_mfa(presented("access", "user")), 403, "forbidden", "reset-not-admin", "DELETE"
    ),
]


def mail_case(path, request, status, code, name):
    """A case against one of the mail endpoints."""
    return pytest.param("POST", path, request, status, code, id=name)


def email_change(**body):
    """Send an email change body with the admin's access token."""
    return as_admin(document(body))


RESET, CONFIRM, VERIFY = (
    "/auth/password-reset",
    "/auth/password-reset/confirm",
    "/auth/verify-email",
)
DEAD_TOKEN = (400, "invalid_token")

# The mail endpoints: reset, confirmation, verification, email change.
MAIL_CASES = [
    mail_case(RESET, document({"email": "not-an-address"}), *INVALID, "reset-bad-email"),
    mail_case(RESET, document({"email": [EMAIL]}), *INVALID, "reset-email-array"),
    mail_case(RESET, document({"email": CONFUSABLE}), *INVALID, "reset-confusable"),
    mail_case(RESET, document({"email": EMAIL, "role": "admin"}), *INVALID, "reset-unknown-field"),
    mail_case(RESET, raw("{"), *BAD_JSON, "reset-bad-json"),
    mail_case(RESET, raw(json.dumps({"email": EMAIL}), "text/plain"), *WRONG_TYPE, "reset-text"),
    mail_case(RESET, raw(b" " * (LIMIT + 1)), *TOO_LARGE, "reset-too-large"),
    mail_case(CONFIRM, document({"newPassword": NEW}), *INVALID, "confirm-no-token"),
    mail_case(
        CONFIRM, document({"token": 1, "newPassword": NEW}), *INVALID, "confirm-token-number"
    ),
    mail_case(
        CONFIRM, document({"token": "", "newPassword": NEW}), *INVALID, "confirm-token-empty"
    ),
    mail_case(
        CONFIRM, document({"token": "t" * 257, "newPassword": NEW}), *INVALID, "confirm-token-long"
    ),
    mail_case(
        CONFIRM, document({"token": "nope", "newPassword": NEW}), *DEAD_TOKEN, "confirm-dead"
    ),
    mail_case(
        CONFIRM,
        document({"token": "nope", "newPassword": "password1234"}),
        *DEAD_TOKEN,
        "confirm-dead-weak",
    ),
    mail_case(
        CONFIRM, document({"token": "\u00e9\u0000", "newPassword": NEW}), *DEAD_TOKEN, "confirm-nul"
    ),
    mail_case(
        CONFIRM, document({"token": "nope", "newPassword": "n" * 129}), *INVALID, "confirm-long-pw"
    ),
    mail_case(
        CONFIRM,
        raw('{"token": "\\ud800", "newPassword": "marble-lantern-quiet-77"}'),
        *DEAD_TOKEN,
        "confirm-lone-surrogate-token",
    ),
    mail_case(CONFIRM, raw("[]"), *INVALID, "confirm-array"),
    mail_case(VERIFY, document({"token": "' OR '1'='1"}), *DEAD_TOKEN, "verify-sql"),
    mail_case(VERIFY, document({"token": None}), *INVALID, "verify-null"),
    mail_case(VERIFY, document({"token": ["a"]}), *INVALID, "verify-array"),
    mail_case(VERIFY, document({}), *INVALID, "verify-empty"),
    mail_case(VERIFY, raw("{'token': 'x'}"), *BAD_JSON, "verify-bad-json"),
    mail_case(
        "/users/me/email",
        email_change(newEmail="new@example.com", currentPassword="not-it-at-all-9"),
        403,
        "invalid_password",
        "email-change-wrong-password",
    ),
    mail_case(
        "/users/me/email",
        email_change(newEmail="admin@example.com", currentPassword=PASSWORD),
        *INVALID,
        "email-change-same",
    ),
    mail_case(
        "/users/me/email",
        email_change(newEmail=EMAIL, currentPassword=PASSWORD),
        409,
        "email_taken",
        "email-change-taken",
    ),
    mail_case(
        "/users/me/email",
        email_change(newEmail="x@example.com"),
        *INVALID,
        "email-change-no-password",
    ),
    mail_case(
        "/users/me/email",
        email_change(newEmail=CONFUSABLE, currentPassword=PASSWORD),
        *INVALID,
        "email-change-confusable",
    ),
    mail_case(
        "/users/me/email",
        email_change(newEmail="x@example.com", currentPassword=PASSWORD, role="admin"),
        *INVALID,
        "email-change-unknown-field",
    ),
    pytest.param("GET", RESET, raw(b""), 405, "method_not_allowed", id="reset-get"),
    pytest.param("GET", VERIFY, raw(b""), 405, "method_not_allowed", id="verify-get"),
    pytest.param("PUT", "/users/me/email", ADMIN_ACCESS, 405, "method_not_allowed", id="email-put"),
]


def cases():
    """Yield every hostile case as (method, path, request, status, code)."""
    for name, request, signup, signin in BODIES:
        for path, expected in (("/auth/signup", signup), ("/auth/signin", signin)):
            if expected is not None:
                yield pytest.param("POST", path, request, *expected, id=f"{path[6:]}-{name}")
    for method, path, label in TOKEN_ENDPOINTS:
        for name, request, status, code in ACCESS_TOKENS:
            yield pytest.param(method, path, request, status, code, id=f"{label}-{name}")
        for name, template, status, code in HEADERS:
            request = authorization(template)("access")
            yield pytest.param(method, path, request, status, code, id=f"{label}-header-{name}")
    for name, request, status, code in REFRESH_TOKENS:
        yield pytest.param("POST", "/auth/refresh", request, status, code, id=f"refresh-{name}")
    for name, template, status, code in HEADERS:
        request = authorization(template)("refresh")
        yield pytest.param(
            "POST", "/auth/refresh", request, status, code, id=f"refresh-header-{name}"
        )
    for name, query, status in QUERIES:
        yield pytest.param(
            "GET", "/users", users_query(query), status, "validation_error", id=f"users-{name}"
        )
    yield from OTHER_CASES
    yield from ACCOUNT_CASES
    yield from MFA_CASES
    yield from MAIL_CASES


CASES = list(cases())


@pytest.mark.parametrize(("method", "path", "request_for", "status", "code"), CASES)
def test_hostile_request_is_refused_cleanly(
    app, client, keys, method, path, request_for, status, code
):
    """A hostile request gets the documented 4xx problem, and changes no row."""
    arguments = request_for(keys)
    path = arguments.pop("path", path)
    before = snapshot(app)
    response = client.open(path, method=method, **arguments)
    assert (response.status_code, response.content_type) == (status, "application/problem+json")
    assert set(response.json) >= PROBLEM_KEYS
    assert (response.json["status"], response.json["code"]) == (status, code)
    assert status != 401 or response.headers["WWW-Authenticate"].startswith("Bearer")
    assert status != 405 or response.headers["Allow"]
    assert snapshot(app) == before


def test_corpus_has_at_least_100_cases():
    """The corpus stays large enough to be worth its name."""
    assert len(CASES) >= 100


def test_a_server_error_would_show_as_a_500_problem(database_url):
    """An app made as the cases' app answers a crash with a 500, so no case can hide one."""

    def crash():
        raise RuntimeError("boom")

    app = create_app(settings(database_url, **SERVED))
    app.add_url_rule("/crash", view_func=crash)
    response = app.test_client().get("/crash")
    assert (response.status_code, response.content_type) == (500, "application/problem+json")
