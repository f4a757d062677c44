"""reminders and deliveries: outbox timing, delivery events, participants' scheduling state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa

from study.migrations.append_only import allow_changes, forbid_changes


revision = '0003'
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_delivery_events_outbox_id_outbox')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_events'))
    )
    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_events_outbox_id'), ['outbox_id'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=32), nullable=False, server_default='notice'))
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('late_after', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('stale_after', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('buttons', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('disable_notification', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('active_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('unreachable_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_plan_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_participants_next_plan_at'), ['next_plan_at'], unique=False)
    # Participants who joined before reminders existed are reminded from their consent on.
    op.execute("UPDATE participants SET active_since = consented_at WHERE consented_at IS NOT NULL")
    forbid_changes("delivery_events")


def downgrade() -> None:
    allow_changes("delivery_events")
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_participants_next_plan_at'))
        batch_op.drop_column('next_plan_at')
        batch_op.drop_column('unreachable_since')
        batch_op.drop_column('active_since')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('answered_at')
        batch_op.drop_column('disable_notification')
        batch_op.drop_column('buttons')
        batch_op.drop_column('stale_after')
        batch_op.drop_column('late_after')
        batch_op.drop_column('due_at')
        batch_op.drop_column('kind')

    with op.batch_alter_table('delivery_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_events_outbox_id'))

    op.drop_table('delivery_events')
