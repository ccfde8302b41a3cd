"""optional passwords; the first factor of an mfaToken

users.password_hash becomes nullable: an account made through a provider
has no password until its owner sets one. mfa_challenges.amr remembers the
first step of an MFA sign-in ("pwd", or "oauth"); existing rows mean "pwd".

Revision ID: e1c7a9f3b250
Revises: 5d8e2b7c4a90
Create Date: 2026-12-07 04:10:00.000000

SQLite cannot drop a NOT NULL in place, so batch mode rebuilds `users`.
env.py turns foreign keys off around the migration, so dropping the old
table takes no sessions with it. The rebuilt table keeps AUTOINCREMENT and
the highest id ever handed out (sqlite_sequence), so a deleted user's id is
still never reused.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e1c7a9f3b250'
down_revision = '5d8e2b7c4a90'
branch_labels = None
depends_on = None


def _users_sequence(bind):
    """Return the highest user id SQLite handed out, or None elsewhere."""
    if bind.dialect.name != "sqlite":
        return None
    return bind.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = 'users'"
    ).scalar()


def _restore_users_sequence(bind, seq):
    """Put back the highest user id a rebuilt SQLite table would forget."""
    if seq is None:
        return
    bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'users'")
    bind.exec_driver_sql(
        "INSERT INTO sqlite_sequence (name, seq) VALUES ('users', ?)", (seq,)
    )


def _alter_password_hash(nullable):
    bind = op.get_bind()
    seq = _users_sequence(bind)
    with op.batch_alter_table(
        'users', schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.alter_column(
            'password_hash', existing_type=sa.String(length=60), nullable=nullable
        )
    _restore_users_sequence(bind, seq)


def upgrade():
    _alter_password_hash(nullable=True)
    with op.batch_alter_table('mfa_challenges', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amr', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('mfa_challenges', schema=None) as batch_op:
        batch_op.drop_column('amr')
    # Accounts without a password cannot go back to a schema that requires one.
    op.execute(sa.text("DELETE FROM users WHERE password_hash IS NULL"))
    _alter_password_hash(nullable=False)
