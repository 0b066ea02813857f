"""departments adapters, outbound: webhook deliveries to units' own systems, and adapters
switched off by their system (410 Gone)

Revision ID: departments_0005
Revises: departments_0004
Create Date: 2026-12-10 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'departments_0005'
down_revision: str | None = 'departments_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('departments_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('msg_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('msg_id', name='uq_departments_deliveries_msg_id')
    )
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_departments_deliveries_due', ['unit_id', 'state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_departments_deliveries_case', ['case_id', 'unit_id', 'state'], unique=False)
    op.create_table('departments_adapters',
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled_because', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('unit_id')
    )


def downgrade() -> None:
    op.drop_table('departments_adapters')
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_departments_deliveries_case')
        batch_op.drop_index('ix_departments_deliveries_due')
    op.drop_table('departments_deliveries')
