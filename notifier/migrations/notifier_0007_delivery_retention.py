"""notifier: notifications by the time they were made, and deliveries by the notification they
belong to, for the pruner that deletes what is told once its deliveries have gone (notifier/bootstrap.py;
the deliveries themselves go by their existing (state, next_attempt_at) index)

Revision ID: notifier_0007
Revises: notifier_0006
Create Date: 2026-12-07 17:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'notifier_0007'
down_revision: str | None = 'notifier_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_notifier_notifications_created_at', 'notifier_notifications', ['created_at'])
    op.create_index('ix_notifier_deliveries_ref', 'notifier_deliveries', ['ref'])


def downgrade() -> None:
    op.drop_index('ix_notifier_deliveries_ref', table_name='notifier_deliveries')
    op.drop_index('ix_notifier_notifications_created_at', table_name='notifier_notifications')
