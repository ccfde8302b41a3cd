"""Blueprint "auth": signup, signin, signout and refresh."""

import sqlalchemy as sa
from flask_jwt_extended import current_user
from sqlalchemy.exc import IntegrityError

from authsvc import audit
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import limit_refresh, limit_signin, limit_signup
from authsvc.models import User
from authsvc.parsing import Blueprint
from authsvc.passwords import (
    hash_password,
    refuse_weak_password,
    verify_dummy,
    verify_password,
)
from authsvc.schemas import CredentialsSchema, SignedInSchema, TokenPairSchema
from authsvc.tokens import open_session, revoke_session, rotate_refresh_token, token_required

bp = Blueprint("auth", __name__, url_prefix="/auth", description="Sessions and tokens.")


def _refuse_signin(user_id=None):
    """Record a failed signin and answer the one 401 every failure gets."""
    audit.record("signin_failed", user_id=user_id)
    db.session.commit()
    return Problem(401, "invalid_credentials", "Invalid email or password.")


def authenticate(email, password):
    """Return the user with these credentials, spending the same time either way."""
    user = db.session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        verify_dummy(password)
        raise _refuse_signin()
    if not verify_password(password, user.password_hash):
        raise _refuse_signin(user.id)
    if user.disabled:
        raise Problem(403, "account_disabled", "This account is disabled.")
    return user


@bp.post("/signup")
@bp.arguments(CredentialsSchema)
@bp.response(201, SignedInSchema)
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@limit_signup
def signup(credentials):
    """Create an account and sign it in."""
    refuse_weak_password(credentials["password"], credentials["email"])
    user = User(email=credentials["email"], password_hash=hash_password(credentials["password"]))
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Problem(409, "email_taken", "An account with this email already exists.") from None
    session, tokens = open_session(user)
    audit.record("signup", user.id, session.id)
    db.session.commit()
    return {"id": user.id, "email": user.email, **tokens}


@bp.post("/signin")
@bp.arguments(CredentialsSchema)
@bp.response(200, SignedInSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@limit_signin
def signin(credentials):
    """Open a new session for a user who knows their password."""
    user = authenticate(credentials["email"], credentials["password"])
    session, tokens = open_session(user)
    audit.record("signin", user.id, session.id)
    db.session.commit()
    return {"id": user.id, "email": user.email, **tokens}


@bp.post("/signout")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required()
def signout():
    """Close the caller's session; its tokens are refused from now on."""
    revoke_session(current_user.session_id)
    audit.record("signout", current_user.id, current_user.session_id)
    db.session.commit()


@bp.post("/refresh")
@bp.response(200, TokenPairSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@token_required(refresh=True)
@limit_refresh
def refresh():
    """Trade the current refresh token for a new pair; the old one stops working."""
    tokens = rotate_refresh_token(current_user)
    audit.record("refresh", current_user.id, current_user.session_id)
    db.session.commit()
    return tokens
