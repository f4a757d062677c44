"""enrolment in the staff chat (enrolment_drafts); the wrong-code lock-out in the database
(wrong_codes, code_lockouts: strangers' chats as salted hashes only) and the deployment's salt
(hash_salts)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

# Written out here rather than imported from study.models: a migration that ran once must run
# the same way again, whatever the models become.
STEPS = "'timezone', 'language', 'wocbp', 'times', 'confirm'"
STATES = "'open', 'enrolled', 'cancelled', 'replaced'"


def upgrade() -> None:
    op.create_table('enrolment_drafts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.String(length=32), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=True),
    sa.Column('wocbp', sa.Boolean(), nullable=True),
    sa.Column('reminder_times', sa.String(length=128), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.CheckConstraint(f"step IN ({STEPS})", name=op.f('ck_enrolment_drafts_step')),
    sa.CheckConstraint(f"state IN ({STATES})", name=op.f('ck_enrolment_drafts_state')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_enrolment_drafts_staff_id_staff')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'],
                            name=op.f('fk_enrolment_drafts_participant_id_participants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrolment_drafts')),
    )
    with op.batch_alter_table('enrolment_drafts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrolment_drafts_staff_id'), ['staff_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrolment_drafts_state'), ['state'], unique=False)

    op.create_table('wrong_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('chat_hash', sa.String(length=64), nullable=False),
    sa.Column('tried_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wrong_codes')),
    sa.UniqueConstraint('update_hash', name=op.f('uq_wrong_codes_update_hash')),
    )
    with op.batch_alter_table('wrong_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wrong_codes_chat_hash'), ['chat_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_wrong_codes_tried_at'), ['tried_at'], unique=False)

    op.create_table('code_lockouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('chat_hash', sa.String(length=64), nullable=True),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("scope IN ('chat', 'all')", name=op.f('ck_code_lockouts_scope')),
    sa.CheckConstraint("(scope = 'chat' AND chat_hash IS NOT NULL) OR (scope = 'all' AND chat_hash IS NULL)",
                       name=op.f('ck_code_lockouts_chat')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_lockouts')),
    )
    with op.batch_alter_table('code_lockouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_code_lockouts_chat_hash'), ['chat_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_code_lockouts_until'), ['until'], unique=False)

    salts = op.create_table('hash_salts',
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('purpose', name=op.f('pk_hash_salts')),
    )
    # One secret per deployment, made here and never shown: strangers' chat ids are kept only as
    # HMACs under it (a copy of the code, or another site's database, does not reverse them).
    op.bulk_insert(salts, [{"purpose": "strangers", "salt": secrets.token_hex(32)}])


def downgrade() -> None:
    op.drop_table('hash_salts')
    with op.batch_alter_table('code_lockouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_code_lockouts_until'))
        batch_op.drop_index(batch_op.f('ix_code_lockouts_chat_hash'))
    op.drop_table('code_lockouts')
    with op.batch_alter_table('wrong_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wrong_codes_tried_at'))
        batch_op.drop_index(batch_op.f('ix_wrong_codes_chat_hash'))
    op.drop_table('wrong_codes')
    with op.batch_alter_table('enrolment_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrolment_drafts_state'))
        batch_op.drop_index(batch_op.f('ix_enrolment_drafts_staff_id'))
    op.drop_table('enrolment_drafts')
