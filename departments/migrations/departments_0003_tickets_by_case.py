"""departments tickets by case: the consumer reads and recounts a case's tickets

Revision ID: departments_0003
Revises: departments_0002
Create Date: 2026-11-24 09:00:00
"""
from collections.abc import Sequence

from alembic import op


revision: str = 'departments_0003'
down_revision: str | None = 'departments_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('departments_tickets', schema=None) as batch_op:
        batch_op.create_index('ix_departments_tickets_case', ['case_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('departments_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_departments_tickets_case')
