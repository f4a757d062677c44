"""planning reads only what it needs: a participant's diary by day, their check-ins by kind and
time (each replacing the index on participant_id alone, which they begin with)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain CREATE and DROP INDEX on both databases: no table is rebuilt, so the append-only
    # triggers on diary_entries stay as they are.
    op.create_index('ix_diary_entries_participant_day', 'diary_entries', ['participant_id', 'local_date'])
    op.drop_index('ix_diary_entries_participant_id', table_name='diary_entries')
    op.create_index('ix_checkins_participant_kind_submitted', 'checkins', ['participant_id', 'kind', 'submitted_at'])
    op.drop_index('ix_checkins_participant_id', table_name='checkins')


def downgrade() -> None:
    op.create_index('ix_checkins_participant_id', 'checkins', ['participant_id'])
    op.drop_index('ix_checkins_participant_kind_submitted', table_name='checkins')
    op.create_index('ix_diary_entries_participant_id', 'diary_entries', ['participant_id'])
    op.drop_index('ix_diary_entries_participant_day', table_name='diary_entries')
