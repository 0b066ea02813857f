"""intake: the staff accounts departments revoked (gridcall.staff.revoked), so that a revoked grid
worker's token flags no household

Revision ID: intake_0005
Revises: intake_0004
Create Date: 2026-12-07 06:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'intake_0005'
down_revision: str | None = 'intake_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'intake_revoked_staff',
        sa.Column('staff_id', sa.String(length=64), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('staff_id'),
    )


def downgrade() -> None:
    op.drop_table('intake_revoked_staff')
