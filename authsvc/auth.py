"""Blueprint "auth": signup, signin, signout and refresh."""

import sqlalchemy as sa
from flask import request
from flask_jwt_extended import current_user, get_jwt
from sqlalchemy.exc import IntegrityError

from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import User
from authsvc.parsing import Blueprint
from authsvc.passwords import hash_password, verify_dummy, verify_password
from authsvc.schemas import CredentialsSchema, SignedInSchema, TokenPairSchema
from authsvc.tokens import open_session, revoke_session, rotate_refresh_token, token_required

bp = Blueprint("auth", __name__, url_prefix="/auth", description="Sessions and tokens.")

INVALID_CREDENTIALS = Problem(401, "invalid_credentials", "Invalid email or password.")


def _device():
    """Return the client address and a printable user agent of this request."""
    agent = "".join(c for c in request.user_agent.string if c.isprintable())
    return {"ip": (request.remote_addr or "")[:64] or None, "user_agent": agent[:512] or None}


def authenticate(email, password):
    """Return the user with these credentials, spending the same time either way."""
    user = db.session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        verify_dummy(password)
        raise INVALID_CREDENTIALS
    if not verify_password(password, user.password_hash):
        raise INVALID_CREDENTIALS
    if user.disabled:
        raise Problem(403, "account_disabled", "This account is disabled.")
    return user


@bp.post("/signup")
@bp.arguments(CredentialsSchema)
@bp.response(201, SignedInSchema)
@bp.alt_response(409, response="CONFLICT")
def signup(credentials):
    """Create an account and sign it in."""
    user = User(email=credentials["email"], password_hash=hash_password(credentials["password"]))
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Problem(409, "email_taken", "An account with this email already exists.") from None
    tokens = open_session(user, **_device())
    db.session.commit()
    return {"id": user.id, "email": user.email, **tokens}


@bp.post("/signin")
@bp.arguments(CredentialsSchema)
@bp.response(200, SignedInSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
def signin(credentials):
    """Open a new session for a user who knows their password."""
    user = authenticate(credentials["email"], credentials["password"])
    tokens = open_session(user, **_device())
    db.session.commit()
    return {"id": user.id, "email": user.email, **tokens}


@bp.post("/signout")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required()
def signout():
    """Close the caller's session; its tokens are refused from now on."""
    revoke_session(get_jwt()["sid"])
    db.session.commit()


@bp.post("/refresh")
@bp.response(200, TokenPairSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required(refresh=True)
def refresh():
    """Trade the current refresh token for a new pair; the old one stops working."""
    tokens = rotate_refresh_token(current_user)
    db.session.commit()
    return tokens
