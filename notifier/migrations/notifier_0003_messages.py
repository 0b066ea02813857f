"""notifier messages that reach people: what it keeps of cases and their followers, each
notification's language and subject under a derived key, deliveries in the kernel's one shape
(services/delivery/tables.py), units' digests. Notifications written before keep their text
(under the key legacy-<id>); their old log and webhook deliveries are not carried over.

Revision ID: notifier_0003
Revises: notifier_0002
Create Date: 2026-12-06 21:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'notifier_0003'
down_revision: str | None = 'notifier_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('notifier_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_notifier_deliveries_due')
    op.drop_table('notifier_deliveries')

    with op.batch_alter_table('notifier_notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('subject', sa.Text(), nullable=True))
        batch_op.alter_column('case_id', existing_type=sa.String(length=64), nullable=True)
    op.execute(
        "UPDATE notifier_notifications SET key = 'legacy-' || CAST(id AS VARCHAR(20)), language = 'en', subject = kind"
    )
    with op.batch_alter_table('notifier_notifications', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('language', existing_type=sa.String(length=8), nullable=False)
        batch_op.alter_column('subject', existing_type=sa.Text(), nullable=False)
        batch_op.create_unique_constraint('uq_notifier_notifications_key', ['key'])

    op.create_table('notifier_cases',
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=True),
    sa.Column('grid_id', sa.String(length=64), nullable=True),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('lead_unit_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('case_id')
    )
    op.create_table('notifier_followers',
    sa.Column('report_id', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('unsubscribed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('report_id')
    )
    with op.batch_alter_table('notifier_followers', schema=None) as batch_op:
        batch_op.create_index('ix_notifier_followers_case_id', ['case_id'], unique=False)
    op.create_table('notifier_deliveries',
    sa.Column('id', _id, autoincrement=True, nullable=False),
    sa.Column('msg_id', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.String(length=320), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=True),
    sa.Column('sequence', sa.String(length=200), nullable=True),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('provider_ref', sa.String(length=128), nullable=True),
    sa.Column('ref', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('msg_id', name='uq_notifier_deliveries_msg_id')
    )
    with op.batch_alter_table('notifier_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_notifier_deliveries_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_notifier_deliveries_sequence', ['sequence', 'id'], unique=False)
        batch_op.create_index('ix_notifier_deliveries_case', ['case_id'], unique=False)
        batch_op.create_index('ix_notifier_deliveries_provider_ref', ['provider_ref'], unique=False)
    op.create_table('notifier_digest_items',
    sa.Column('id', _id, autoincrement=True, nullable=False),
    sa.Column('unit_id', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('digest_key', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key', name='uq_notifier_digest_items_key')
    )
    with op.batch_alter_table('notifier_digest_items', schema=None) as batch_op:
        batch_op.create_index('ix_notifier_digest_items_waiting', ['unit_id', 'digest_key'], unique=False)


def downgrade() -> None:
    op.drop_table('notifier_digest_items')
    op.drop_table('notifier_deliveries')
    op.drop_table('notifier_followers')
    op.drop_table('notifier_cases')
    op.execute("DELETE FROM notifier_notifications WHERE case_id IS NULL")
    with op.batch_alter_table('notifier_notifications', schema=None) as batch_op:
        batch_op.drop_constraint('uq_notifier_notifications_key', type_='unique')
        batch_op.drop_column('subject')
        batch_op.drop_column('language')
        batch_op.drop_column('key')
        batch_op.alter_column('case_id', existing_type=sa.String(length=64), nullable=False)
    op.create_table('notifier_deliveries',
    sa.Column('id', _id, autoincrement=True, nullable=False),
    sa.Column('notification_id', _id, nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['notification_id'], ['notifier_notifications.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notifier_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_notifier_deliveries_due', ['status', 'next_attempt_at'], unique=False)
