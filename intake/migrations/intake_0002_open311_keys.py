"""Open311 API keys; requests listed by date

Revision ID: intake_0002
Revises: intake_0001
Create Date: 2026-11-22 04:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'intake_0002'
down_revision: str | None = 'intake_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('intake_open311_keys',
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key_hash'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('intake_case_views', schema=None) as batch_op:
        batch_op.create_index('ix_intake_case_views_created_at', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('intake_case_views', schema=None) as batch_op:
        batch_op.drop_index('ix_intake_case_views_created_at')
    op.drop_table('intake_open311_keys')
