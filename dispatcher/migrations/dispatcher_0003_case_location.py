"""dispatcher case location: where a case is, to route it to the property company of the compound it lies in

Revision ID: dispatcher_0003
Revises: dispatcher_0002
Create Date: 2026-12-02 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'dispatcher_0003'
down_revision: str | None = 'dispatcher_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a case stored before has no location and routes by its grid alone.
    with op.batch_alter_table('dispatcher_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lat', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('lon', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dispatcher_cases', schema=None) as batch_op:
        batch_op.drop_column('lon')
        batch_op.drop_column('lat')
