"""Changing and deleting accounts, for the API and the CLI alike.

An account keeps at least one way in (a password, a provider's identity, a
passkey): remove_way_in() refuses to remove the last one.

The last active admin can be neither demoted, disabled nor deleted. The check
and the change are one conditional statement, after locking the admin rows
(PostgreSQL; SQLite serialises writers anyway), so two admins demoting each
other at once cannot leave nobody in charge.
"""

import sqlalchemy as sa

from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import Identity, Passkey, User
from authsvc.tokens import revoke_sessions_of

users = User.__table__
identities = Identity.__table__
LAST_ADMIN = Problem(409, "last_admin", "The last admin cannot be demoted, disabled or deleted.")
LAST_SIGN_IN_METHOD = Problem(
    409,
    "last_sign_in_method",
    "This is the account's last way to sign in; add another before removing it.",
)


def _is_active_admin(table):
    """Return the condition 'is an admin who is not disabled' on a users table."""
    return sa.and_(table.c.role == "admin", table.c.disabled.is_(False))


def _another_active_admin(user_id):
    """Return the condition 'some other active admin exists'."""
    other = users.alias("other")
    return sa.exists().where(_is_active_admin(other), other.c.id != user_id)


def _guard_last_admin(statement, user_id):
    """Run an UPDATE or DELETE that may remove an admin, unless it is the last one."""
    db.session.execute(sa.select(users.c.id).where(_is_active_admin(users)).with_for_update())
    keeps_an_admin = sa.or_(sa.not_(_is_active_admin(users)), _another_active_admin(user_id))
    if db.session.execute(statement.where(keeps_an_admin)).rowcount == 0:
        db.session.rollback()
        raise LAST_ADMIN


def update_user(user, role=None, disabled=None, email_verified=None):
    """Change a user's role, disabled flag or verified address; disabling ends their sessions."""
    changes = (("role", role), ("disabled", disabled), ("email_verified", email_verified))
    values = {key: value for key, value in changes if value is not None}
    if not values:
        return
    statement = users.update().where(users.c.id == user.id).values(**values)
    if role == "user" or disabled:
        _guard_last_admin(statement, user.id)
    else:
        db.session.execute(statement)
    if disabled:
        revoke_sessions_of(user.id)
    db.session.refresh(user)


def delete_user(user):
    """Delete a user; their sessions go with them (ON DELETE CASCADE)."""
    _guard_last_admin(users.delete().where(users.c.id == user.id), user.id)
    db.session.expunge(user)


def count_ways_in(user_id):
    """Return how many ways a user has to sign in: a password, each identity, each passkey."""
    password = sa.select(sa.func.count()).where(
        users.c.id == user_id, users.c.password_hash.is_not(None)
    )
    linked = sa.select(sa.func.count()).where(identities.c.user_id == user_id)
    passkeys = sa.select(sa.func.count()).where(Passkey.user_id == user_id)
    return db.session.scalar(
        sa.select(
            password.scalar_subquery() + linked.scalar_subquery() + passkeys.scalar_subquery()
        )
    )


def remove_way_in(user_id, statement):
    """Run a statement that removes one of a user's ways in, unless none would be left.

    The user's row is locked first (PostgreSQL; SQLite serialises writers
    anyway), so two removals at once cannot both leave the account with no
    way in: 409 last_sign_in_method, and nothing changes. Return whether the
    statement removed anything.
    """
    db.session.execute(sa.select(users.c.id).where(users.c.id == user_id).with_for_update())
    if db.session.execute(statement).rowcount == 0:
        return False
    if count_ways_in(user_id) == 0:
        db.session.rollback()
        raise LAST_SIGN_IN_METHOD
    return True
