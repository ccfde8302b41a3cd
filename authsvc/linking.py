"""Blueprint "linking": the identities at providers linked to an account, for its user and admins.

Linking is the round trip of a sign-in (oauthflows.py), started from a
signed-in account with a fresh token and a verified address, whose code
completes only under a bearer token of the same user: that user's fresh
token, not an email, is what ties the provider's account to theirs.
Unlinking never removes the last way in (accounts.remove_way_in).
"""

from flask_jwt_extended import current_user
from sqlalchemy.exc import IntegrityError

from authsvc import identities, oauthflows
from authsvc.bearer import token_required
from authsvc.callers import require_admin, require_verified_address, user_or_404
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import limit_oauth
from authsvc.oauthschemas import CodeExchangeSchema, IdentitySchema, LinkStartSchema, UrlSchema
from authsvc.parsing import Blueprint
from authsvc.schemas import MAX_USER_ID

bp = Blueprint("linking", __name__, description="Identities at other providers linked to accounts.")

# /users/me/identities/<x> is a provider's name (POST) or an identity's id (DELETE).
NOT_A_PROVIDER = "An identity's id where a provider's name belongs: that path only takes DELETE."
NOT_AN_ID = "A provider's name where an identity's id belongs: that path only takes POST."
NO_SUCH_IDENTITY = Problem(404, "not_found", "There is no such identity.")


def unlink_or_refuse(user, identity_id):
    """Unlink one of a user's identities; 404 if it is not theirs, 409 if it is the last way in."""
    if identity_id > MAX_USER_ID or not identities.unlink(
        user, identity_id, current_user.session_id
    ):
        raise NO_SUCH_IDENTITY
    db.session.commit()


@bp.get("/users/me/identities")
@bp.response(200, IdentitySchema(many=True))
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required()
def list_mine():
    """Return the caller's linked identities."""
    return [identities.document(identity) for identity in identities.of_user(current_user.id)]


@bp.post("/users/me/identities/<provider:provider>")
@bp.response(200, UrlSchema)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(405, response="METHOD_NOT_ALLOWED", description=NOT_A_PROVIDER)
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@oauthflows.known_provider
@token_required(fresh=True)
@bp.arguments(LinkStartSchema)
@limit_oauth
def start_link(body, provider):
    """Start linking a provider's account to the caller's: the provider's URL to send them to."""
    require_verified_address()
    url = oauthflows.start(
        provider, "link", body["redirect_to"], body["code_challenge"], current_user.id
    )
    db.session.commit()
    return {"url": url}


@bp.post("/users/me/identities")
@bp.arguments(CodeExchangeSchema)
@bp.response(201, IdentitySchema)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@token_required()
@limit_oauth
def complete_link(body):
    """Link the provider's account a link code carries to the caller, its user."""
    flow = oauthflows.redeem(body["code"], body["code_verifier"], "link", current_user.session_id)
    if flow.user_id != current_user.id:
        oauthflows.refuse(flow.provider, "forbidden", current_user.id, current_user.session_id)
        db.session.commit()
        raise Problem(403, "forbidden", "This code was made for another account; it is used up.")
    user, session_id = user_or_404(current_user.id), current_user.session_id
    try:
        identity = identities.link(user, flow.provider, flow.subject, flow.email, session_id)
    except (Problem, IntegrityError):
        db.session.rollback()
        oauthflows.refuse(flow.provider, "identity_taken", user.id, session_id)
        db.session.commit()
        raise identities.IDENTITY_TAKEN from None
    db.session.commit()
    return identities.document(identity)


@bp.delete("/users/me/identities/<int:identity_id>")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(405, response="METHOD_NOT_ALLOWED", description=NOT_AN_ID)
@bp.alt_response(409, response="CONFLICT")
@token_required(fresh=True)
def unlink_mine(identity_id):
    """Unlink one of the caller's identities, unless it is their last way to sign in."""
    unlink_or_refuse(user_or_404(current_user.id), identity_id)


@bp.get("/users/<int:user_id>/identities")
@bp.response(200, IdentitySchema(many=True))
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(404, response="NOT_FOUND")
@token_required()
def list_of_user(user_id):
    """Return a user's linked identities (admins only)."""
    require_admin()
    user = user_or_404(user_id)
    return [identities.document(identity) for identity in identities.of_user(user.id)]


@bp.delete("/users/<int:user_id>/identities/<int:identity_id>")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(409, response="CONFLICT")
@token_required()
def unlink_of_user(user_id, identity_id):
    """Unlink one of a user's identities, unless it is their last way in (admins only)."""
    require_admin()
    unlink_or_refuse(user_or_404(user_id), identity_id)
