"""Passkey steps for tests, through the API as a browser's page would take them.

Each step asks for options, lets a software authenticator (authenticator.py)
answer them, and posts the answer; faults for the authenticator (origin,
rp_id, flags, counter) pass through.
"""

import os

import sqlalchemy as sa
from authenticator import b64url
from conftest import PASSWORD, bearer

from authsvc.extensions import db
from authsvc.models import Passkey, User

EMAIL = "user@example.com"
OMIT = object()  # a body field left out


def verified_user(app, password_hash, email=EMAIL, **columns):
    """Insert a user with a verified address (and the test password); return its id."""
    with app.app_context():
        user = User(email=email, password_hash=password_hash, **{"email_verified": True, **columns})
        db.session.add(user)
        db.session.commit()
        return user.id


def password_signin(client, email=EMAIL):
    """Sign in with the test password; return the tokens (fresh)."""
    response = client.post("/auth/signin", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.json
    return response.json


def post(client, path, body=None, token=None):
    """POST a JSON body (none if None), with a Bearer token if given."""
    headers = bearer(token) if token else {}
    return (
        client.post(path, json=body, headers=headers)
        if body is not None
        else (client.post(path, headers=headers))
    )


def registration_options(client, token):
    """Ask for registration options; return the answer's body."""
    response = post(client, "/users/me/passkeys/options", token=token)
    assert response.status_code == 200, response.json
    return response.json


def register(client, token, key, name=OMIT, **faults):
    """Register the authenticator's credential for the token's user; return the response."""
    options = registration_options(client, token)
    body = {
        "challengeId": options["challengeId"],
        "credential": key.create(options["publicKey"], **faults),
    }
    if name is not OMIT:
        body["name"] = name
    return post(client, "/users/me/passkeys", body, token)


def signin_options(client):
    """Ask for sign-in options; return the answer's body."""
    response = post(client, "/auth/passkey/options")
    assert response.status_code == 200, response.json
    return response.json


def passkey_signin(client, key, **faults):
    """Sign in with the authenticator's credential; return the response."""
    options = signin_options(client)
    assertion = key.get(options["publicKey"], **faults)
    return post(
        client, "/auth/passkey", {"challengeId": options["challengeId"], "credential": assertion}
    )


def add_passkey(app, user_id, key, sign_count=0, name="Passkey"):
    """Store the authenticator's credential as a user's passkey, as a registration would."""
    key.user_handle = b64url(os.urandom(32))
    key.counter = sign_count
    with app.app_context():
        passkey = Passkey(
            user_id=user_id,
            credential_id=key.id,
            public_key=key.cose_key(),
            user_handle=key.user_handle,
            sign_count=sign_count,
            name=name,
        )
        db.session.add(passkey)
        db.session.commit()
        return passkey.id


def stored(app, user_id):
    """Return a user's passkey rows, oldest first."""
    with app.app_context():
        return db.session.scalars(
            sa.select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id)
        ).all()
