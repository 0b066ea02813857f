"""dispatcher: the inbox by the time each event was handled, for the pruner that deletes what is past
the inbox's horizon (services/storage/pruning.py); BRIN on PostgreSQL, since rows come in time order

Revision ID: dispatcher_0004
Revises: dispatcher_0003
Create Date: 2026-12-07 15:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'dispatcher_0004'
down_revision: str | None = 'dispatcher_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_dispatcher_inbox_handled_at', 'dispatcher_inbox', ['handled_at'], postgresql_using='brin')


def downgrade() -> None:
    op.drop_index('ix_dispatcher_inbox_handled_at', table_name='dispatcher_inbox')
