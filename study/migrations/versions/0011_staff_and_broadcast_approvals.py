"""staff and broadcast approvals: changes to the study team proposed in Telegram (/staff) and
their confirmation; when a broadcast's author confirmed it (its approval expires from then), and
its states (withdrawn, expired) as a CHECK constraint

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# Written out here rather than imported from study.models: a migration that ran once must run
# the same way again, whatever the models become.
BROADCAST_STATES = "'draft', 'awaiting_approval', 'sending', 'done', 'cancelled', 'withdrawn', 'expired'"
CHANGE_KINDS = "'add', 'role', 'deactivate'"
CHANGE_STATES = "'proposed', 'confirmed', 'cancelled'"
ROLES = "'coordinator', 'investigator', 'monitor'"


def upgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(op.f('ck_broadcasts_status'), f"status IN ({BROADCAST_STATES})")
    # Broadcasts confirmed before this release: their draft's time is the nearest known.
    op.execute("UPDATE broadcasts SET confirmed_at = created_at "
               "WHERE status IN ('awaiting_approval', 'sending', 'done')")

    op.create_table('staff_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('proposed_by', sa.Integer(), nullable=False),
    sa.Column('proposed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('telegram_user_id', sa.BigInteger(), nullable=True),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(f"kind IN ({CHANGE_KINDS})", name=op.f('ck_staff_changes_kind')),
    sa.CheckConstraint(f"state IN ({CHANGE_STATES})", name=op.f('ck_staff_changes_state')),
    sa.CheckConstraint(f"role IS NULL OR role IN ({ROLES})", name=op.f('ck_staff_changes_role')),
    sa.CheckConstraint("(kind = 'add' AND telegram_user_id IS NOT NULL AND name IS NOT NULL) OR "
                       "(kind <> 'add' AND staff_id IS NOT NULL)", name=op.f('ck_staff_changes_target')),
    sa.ForeignKeyConstraint(['proposed_by'], ['staff.id'], name=op.f('fk_staff_changes_proposed_by_staff')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_staff_changes_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_changes')),
    )


def downgrade() -> None:
    op.drop_table('staff_changes')
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_broadcasts_status'), type_='check')
        batch_op.drop_column('confirmed_at')
