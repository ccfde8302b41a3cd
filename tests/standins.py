"""Providers on loopback for the tests: a hostile OpenID Provider and a stand-in of GitHub.

HostileProvider serves discovery, a JWKS, an authorization endpoint that
sends the browser straight back (no login page), a token endpoint and
userinfo. Its ID token is whatever the test asks: `claims` and `header`
are merged over a valid token's, and `alg` may be `none` or HS256 keyed by
the client secret, which a certified provider would never send. Any
document it serves can be replaced or broken (`documents`, `statuses`).

GitHubStandIn serves the endpoints GitHub documents for OAuth apps
(/login/oauth/authorize, /login/oauth/access_token) and, as GitHub
Enterprise Server does, the REST API under /api/v3 (/user, /user/emails).
GitHub itself cannot be reached from the test machines; authsvc reaches
this through OAUTH_GITHUB_URL.
"""

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

CLIENT_ID = "authsvc-test-client"
CLIENT_SECRET = "a-client-secret-of-the-test-provider"
RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})


def base64url(data):
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class StandIn:
    """A small HTTP server on a free loopback port, answering from `routes` (path -> method)."""

    def __init__(self):
        self.requests = []
        self.statuses = {}  # path -> status to answer instead
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stand_in.dispatch(self, "GET")

            def do_POST(self):
                stand_in.dispatch(self, "POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # serve_forever notices shutdown() at its next poll: at its default
        # of 0.5 s, closing the stand-in was half a second of every test using it.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def dispatch(self, handler, method):
        """Record the request, then answer it from the route of its path."""
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        form = parse_qs(handler.rfile.read(length).decode()) if length else {}
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, parts.path, query, {k: v[0] for k, v in form.items()}))
        if parts.path in self.statuses:
            return self.answer(handler, self.statuses[parts.path], {"error": "server_error"})
        route = self.routes().get(parts.path)
        if route is None:
            return self.answer(handler, 404, {"error": "not_found"})
        status, body, headers = route(query, {k: v[0] for k, v in form.items()}, handler.headers)
        return self.answer(handler, status, body, headers)

    def answer(self, handler, status, body, headers=None):
        """Send a status and a JSON body (or raw bytes)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    def close(self):
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def routes(self):
        """Return this server's routes."""
        raise NotImplementedError


def back_to(query, **answer):
    """Answer an authorization request by sending the browser to its redirect_uri."""
    target = f"{query['redirect_uri']}?{urlencode({'state': query['state'], **answer})}"
    return 302, b"", {"Location": target}


class HostileProvider(StandIn):
    """An OpenID Provider that signs whatever the test asks."""

    def __init__(self):
        super().__init__()
        self.issuer = self.url
        self.nonce = None
        self.subject, self.email, self.email_verified = "subject-1", "ada@example.com", True
        self.claims, self.header, self.alg, self.key = {}, {}, "RS256", RSA_KEY
        self.iss_parameter = self.issuer
        self.error = None
        self.userinfo = None
        self.documents = {}

    def discovery(self, query, form, headers):
        """Serve the discovery document (its fields replaced by documents['discovery'])."""
        document = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "HS256", "none"],
            "authorization_response_iss_parameter_supported": True,
        }
        return 200, self.documents.get("discovery", document), None

    def jwks(self, query, form, headers):
        """Serve the public keys (or documents['jwks'])."""
        keys = {"keys": [RSA_KEY.as_dict(private=False), EC_KEY.as_dict(private=False)]}
        return 200, self.documents.get("jwks", keys), None

    def authorize(self, query, form, headers):
        """Remember the nonce and send the browser back at once: a code (or `error`) and `iss`."""
        self.nonce = query.get("nonce")
        answer = {"error": self.error} if self.error else {"code": "provider-code"}
        if self.iss_parameter is not None:
            answer["iss"] = self.iss_parameter
        return back_to(query, **answer)

    def id_token(self):
        """Return the ID token the test asked for."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": self.nonce,
            "email": self.email,
            "email_verified": self.email_verified,
        }
        claims = {k: v for k, v in {**claims, **self.claims}.items() if v is not None}
        header = {"alg": self.alg, "kid": self.key.kid, **self.header}
        if self.alg == "none":
            body = base64url(json.dumps(claims).encode())
            return f"{base64url(json.dumps(header).encode())}.{body}."
        key = OctKey.import_key(CLIENT_SECRET) if self.alg.startswith("HS") else self.key
        return jwt.encode(header, claims, key, algorithms=[self.alg])

    def token(self, query, form, headers):
        """Trade any code for an access token and the ID token the test asked for."""
        body = {"access_token": uuid.uuid4().hex, "token_type": "Bearer", "expires_in": 300}
        body["id_token"] = self.id_token()
        return 200, self.documents.get("token", body), None

    def user_info(self, query, form, headers):
        """Serve userinfo (the ID token's sub and email unless the test set its own)."""
        default = {"sub": self.subject, "email": self.email, "email_verified": True}
        return 200, self.userinfo or default, None

    def routes(self):
        """Return the provider's endpoints."""
        return {
            "/.well-known/openid-configuration": self.discovery,
            "/jwks": self.jwks,
            "/authorize": self.authorize,
            "/token": self.token,
            "/userinfo": self.user_info,
        }


class GitHubStandIn(StandIn):
    """GitHub's OAuth app endpoints and REST API (as GitHub Enterprise Server serves them)."""

    def __init__(self):
        super().__init__()
        self.user = {"id": 4242, "login": "octocat"}
        self.emails = [
            {"email": "other@example.com", "primary": False, "verified": True},
            {"email": "octo@example.com", "primary": True, "verified": True},
        ]
        self.access_token = uuid.uuid4().hex

    def authorize(self, query, form, headers):
        """Send the browser back at once with a code (GitHub sends no `iss`)."""
        return back_to(query, code="github-code")

    def access_token_endpoint(self, query, form, headers):
        """Trade the code for an access token, as JSON (authsvc asks for it)."""
        if form.get("code") != "github-code" or form.get("client_secret") != CLIENT_SECRET:
            return 200, {"error": "bad_verification_code"}, None
        return 200, {"access_token": self.access_token, "token_type": "bearer"}, None

    def api(self, document):
        """Return a route that serves a document to the right bearer token only."""

        def route(query, form, headers):
            if headers.get("Authorization") != f"Bearer {self.access_token}":
                return 401, {"message": "Bad credentials"}, None
            return 200, document(), None

        return route

    def routes(self):
        """Return GitHub's endpoints."""
        return {
            "/login/oauth/authorize": self.authorize,
            "/login/oauth/access_token": self.access_token_endpoint,
            "/api/v3/user": self.api(lambda: self.user),
            "/api/v3/user/emails": self.api(lambda: self.emails),
        }
