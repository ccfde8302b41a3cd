"""Blueprint "auth": signup, signin, signout and refresh."""

import sqlalchemy as sa
from flask import current_app
from flask_jwt_extended import current_user
from sqlalchemy.exc import IntegrityError

from authsvc import audit, gate, mailflows
from authsvc.bearer import token_required
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import limit_refresh, limit_signin, limit_signup
from authsvc.models import Session, User, utcnow
from authsvc.parsing import Blueprint
from authsvc.passwords import (
    hash_cost,
    hash_password,
    refuse_weak_password,
    verify_dummy,
    verify_password,
)
from authsvc.schemas import (
    GATE_REFUSALS,
    CredentialsSchema,
    SessionSchema,
    SignedInSchema,
    SignedUpSchema,
    TokenPairSchema,
)
from authsvc.tokens import (
    SESSION_ID,
    open_session,
    revoke_session,
    revoke_sessions_of,
    rotate_refresh_token,
)

bp = Blueprint("auth", __name__, url_prefix="/auth", description="Sessions and tokens.")


def _refuse_signin(user_id=None):
    """Record a failed signin and answer the one 401 every failure gets."""
    audit.record("signin_failed", user_id=user_id)
    db.session.commit()
    return Problem(401, "invalid_credentials", "Invalid email or password.")


def authenticate(email, password):
    """Return the user with these credentials, spending the same time either way.

    An account with no password (made through a provider) is refused as an
    unknown one is.
    """
    user = db.session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        verify_dummy(password)
        raise _refuse_signin()
    if not verify_password(password, user.password_hash):
        raise _refuse_signin(user.id)
    if hash_cost(user.password_hash) != current_app.config["BCRYPT_ROUNDS"]:
        # BCRYPT_ROUNDS changed since this hash was made: this is the one
        # moment the password is known, so bring the hash up to date.
        user.password_hash = hash_password(password)
    return user


@bp.post("/signup")
@bp.arguments(CredentialsSchema)
@bp.response(201, SignedUpSchema)
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@limit_signup
def signup(credentials):
    """Create an account, mail it a verification link, and sign it in.

    Under REQUIRE_VERIFIED_EMAIL=1 no session opens until the address is verified.
    """
    refuse_weak_password(credentials["password"], credentials["email"])
    user = User(email=credentials["email"], password_hash=hash_password(credentials["password"]))
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Problem(409, "email_taken", "An account with this email already exists.") from None
    mailflows.send_verification(user)
    if current_app.config["REQUIRE_VERIFIED_EMAIL"]:
        audit.record("signup", user.id)
        db.session.commit()
        return {"id": user.id, "email": user.email, "email_verified": False}
    session, tokens = open_session(user)
    audit.record("signup", user.id, session.id)
    db.session.commit()
    return {"id": user.id, "email": user.email, **tokens}


@bp.post("/signin")
@bp.arguments(CredentialsSchema)
@bp.response(200, SignedInSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, **GATE_REFUSALS)
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@limit_signin
def signin(credentials):
    """Open a new session for a user who knows their password (and has no second factor)."""
    user = authenticate(credentials["email"], credentials["password"])
    _, signed_in = gate.admit(user, ["pwd"], "signin")
    db.session.commit()
    return signed_in


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


def session_document(session):
    """Return a session as the API shows it, marking the caller's own."""
    return {
        "id": session.id,
        "created_at": session.created_at,
        "last_used_at": session.last_used_at,
        "expires_at": session.expires_at,
        "ip": session.ip,
        "user_agent": session.user_agent,
        "current": session.id == current_user.session_id,
    }


@bp.get("/sessions")
@bp.response(200, SessionSchema(many=True))
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required()
def list_sessions():
    """Return the caller's open sessions, newest first."""
    open_sessions = db.session.scalars(
        sa.select(Session)
        .where(
            Session.user_id == current_user.id,
            Session.revoked_at.is_(None),
            Session.expires_at > utcnow(),
        )
        .order_by(Session.created_at.desc(), Session.id)
    )
    return [session_document(session) for session in open_sessions]


@bp.delete("/sessions/<session_id>")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(404, response="NOT_FOUND")
@token_required()
def end_session(session_id):
    """End one of the caller's own sessions; any other id is 404."""
    if not SESSION_ID.fullmatch(session_id) or not revoke_session(session_id, current_user.id):
        raise Problem(404, "not_found", "You have no open session with this id.")
    audit.record("session_revoked", current_user.id, session_id)
    db.session.commit()


@bp.delete("/sessions")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required()
def end_all_sessions():
    """End every session of the caller, this one included."""
    revoke_sessions_of(current_user.id)
    audit.record("signout_everywhere", current_user.id, current_user.session_id)
    db.session.commit()
