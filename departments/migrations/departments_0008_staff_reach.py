"""departments staff reach: a person's own email and phone, the channels they chose of them
and their language, for the messages about the tickets they hold

Revision ID: departments_0008
Revises: departments_0007
Create Date: 2026-12-07 00:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'departments_0008'
down_revision: str | None = 'departments_0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('departments_staff', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('phone', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('language', sa.String(length=8), server_default='zh-CN', nullable=False))
        batch_op.add_column(sa.Column('channels', sa.String(length=32), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('departments_staff', schema=None) as batch_op:
        batch_op.drop_column('channels')
        batch_op.drop_column('language')
        batch_op.drop_column('phone')
        batch_op.drop_column('email')
