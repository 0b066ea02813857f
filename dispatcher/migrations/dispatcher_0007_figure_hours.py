"""dispatcher: the figures hour by hour (dispatcher/rollup.py). The figures of a month or a year
read these rows (a few hundred an hour) instead of the window's cases, assignments and history
(tens of millions of rows for a year of a big district). The rollup worker fills them from the
rows at its first round after this migration, from the first case on, and then hour by hour.

Revision ID: dispatcher_0007
Revises: dispatcher_0006
Create Date: 2026-12-08 00:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'dispatcher_0007'
down_revision: str | None = 'dispatcher_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'dispatcher_figure_hours',
        sa.Column('hour', sa.BigInteger(), nullable=False),
        sa.Column('figure', sa.String(length=32), nullable=False),
        sa.Column('street_id', sa.String(length=64), nullable=False),
        sa.Column('community_id', sa.String(length=64), nullable=False),
        sa.Column('category', sa.String(length=64), nullable=False),
        sa.Column('priority', sa.String(length=16), nullable=False),
        sa.Column('unit_id', sa.String(length=64), nullable=False),
        sa.Column('tier', sa.String(length=16), nullable=False),
        sa.Column('reported_hour', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.Column('seconds', sa.Numeric(24, 6), nullable=False),
        sa.PrimaryKeyConstraint(
            'hour', 'figure', 'street_id', 'community_id', 'category', 'priority', 'unit_id', 'tier', 'reported_hour'
        ),
    )
    op.create_table(
        'dispatcher_figure_mark',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('until', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'dispatcher_figure_stale',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('hour', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('dispatcher_figure_stale')
    op.drop_table('dispatcher_figure_mark')
    op.drop_table('dispatcher_figure_hours')
