"""intake: the residents' rate limit counted in the database, so that it holds across intake
replicas (services/web/ratewindow.py); UNLOGGED on PostgreSQL, since counters need no crash
safety and a hit then writes no WAL

Revision ID: intake_0006
Revises: intake_0005
Create Date: 2026-12-07 11:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'intake_0006'
down_revision: str | None = 'intake_0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    unlogged = ['UNLOGGED'] if op.get_bind().dialect.name == 'postgresql' else []
    op.create_table(
        'intake_rate_windows',
        sa.Column('client', sa.String(length=100), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('hits', sa.Integer(), nullable=False),
        sa.Column('granted', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('client', 'window_start'),
        prefixes=unlogged,
    )


def downgrade() -> None:
    op.drop_table('intake_rate_windows')
