"""staff requests: a change a staff member asks for in Telegram, held until they confirm it;
outbox rows that edit an earlier message (an acknowledged alert's other copies)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# Written out here rather than imported from study.models: a migration that ran once must run
# the same way again, whatever the models become.
ACTIONS = "'plan_visits', 'move_visit', 'cancel_visit', 'visit_done', 'pause', 'end', 'timezone'"
STATES = "'asking', 'confirming', 'confirmed', 'cancelled', 'refused', 'superseded', 'expired'"
STEPS = "'visit', 'baseline', 'date', 'reason'"


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('edit_message_id', sa.BigInteger(), nullable=True))

    op.create_table('staff_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('step', sa.String(length=12), nullable=True),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(f"action IN ({ACTIONS})", name=op.f('ck_staff_requests_action')),
    sa.CheckConstraint(f"state IN ({STATES})", name=op.f('ck_staff_requests_state')),
    sa.CheckConstraint(f"step IS NULL OR step IN ({STEPS})", name=op.f('ck_staff_requests_step')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_staff_requests_staff_id_staff')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_staff_requests_participant_id_participants')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_staff_requests_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_requests')),
    )
    with op.batch_alter_table('staff_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_requests_staff_id'), ['staff_id'], unique=False)


def downgrade() -> None:
    op.drop_table('staff_requests')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('edit_message_id')
