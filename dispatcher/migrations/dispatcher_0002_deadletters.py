"""dispatcher dead letters: records its consumer could not handle, kept until re-driven

Revision ID: dispatcher_0002
Revises: dispatcher_0001
Create Date: 2026-11-23 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'dispatcher_0002'
down_revision: str | None = 'dispatcher_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dispatcher_deadletters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('consumer', sa.String(length=100), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=True),
    sa.Column('event_type', sa.String(length=200), nullable=True),
    sa.Column('case_id', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('source_topic', sa.String(length=200), nullable=False),
    sa.Column('source_partition', sa.Integer(), nullable=False),
    sa.Column('source_offset', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('parked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('consumer', 'source_topic', 'source_partition', 'source_offset', name='uq_dispatcher_deadletters_source')
    )
    with op.batch_alter_table('dispatcher_deadletters', schema=None) as batch_op:
        batch_op.create_index('ix_dispatcher_deadletters_consumer_event', ['consumer', 'event_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dispatcher_deadletters', schema=None) as batch_op:
        batch_op.drop_index('ix_dispatcher_deadletters_consumer_event')

    op.drop_table('dispatcher_deadletters')
