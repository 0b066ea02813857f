"""notifier holders: who holds a unit's ticket of a case and how they chose to be reached, so
what is told to the unit of that case reaches them too

Revision ID: notifier_0005
Revises: notifier_0004
Create Date: 2026-12-07 00:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'notifier_0005'
down_revision: str | None = 'notifier_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notifier_holders',
    sa.Column('key', sa.String(length=140), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('channels', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('notifier_holders', schema=None) as batch_op:
        batch_op.create_index('ix_notifier_holders_case_id', ['case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifier_holders', schema=None) as batch_op:
        batch_op.drop_index('ix_notifier_holders_case_id')
    op.drop_table('notifier_holders')
