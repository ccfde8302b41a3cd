"""Blueprint "users": the caller, and the list of users for admins."""

import sqlalchemy as sa
from flask import current_app, url_for
from flask_jwt_extended import current_user, get_jwt

from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import User
from authsvc.parsing import Blueprint
from authsvc.schemas import MeSchema, UserListQuerySchema, UserSchema, encode_cursor
from authsvc.tokens import token_required

bp = Blueprint("users", __name__, url_prefix="/users", description="Accounts.")


def user_document(user, for_admin):
    """Return a user as the API shows it; only admins see `disabled`."""
    document = {
        "sub": user.id,
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "created_at": user.created_at,
    }
    if for_admin:
        document["disabled"] = user.disabled
    return document


def require_admin():
    """Refuse the request unless the caller is an admin now."""
    if current_user.role != "admin":
        raise Problem(403, "forbidden", "Only admins may do this.")


@bp.get("/me")
@bp.response(200, MeSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required()
def me():
    """Return the caller and the iat and exp of the token presented."""
    claims = get_jwt()
    document = user_document(current_user, current_user.role == "admin")
    return {**document, "iat": claims["iat"], "exp": claims["exp"]}


@bp.get("")
@bp.response(200, UserSchema(many=True))
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@token_required()
@bp.arguments(UserListQuerySchema, location="query", as_kwargs=True)
def list_users(limit=None, cursor=None):
    """Return one page of users by id; a Link header names the next page."""
    require_admin()
    config = current_app.config
    limit = min(limit or config["USERS_PAGE_DEFAULT"], config["USERS_PAGE_MAX"])
    page = db.session.scalars(
        sa.select(User).where(User.id > (cursor or 0)).order_by(User.id).limit(limit + 1)
    ).all()
    headers = {}
    if len(page) > limit:
        page = page[:limit]
        next_page = url_for(
            "users.list_users", limit=limit, cursor=encode_cursor(page[-1].id), _external=True
        )
        headers["Link"] = f'<{next_page}>; rel="next"'
    return [user_document(user, for_admin=True) for user in page], headers
