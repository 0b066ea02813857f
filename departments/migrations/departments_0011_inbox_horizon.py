"""departments: the inbox by the time each event was handled, for the pruner that deletes what is past
the inbox's horizon (services/storage/pruning.py); BRIN on PostgreSQL, since rows come in time order

Revision ID: departments_0011
Revises: departments_0010
Create Date: 2026-12-07 15:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'departments_0011'
down_revision: str | None = 'departments_0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_departments_inbox_handled_at', 'departments_inbox', ['handled_at'], postgresql_using='brin')


def downgrade() -> None:
    op.drop_index('ix_departments_inbox_handled_at', table_name='departments_inbox')
