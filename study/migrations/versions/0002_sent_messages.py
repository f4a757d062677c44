"""the record of sent messages (append-only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa

from study.migrations.append_only import allow_changes, forbid_changes

TABLE = "sent_messages"

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(TABLE,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('template_id', sa.String(length=64), nullable=False),
    sa.Column('template_hash', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('draft', sa.Boolean(), nullable=False),
    sa.Column('recipient', sa.String(length=16), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('via', sa.String(length=16), nullable=False),
    sa.Column('telegram_message_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_sent_messages_participant_id_participants')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_sent_messages_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sent_messages'))
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sent_messages_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sent_messages_staff_id'), ['staff_id'], unique=False)
    forbid_changes(TABLE)


def downgrade() -> None:
    allow_changes(TABLE)
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sent_messages_staff_id'))
        batch_op.drop_index(batch_op.f('ix_sent_messages_participant_id'))
    op.drop_table(TABLE)


