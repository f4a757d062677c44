"""trust: processed updates, check-in drafts that expire, incomplete check-ins, what
participants send (kind, screening, original length), outbox rows tied to a participant's message

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

from study.migrations.append_only import allow_changes, forbid_changes


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

MESSAGE_KINDS = "'text', 'photo', 'document', 'voice', 'audio', 'video', 'video_note', 'animation'"


def upgrade() -> None:
    op.create_table('processed_updates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bot_id', sa.BigInteger(), nullable=False),
    sa.Column('update_id', sa.BigInteger(), nullable=False),
    sa.Column('callback_query_id', sa.String(length=64), nullable=True),
    sa.Column('action_key', sa.String(length=160), nullable=True),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answer', sa.JSON(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_processed_updates_participant_id_participants')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_processed_updates_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processed_updates')),
    sa.UniqueConstraint("bot_id", "update_id", name=op.f("uq_processed_updates_bot_id")),
    sa.UniqueConstraint('callback_query_id', name=op.f('uq_processed_updates_callback_query_id')),
    sa.UniqueConstraint('action_key', name=op.f('uq_processed_updates_action_key')),
    )
    with op.batch_alter_table('processed_updates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processed_updates_handled_at'), ['handled_at'], unique=False)

    with op.batch_alter_table('checkin_drafts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=8), nullable=False, server_default='asking'))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    # Drafts started before this release: a day from when they were last touched.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE checkin_drafts SET expires_at = updated_at + interval '1 day'")
    else:
        op.execute("UPDATE checkin_drafts SET expires_at = datetime(updated_at, '+1 day')")
    with op.batch_alter_table('checkin_drafts', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_check_constraint(op.f('ck_checkin_drafts_state'), "state IN ('asking', 'later')")
        batch_op.create_index(batch_op.f('ix_checkin_drafts_expires_at'), ['expires_at'], unique=False)

    op.create_table('incomplete_checkins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.CheckConstraint("reason IN ('expired', 'restarted')", name=op.f('ck_incomplete_checkins_reason')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_incomplete_checkins_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incomplete_checkins')),
    )
    with op.batch_alter_table('incomplete_checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incomplete_checkins_participant_id'), ['participant_id'], unique=False)
    forbid_changes('incomplete_checkins')

    # participant_messages is append-only: its guard is lifted only while columns are added.
    allow_changes('participant_messages')
    with op.batch_alter_table('participant_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='text'))
        batch_op.add_column(sa.Column('original_length', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('context', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('screening', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('telegram_message_id', sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(op.f('ck_participant_messages_kind'), f"kind IN ({MESSAGE_KINDS})")
    forbid_changes('participant_messages')

    allow_changes('checkins')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('medicines_change', sa.Text(), nullable=True))
    forbid_changes('checkins')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('participant_message_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_outbox_participant_message_id_participant_messages'),
                                    'participant_messages', ['participant_message_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_outbox_participant_message_id'), ['participant_message_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_participant_message_id'))
        batch_op.drop_constraint(batch_op.f('fk_outbox_participant_message_id_participant_messages'),
                                 type_='foreignkey')
        batch_op.drop_column('participant_message_id')
    allow_changes('checkins')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_column('medicines_change')
    forbid_changes('checkins')
    allow_changes('participant_messages')
    with op.batch_alter_table('participant_messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_participant_messages_kind'), type_='check')
        for column in ('telegram_message_id', 'screening', 'context', 'original_length', 'kind'):
            batch_op.drop_column(column)
    forbid_changes('participant_messages')
    allow_changes('incomplete_checkins')
    op.drop_table('incomplete_checkins')
    with op.batch_alter_table('checkin_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkin_drafts_expires_at'))
        batch_op.drop_constraint(batch_op.f('ck_checkin_drafts_state'), type_='check')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('state')
    op.drop_table('processed_updates')
