"""departments deliveries in the kernel's one shape (services/delivery/tables.py): the unit is
the destination, the event type the kind, the last error the reason; a channel, a sequence per
unit and case, the provider's id; pending becomes created

Revision ID: departments_0006
Revises: departments_0005
Create Date: 2026-12-12 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'departments_0006'
down_revision: str | None = 'departments_0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_departments_deliveries_due')
        batch_op.drop_index('ix_departments_deliveries_case')
        batch_op.alter_column('unit_id', new_column_name='destination', existing_type=sa.String(length=64),
                              type_=sa.String(length=320), existing_nullable=False)
        batch_op.alter_column('event_type', new_column_name='kind', existing_type=sa.String(length=64),
                              existing_nullable=False)
        batch_op.alter_column('last_error', new_column_name='reason', existing_type=sa.Text(), existing_nullable=True)
        batch_op.alter_column('state', existing_type=sa.String(length=16), type_=sa.String(length=24),
                              existing_nullable=False)
        batch_op.alter_column('case_id', existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column('channel', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('sequence', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('provider_ref', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('ref', sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE departments_deliveries SET channel = 'webhook', sequence = destination || '/' || case_id, "
        "state = CASE state WHEN 'pending' THEN 'created' ELSE state END"
    )
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.alter_column('channel', existing_type=sa.String(length=16), nullable=False)
        batch_op.create_index('ix_departments_deliveries_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_departments_deliveries_sequence', ['sequence', 'id'], unique=False)
        batch_op.create_index('ix_departments_deliveries_case', ['case_id'], unique=False)
        batch_op.create_index('ix_departments_deliveries_provider_ref', ['provider_ref'], unique=False)


def downgrade() -> None:
    op.execute(
        "UPDATE departments_deliveries SET state = CASE WHEN state IN ('created', 'sending', 'temporary-failure') "
        "THEN 'pending' WHEN state IN ('dead', 'permanent-failure') THEN 'dead' ELSE state END"
    )
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_departments_deliveries_provider_ref')
        batch_op.drop_index('ix_departments_deliveries_case')
        batch_op.drop_index('ix_departments_deliveries_sequence')
        batch_op.drop_index('ix_departments_deliveries_due')
        batch_op.drop_column('ref')
        batch_op.drop_column('provider_ref')
        batch_op.drop_column('sequence')
        batch_op.drop_column('channel')
        batch_op.alter_column('case_id', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('state', existing_type=sa.String(length=24), type_=sa.String(length=16),
                              existing_nullable=False)
        batch_op.alter_column('reason', new_column_name='last_error', existing_type=sa.Text(), existing_nullable=True)
        batch_op.alter_column('kind', new_column_name='event_type', existing_type=sa.String(length=64),
                              existing_nullable=False)
        batch_op.alter_column('destination', new_column_name='unit_id', existing_type=sa.String(length=320),
                              type_=sa.String(length=64), existing_nullable=False)
    with op.batch_alter_table('departments_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_departments_deliveries_due', ['unit_id', 'state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_departments_deliveries_case', ['case_id', 'unit_id', 'state'], unique=False)
