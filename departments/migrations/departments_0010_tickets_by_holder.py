"""departments tickets by holder: a person's own tickets ("my tickets"), nearest due first

Revision ID: departments_0010
Revises: departments_0009
Create Date: 2026-12-07 03:40:00
"""
from collections.abc import Sequence

from alembic import op


revision: str = 'departments_0010'
down_revision: str | None = 'departments_0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_departments_tickets_holder', 'departments_tickets', ['claimed_by_id', 'due_at', 'ticket_id'])


def downgrade() -> None:
    op.drop_index('ix_departments_tickets_holder', table_name='departments_tickets')
