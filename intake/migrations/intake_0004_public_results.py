"""intake case views: the latest resolution (when, by which unit, its note), the closing time and
the satisfaction outcome, for the public results feed (公示); filled in from the timeline. The
timeline by time, for Open311's servicerequestupdates

Revision ID: intake_0004
Revises: intake_0003
Create Date: 2026-12-01 17:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'intake_0004'
down_revision: str | None = 'intake_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLOSED_OUTCOME = {'satisfied': 'satisfied', 'no_answer': 'no_answer'}


def upgrade() -> None:
    with op.batch_alter_table('intake_case_views', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolved_unit_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('result_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('satisfaction', sa.String(length=16), nullable=True))
        batch_op.create_index('ix_intake_case_views_resolved_at', ['resolved_at', 'case_id'], unique=False)
    with op.batch_alter_table('intake_timeline', schema=None) as batch_op:
        batch_op.create_index('ix_intake_timeline_at', ['at'], unique=False)
    _backfill()


def _backfill() -> None:
    """Replays the timeline of the cases already resolved or closed, as the consumer now would."""
    views = sa.table(
        'intake_case_views', sa.column('case_id', sa.String), sa.column('status', sa.String),
        sa.column('resolved_at', sa.DateTime(timezone=True)), sa.column('resolved_unit_id', sa.String),
        sa.column('result_note', sa.Text), sa.column('closed_at', sa.DateTime(timezone=True)),
        sa.column('satisfaction', sa.String),
    )
    timeline = sa.table(
        'intake_timeline', sa.column('id', sa.BigInteger), sa.column('case_id', sa.String),
        sa.column('at', sa.DateTime(timezone=True)), sa.column('type', sa.String), sa.column('details', sa.JSON),
    )
    bind = op.get_bind()
    done = sa.select(views.c.case_id).where(views.c.status.in_(('resolved', 'closed')))
    steps = bind.execute(
        sa.select(timeline.c.case_id, timeline.c.at, timeline.c.type, timeline.c.details)
        .where(timeline.c.case_id.in_(done), timeline.c.type.in_(('resolved', 'closed', 'reopened', 'satisfaction')))
        .order_by(timeline.c.case_id, timeline.c.id)
    )
    found: dict[str, dict] = {}
    for case_id, at, kind, details in steps:
        view = found.setdefault(case_id, {})
        if kind == 'resolved':
            view.update(resolved_at=at, resolved_unit_id=details.get('unit_id'), result_note=details.get('result'),
                        satisfaction=None)
        elif kind == 'reopened':
            view.update(resolved_at=None, resolved_unit_id=None, result_note=None, satisfaction=None)
        elif kind == 'satisfaction':
            view['satisfaction'] = 'satisfied' if details.get('satisfied') else 'unsatisfied'
        elif kind == 'closed':
            view['closed_at'] = at
            if outcome := CLOSED_OUTCOME.get(details.get('reason')):
                view['satisfaction'] = outcome
    for case_id, values in found.items():
        bind.execute(sa.update(views).where(views.c.case_id == case_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table('intake_timeline', schema=None) as batch_op:
        batch_op.drop_index('ix_intake_timeline_at')
    with op.batch_alter_table('intake_case_views', schema=None) as batch_op:
        batch_op.drop_index('ix_intake_case_views_resolved_at')
        batch_op.drop_column('satisfaction')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('result_note')
        batch_op.drop_column('resolved_unit_id')
        batch_op.drop_column('resolved_at')
