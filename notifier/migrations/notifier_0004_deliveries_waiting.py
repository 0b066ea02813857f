"""notifier deliveries: a partial index of the rows still to send, per channel by when they are due, which
the delivery worker claims from (services/delivery/tables.py). Without it PostgreSQL may walk
the primary key past every delivered row to find the few waiting ones.

Revision ID: notifier_0004
Revises: notifier_0003
Create Date: 2026-12-07 00:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'notifier_0004'
down_revision: str | None = 'notifier_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("state IN ('created', 'sending', 'temporary-failure')")


def upgrade() -> None:
    with op.batch_alter_table('notifier_deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_notifier_deliveries_waiting',
            ['channel', 'next_attempt_at', 'id'],
            unique=False,
            postgresql_where=WAITING,
            sqlite_where=WAITING,
        )


def downgrade() -> None:
    with op.batch_alter_table('notifier_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_notifier_deliveries_waiting')
