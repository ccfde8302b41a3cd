"""identities at providers, and the flows of sign-in with a provider

Revision ID: c4d81f2a9e67
Revises: 9c4d2f7a1e58
Create Date: 2026-12-07 03:43:20.349433

Two new tables; nothing existing changes, so a filled database upgrades in
place on both SQLite and PostgreSQL. `identities` links (provider, subject)
to a user, unique per pair; `oauth_flows` holds one round trip through a
provider (digests of its state, nonce and one-time code). Existing users
have no identity and keep signing in with their passwords.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4d81f2a9e67'
down_revision = '9c4d2f7a1e58'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_identities_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identities')),
    sa.UniqueConstraint('provider', 'subject', name=op.f('uq_identities_provider'))
    )
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identities_user_id'), ['user_id'], unique=False)

    op.create_table('oauth_flows',
    sa.Column('state_digest', sa.String(length=64), nullable=False),
    sa.Column('nonce_digest', sa.String(length=64), nullable=True),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('purpose', sa.String(length=8), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('redirect_to', sa.String(length=2048), nullable=False),
    sa.Column('code_challenge', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('code_digest', sa.String(length=64), nullable=True),
    sa.Column('code_expires_at', sa.DateTime(), nullable=True),
    sa.Column('code_used_at', sa.DateTime(), nullable=True),
    sa.Column('subject', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('new_user', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.CheckConstraint("purpose IN ('signin', 'link')", name=op.f('ck_oauth_flows_purpose')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_flows_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('state_digest', name=op.f('pk_oauth_flows')),
    sa.UniqueConstraint('code_digest', name=op.f('uq_oauth_flows_code_digest'))
    )
    with op.batch_alter_table('oauth_flows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_flows_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_oauth_flows_user_id'), ['user_id'], unique=False)



def downgrade():
    with op.batch_alter_table('oauth_flows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_flows_user_id'))
        batch_op.drop_index(batch_op.f('ix_oauth_flows_expires_at'))

    op.drop_table('oauth_flows')
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identities_user_id'))

    op.drop_table('identities')
