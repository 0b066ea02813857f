"""departments deliveries: a partial index of the rows still to send, per channel by when they are due, which
the delivery worker claims from (services/delivery/tables.py). Without it PostgreSQL may walk
the primary key past every delivered row to find the few waiting ones.

Revision ID: departments_0007
Revises: departments_0006
Create Date: 2026-12-07 00:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'departments_0007'
down_revision: str | None = 'departments_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("state IN ('created', 'sending', 'temporary-failure')")


def upgrade() -> None:
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_departments_deliveries_waiting',
            ['channel', 'next_attempt_at', 'id'],
            unique=False,
            postgresql_where=WAITING,
            sqlite_where=WAITING,
        )


def downgrade() -> None:
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_departments_deliveries_waiting')
