"""send slots: the bot's last sends, shared by every process (bot/send_limiter.py)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Its rows are made by the first process that sends (one per slot of the limit it runs with).
    op.create_table('send_slots',
    sa.Column('slot', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('taken_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('slot', name=op.f('pk_send_slots'))
    )


def downgrade() -> None:
    op.drop_table('send_slots')
