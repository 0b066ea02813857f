"""departments ticket location: where the resident reported the case, drawn on the grid's
shape in the console

Revision ID: departments_0009
Revises: departments_0008
Create Date: 2026-12-07 03:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'departments_0009'
down_revision: str | None = 'departments_0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a ticket opened before locations were kept has none, and shows none.
    with op.batch_alter_table('departments_tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lat', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('lon', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('departments_tickets', schema=None) as batch_op:
        batch_op.drop_column('lon')
        batch_op.drop_column('lat')
