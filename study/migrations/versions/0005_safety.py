"""safety: check-ins, alerts, participant messages

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa

from study.migrations.append_only import allow_changes, forbid_changes


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checkin_drafts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_checkin_drafts_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkin_drafts')),
    sa.UniqueConstraint('participant_id', name=op.f('uq_checkin_drafts_participant_id'))
    )
    op.create_table('checkins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('itch', sa.Integer(), nullable=True),
    sa.Column('pain', sa.Integer(), nullable=True),
    sa.Column('reaction', sa.String(length=16), nullable=True),
    sa.Column('reaction_severity', sa.String(length=16), nullable=True),
    sa.Column('new_problem', sa.Text(), nullable=True),
    sa.Column('medicines', sa.String(length=16), nullable=True),
    sa.Column('red_flags', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_checkins_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkins'))
    )
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkins_participant_id'), ['participant_id'], unique=False)

    op.create_table('participant_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_participant_messages_participant_id_participants')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_participant_messages_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participant_messages'))
    )
    with op.batch_alter_table('participant_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_participant_messages_participant_id'), ['participant_id'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('triggers', sa.JSON(), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('acknowledged_by', sa.Integer(), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checkin_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['acknowledged_by'], ['staff.id'], name=op.f('fk_alerts_acknowledged_by_staff')),
    sa.ForeignKeyConstraint(['checkin_id'], ['checkins.id'], name=op.f('fk_alerts_checkin_id_checkins')),
    sa.ForeignKeyConstraint(['message_id'], ['participant_messages.id'], name=op.f('fk_alerts_message_id_participant_messages')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_alerts_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_participant_id'), ['participant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_status'), ['status'], unique=False)


    for table in ("checkins", "participant_messages"):
        forbid_changes(table)


def downgrade() -> None:
    for table in ("checkins", "participant_messages"):
        allow_changes(table)
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_status'))
        batch_op.drop_index(batch_op.f('ix_alerts_participant_id'))

    op.drop_table('alerts')
    with op.batch_alter_table('participant_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_participant_messages_participant_id'))

    op.drop_table('participant_messages')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkins_participant_id'))

    op.drop_table('checkins')
    op.drop_table('checkin_drafts')
