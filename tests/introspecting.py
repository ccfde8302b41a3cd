"""Helpers for tests of registered services and POST /oauth/introspect."""

import base64
from types import SimpleNamespace

import jwt
from conftest import TEST_SECRET

from authsvc import clients
from authsvc.extensions import db

FORM = "application/x-www-form-urlencoded"


def register(app, name="billing"):
    """Register a client straight through clients.py; return its id and secret."""
    with app.app_context():
        client, secret = clients.create_client(name)
        db.session.commit()
        return SimpleNamespace(id=client.id, secret=secret)


def basic(client_id, secret):
    """Return an Authorization header with HTTP Basic credentials, as given."""
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def introspect(test_client, service, token, **form):
    """Ask about a token as a registered service; return the response."""
    return test_client.post(
        "/oauth/introspect",
        data={"token": token, **form},
        headers=basic(service.id, service.secret),
    )


def answer(test_client, service, token):
    """Return the JSON answer about a token, checking it is a 200 that no cache keeps."""
    response = introspect(test_client, service, token)
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    return response.json


def claims_of(token):
    """Return a token's claims without checking its signature."""
    return jwt.decode(token, options={"verify_signature": False})


def resigned(token, key=TEST_SECRET, algorithm="HS256", headers=None, **changes):
    """Return a real token with its claims changed (None drops one), signed as told."""
    claims = {**claims_of(token), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    header = {"typ": jwt.get_unverified_header(token)["typ"], **(headers or {})}
    return jwt.encode(claims, key, algorithm=algorithm, headers=header)
