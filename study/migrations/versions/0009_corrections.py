"""corrections: the study team's corrections of diary entries and check-ins, and a participant's
own entry standing for a slot the system had recorded as missing (supersessions); both
append-only

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

from study.migrations.append_only import allow_changes, forbid_changes

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# Written out here rather than imported from study.models: a migration that ran once must run
# the same way again, whatever the models become.
DIARY_FIELDS = "'kind', 'occurred_at', 'local_date', 'missed_reason', 'withdrawn'"
CHECKIN_FIELDS = ("'itch', 'pain', 'reaction', 'reaction_severity', 'new_problem', 'medicines', "
                  "'medicines_change'")
TARGET = (f"(entity = 'diary_entry' AND diary_entry_id IS NOT NULL AND checkin_id IS NULL AND "
          f"field IN ({DIARY_FIELDS})) OR "
          f"(entity = 'checkin' AND checkin_id IS NOT NULL AND diary_entry_id IS NULL AND "
          f"field IN ({CHECKIN_FIELDS}))")


def upgrade() -> None:
    op.create_table('corrections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('entity', sa.String(length=16), nullable=False),
    sa.Column('diary_entry_id', sa.Integer(), nullable=True),
    sa.Column('checkin_id', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(length=24), nullable=False),
    sa.Column('old_value', sa.JSON(), nullable=True),
    sa.Column('new_value', sa.JSON(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('corrected_by', sa.String(length=64), nullable=False),
    sa.Column('corrected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.CheckConstraint("entity IN ('diary_entry', 'checkin')", name=op.f('ck_corrections_entity')),
    sa.CheckConstraint(TARGET, name=op.f('ck_corrections_target')),
    sa.CheckConstraint("reason <> ''", name=op.f('ck_corrections_reason')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_corrections_participant_id_participants')),
    sa.ForeignKeyConstraint(['diary_entry_id'], ['diary_entries.id'],
                            name=op.f('fk_corrections_diary_entry_id_diary_entries')),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkins.id'], name=op.f('fk_corrections_checkin_id_checkins')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_corrections')),
    )
    with op.batch_alter_table('corrections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_corrections_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_corrections_diary_entry_id'), ['diary_entry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_corrections_checkin_id'), ['checkin_id'], unique=False)
    forbid_changes('corrections')

    op.create_table('supersessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('superseded_id', sa.Integer(), nullable=False),
    sa.Column('by_entry_id', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.CheckConstraint('superseded_id <> by_entry_id', name=op.f('ck_supersessions_distinct')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_supersessions_participant_id_participants')),
    sa.ForeignKeyConstraint(['superseded_id'], ['diary_entries.id'],
                            name=op.f('fk_supersessions_superseded_id_diary_entries')),
    sa.ForeignKeyConstraint(['by_entry_id'], ['diary_entries.id'],
                            name=op.f('fk_supersessions_by_entry_id_diary_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_supersessions')),
    sa.UniqueConstraint('by_entry_id', name=op.f('uq_supersessions_by_entry_id')),
    )
    with op.batch_alter_table('supersessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_supersessions_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_supersessions_superseded_id'), ['superseded_id'], unique=False)
    forbid_changes('supersessions')


def downgrade() -> None:
    allow_changes('supersessions')
    op.drop_table('supersessions')
    allow_changes('corrections')
    op.drop_table('corrections')
