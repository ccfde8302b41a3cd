"""Blueprint "passkeys": registering, listing, renaming and removing passkeys; signing in with one.

The ceremonies live in passkeys.py; these views load, act, commit and
return. Adding or removing a passkey mails its owner a notice; removing one
never removes an account's last way in (accounts.remove_way_in).
"""

import sqlalchemy as sa
from flask_jwt_extended import current_user
from webargs import core

from authsvc import accounts, audit, gate, mail, passkeys
from authsvc.bearer import token_required
from authsvc.callers import require_admin, require_verified_address, user_or_404
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.limits import limit_passkey_options, limit_passkey_signin
from authsvc.models import Passkey
from authsvc.parsing import Blueprint, JSONBodyParser
from authsvc.passkey_schemas import (
    NoBodySchema,
    OptionsSchema,
    PasskeyRegistrationSchema,
    PasskeyRenameSchema,
    PasskeySchema,
    PasskeySigninSchema,
)
from authsvc.schemas import MAX_USER_ID, SignedInSchema


class OptionsBodyParser(JSONBodyParser):
    """JSON bodies as everywhere, except that an options request may send none at all."""

    def load_json(self, request, schema):
        """Read no body as an empty one, whatever its Content-Type says; else parse strictly."""
        if isinstance(schema, NoBodySchema) and not request.get_data(cache=True):
            return core.missing
        return super().load_json(request, schema)


class PasskeyBlueprint(Blueprint):
    """The API's Blueprint, with bodies read by OptionsBodyParser."""

    ARGUMENTS_PARSER = OptionsBodyParser()


bp = PasskeyBlueprint("passkeys", __name__, description="Passkeys (WebAuthn).")

NO_BODY = "No body, or an empty JSON object."
NO_SUCH_PASSKEY = Problem(404, "not_found", "You have no passkey with this id.")
passkeys_table = Passkey.__table__


def notify(user_id, email, event, name, session_id, by_admin=False):
    """Audit a passkey added or removed, and mail its owner a notice through the outbox."""
    audit.record(event, user_id, session_id)
    if mail.enabled():
        mail.queue(event, email, name=name, by_admin=by_admin)


def _owned(user_id, passkey_id):
    """Return the condition 'this passkey id is one of this user's'."""
    return sa.and_(passkeys_table.c.id == passkey_id, passkeys_table.c.user_id == user_id)


def passkey_or_404(user_id, passkey_id):
    """Return one of a user's passkeys; another user's, or an unknown id, is 404."""
    if passkey_id > MAX_USER_ID:
        raise NO_SUCH_PASSKEY
    passkey = db.session.scalar(sa.select(Passkey).where(_owned(user_id, passkey_id)))
    if passkey is None:
        raise NO_SUCH_PASSKEY
    return passkey


def remove(user, passkey_id, session_id, by_admin=False):
    """Remove one of a user's passkeys, unless it is their last way in; mail them a notice."""
    name = passkey_or_404(user.id, passkey_id).name
    if not accounts.remove_way_in(
        user.id, passkeys_table.delete().where(_owned(user.id, passkey_id))
    ):
        raise NO_SUCH_PASSKEY
    notify(user.id, user.email, "passkey_removed", name, session_id, by_admin)


@bp.post("/users/me/passkeys/options")
@bp.response(200, OptionsSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@token_required(fresh=True)
@bp.arguments(NoBodySchema, required=False, description=NO_BODY)
def registration_options(_):
    """Start adding a passkey: a challenge and options for navigator.credentials.create()."""
    require_verified_address()
    options = passkeys.registration_options(current_user)
    db.session.commit()
    return options


@bp.post("/users/me/passkeys")
@bp.response(201, PasskeySchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(409, response="CONFLICT")
@token_required(fresh=True)
@bp.arguments(PasskeyRegistrationSchema)
def register(body):
    """Add a passkey: the browser's new credential, answering a registration challenge."""
    require_verified_address()
    passkey = passkeys.register(
        current_user.id,
        current_user.session_id,
        body["challenge_id"],
        body["credential"],
        body["name"],
    )
    notify(
        current_user.id, current_user.email, "passkey_added", passkey.name, current_user.session_id
    )
    db.session.commit()
    return passkey


@bp.get("/users/me/passkeys")
@bp.response(200, PasskeySchema(many=True))
@bp.alt_response(401, response="UNAUTHORIZED")
@token_required()
def list_passkeys():
    """Return the caller's passkeys, oldest first."""
    return db.session.scalars(
        sa.select(Passkey).where(Passkey.user_id == current_user.id).order_by(Passkey.id)
    ).all()


@bp.patch("/users/me/passkeys/<int:passkey_id>")
@bp.response(200, PasskeySchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(404, response="NOT_FOUND")
@token_required()
@bp.arguments(PasskeyRenameSchema)
def rename(body, passkey_id):
    """Rename one of the caller's passkeys."""
    if passkey_id > MAX_USER_ID:
        raise NO_SUCH_PASSKEY
    mine = _owned(current_user.id, passkey_id)
    if (
        db.session.execute(passkeys_table.update().where(mine).values(name=body["name"])).rowcount
        != 1
    ):
        raise NO_SUCH_PASSKEY
    audit.record("passkey_renamed", current_user.id, current_user.session_id)
    db.session.commit()
    return passkey_or_404(current_user.id, passkey_id)


@bp.delete("/users/me/passkeys/<int:passkey_id>")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(409, response="CONFLICT")
@token_required(fresh=True)
def delete(passkey_id):
    """Remove one of the caller's passkeys; never the account's last way in."""
    remove(current_user, passkey_id, current_user.session_id)
    db.session.commit()


@bp.delete("/users/<int:user_id>/passkeys/<int:passkey_id>")
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(409, response="CONFLICT")
@token_required()
def delete_for_admin(user_id, passkey_id):
    """Remove a user's passkey (admins only); never the account's last way in."""
    require_admin()
    remove(user_or_404(user_id), passkey_id, current_user.session_id, by_admin=True)
    db.session.commit()


@bp.post("/auth/passkey/options")
@bp.response(200, OptionsSchema)
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@bp.arguments(NoBodySchema, required=False, description=NO_BODY)
@limit_passkey_options
def signin_options(_):
    """Start a passkey sign-in: a challenge and options for navigator.credentials.get()."""
    options = passkeys.authentication_options()
    db.session.commit()
    return options


@bp.post("/auth/passkey")
@bp.arguments(PasskeySigninSchema)
@bp.response(200, SignedInSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(403, response="FORBIDDEN")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@limit_passkey_signin
def signin(body):
    """Sign in with a passkey: its assertion of a sign-in challenge opens a session."""
    user = passkeys.authenticate(body["challenge_id"], body["credential"])
    _, signed_in = gate.admit(user, ["hwk", "mfa"], "signin_passkey")
    db.session.commit()
    return signed_in
