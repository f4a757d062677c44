"""outbox rows that edit an earlier message (an acknowledged alert's other copies)

Revision ID: 0014
Revises: 0009
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('edit_message_id', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('edit_message_id')
