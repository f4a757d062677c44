"""send chats and replies: each chat's recent sends, and until when a reply waits, shared by every process (bot/send_slots.py)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A bucket of chats (a hash of the chat's id, never the id) gets its row at its first send.
    op.create_table('send_chats',
    sa.Column('bucket', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('newest', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('bucket', name=op.f('pk_send_chats'))
    )
    # One row, made by the first process that sends.
    op.create_table('send_replies',
    sa.Column('id', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('waiting_until', sa.Float(), nullable=False),
    sa.CheckConstraint('id = 0', name=op.f('ck_send_replies_one_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_replies'))
    )


def downgrade() -> None:
    op.drop_table('send_replies')
    op.drop_table('send_chats')
