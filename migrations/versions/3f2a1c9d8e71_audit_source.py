"""audit source: events say whether they came from the API or the CLI

Revision ID: 3f2a1c9d8e71
Revises: a483ecb9716d
Create Date: 2026-11-29 20:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3f2a1c9d8e71'
down_revision = 'a483ecb9716d'
branch_labels = None
depends_on = None


def upgrade():
    # Every event written before this revision came through the API: the
    # CLI recorded nothing until now.
    with op.batch_alter_table('auth_events', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('source', sa.String(length=16), server_default='api', nullable=False)
        )
        batch_op.add_column(sa.Column('key_id', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('auth_events', schema=None) as batch_op:
        batch_op.drop_column('key_id')
        batch_op.drop_column('source')
