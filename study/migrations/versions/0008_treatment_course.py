"""treatment course: each participant's state (on treatment, interrupted, off treatment,
completed, withdrawn) and its history; answers to the protocol's contraception question

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

from study.migrations.append_only import allow_changes, forbid_changes


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

STATES = "'on_treatment', 'interrupted', 'off_treatment', 'completed', 'withdrawn'"
REASONS = "'pregnancy', 'infection', 'adverse_event', 'investigator_decision', 'end_of_treatment', 'other'"


def upgrade() -> None:
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('treatment', sa.String(length=16), nullable=False,
                                      server_default='on_treatment'))
        batch_op.add_column(sa.Column('treatment_reason', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('treatment_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(op.f('ck_participants_treatment'), f"treatment IN ({STATES})")
        batch_op.create_check_constraint(op.f('ck_participants_treatment_reason'),
                                         f"treatment_reason IS NULL OR treatment_reason IN ({REASONS})")
    # Participants who already left the study left their treatment with it.
    op.execute("UPDATE participants SET treatment = status WHERE status IN ('withdrawn', 'completed')")

    op.create_table('treatment_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('previous', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=24), nullable=False),
    sa.Column('reason_text', sa.Text(), nullable=True),
    sa.Column('changed_by', sa.String(length=64), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.CheckConstraint(f"state IN ({STATES})", name=op.f('ck_treatment_changes_state')),
    sa.CheckConstraint(f"reason IN ({REASONS})", name=op.f('ck_treatment_changes_reason')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_treatment_changes_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_treatment_changes')),
    )
    with op.batch_alter_table('treatment_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_treatment_changes_participant_id'), ['participant_id'], unique=False)
    forbid_changes('treatment_changes')

    op.create_table('contraception_answers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('uses', sa.Boolean(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_contraception_answers_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contraception_answers')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_contraception_answers_idempotency_key')),
    )
    with op.batch_alter_table('contraception_answers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contraception_answers_participant_id'), ['participant_id'],
                              unique=False)
    forbid_changes('contraception_answers')


def downgrade() -> None:
    allow_changes('contraception_answers')
    op.drop_table('contraception_answers')
    allow_changes('treatment_changes')
    op.drop_table('treatment_changes')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_participants_treatment_reason'), type_='check')
        batch_op.drop_constraint(op.f('ck_participants_treatment'), type_='check')
        batch_op.drop_column('treatment_since')
        batch_op.drop_column('treatment_reason')
        batch_op.drop_column('treatment')
