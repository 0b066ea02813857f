"""departments staff side: staff accounts, notes and evidence, call-back contacts, who claimed
and resolved a ticket, why it arrived, and the clock the queue sorts by

Revision ID: departments_0004
Revises: departments_0003
Create Date: 2026-12-01 16:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'departments_0004'
down_revision: str | None = 'departments_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('departments_staff',
    sa.Column('staff_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('staff_id'),
    sa.UniqueConstraint('unit_id', 'name', name='uq_departments_staff_unit_name')
    )
    op.create_table('departments_notes',
    sa.Column('note_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('ticket_id', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('by_id', sa.String(length=64), nullable=False),
    sa.Column('by_name', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('note_id')
    )
    with op.batch_alter_table('departments_notes', schema=None) as batch_op:
        batch_op.create_index('ix_departments_notes_ticket', ['ticket_id'], unique=False)
        batch_op.create_index('ix_departments_notes_case', ['case_id'], unique=False)
    op.create_table('departments_contacts',
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('contact', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('case_id')
    )
    with op.batch_alter_table('departments_tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('resolved_by_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('arrived_because', sa.Text(), nullable=True))
    op.execute(
        "UPDATE departments_tickets SET due_at = CASE WHEN status = 'open' THEN response_due ELSE resolution_due END"
    )
    with op.batch_alter_table('departments_tickets', schema=None) as batch_op:
        batch_op.alter_column('due_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index('ix_departments_tickets_unit_due', ['unit_id', 'due_at', 'ticket_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('departments_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_departments_tickets_unit_due')
        batch_op.drop_column('arrived_because')
        batch_op.drop_column('due_at')
        batch_op.drop_column('resolved_by_id')
        batch_op.drop_column('resolved_by')
        batch_op.drop_column('claimed_by_id')
    op.drop_table('departments_contacts')
    with op.batch_alter_table('departments_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_departments_notes_case')
        batch_op.drop_index('ix_departments_notes_ticket')
    op.drop_table('departments_notes')
    op.drop_table('departments_staff')
