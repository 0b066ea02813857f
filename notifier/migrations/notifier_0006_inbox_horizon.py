"""notifier: the inbox by the time each event was handled, for the pruner that deletes what is past
the inbox's horizon (services/storage/pruning.py); BRIN on PostgreSQL, since rows come in time order

Revision ID: notifier_0006
Revises: notifier_0005
Create Date: 2026-12-07 15:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'notifier_0006'
down_revision: str | None = 'notifier_0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_notifier_inbox_handled_at', 'notifier_inbox', ['handled_at'], postgresql_using='brin')


def downgrade() -> None:
    op.drop_index('ix_notifier_inbox_handled_at', table_name='notifier_inbox')
