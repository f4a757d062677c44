"""visits and pregnancy tests

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa

from study.migrations.append_only import allow_changes, forbid_changes


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('scheduled_date', sa.Date(), nullable=False),
    sa.Column('scheduled_time', sa.Time(), nullable=True),
    sa.Column('target_date', sa.Date(), nullable=True),
    sa.Column('window_days', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_visits_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visits')),
    sa.UniqueConstraint('participant_id', 'name', name=op.f('uq_visits_participant_id'))
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visits_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_visits_scheduled_date'), ['scheduled_date'], unique=False)

    op.create_table('pregnancy_tests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_pregnancy_tests_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pregnancy_tests')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_pregnancy_tests_idempotency_key'))
    )
    with op.batch_alter_table('pregnancy_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pregnancy_tests_participant_id'), ['participant_id'], unique=False)
    forbid_changes("pregnancy_tests")


def downgrade() -> None:
    allow_changes("pregnancy_tests")
    with op.batch_alter_table('pregnancy_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pregnancy_tests_participant_id'))
    op.drop_table('pregnancy_tests')
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visits_scheduled_date'))
        batch_op.drop_index(batch_op.f('ix_visits_participant_id'))
    op.drop_table('visits')
