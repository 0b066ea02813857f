"""dispatcher: partial indexes for the reads ops wait on at a year's size. The cases still open
and the cases by when they last changed (a window's cases: the figures read a day's without a
scan of the year's); the assignments still open by their limits (the board's and the breach
list's "late now": a few thousand of millions); the breaches by time (the breach list and the
board's breached cases; a third of the history, most of them supervised cases' alerts); and the
history by case and time, not by case alone (a window's events of the chosen cases, whose rows
lie far apart on disk since the history is written in time order). Built
on a year of a big district (1,000,000 cases, 23.5 million history rows) in about a minute,
during which the tables take no writes.

Revision ID: dispatcher_0006
Revises: dispatcher_0005
Create Date: 2026-12-07 21:00:00
"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = 'dispatcher_0006'
down_revision: str | None = 'dispatcher_0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def only(condition: str) -> dict[str, Any]:
    return {'postgresql_where': sa.text(condition), 'sqlite_where': sa.text(condition)}


def upgrade() -> None:
    op.create_index('ix_dispatcher_cases_open', 'dispatcher_cases', ['case_id'], **only('NOT closed'))
    op.create_index('ix_dispatcher_cases_updated_at', 'dispatcher_cases', ['updated_at'])
    op.create_index(
        'ix_dispatcher_assignments_response_open', 'dispatcher_assignments', ['response_due'], **only("status = 'open'")
    )
    op.create_index(
        'ix_dispatcher_assignments_resolution_open',
        'dispatcher_assignments',
        ['resolution_due'],
        **only("status IN ('open', 'claimed')"),
    )
    op.create_index(
        'ix_dispatcher_history_breaches', 'dispatcher_history', ['at', 'id'], **only("type = 'case.sla_breached'")
    )
    op.create_index('ix_dispatcher_history_case_at', 'dispatcher_history', ['case_id', 'at'])
    op.drop_index('ix_dispatcher_history_case_id', table_name='dispatcher_history')


def downgrade() -> None:
    op.create_index('ix_dispatcher_history_case_id', 'dispatcher_history', ['case_id'])
    op.drop_index('ix_dispatcher_history_case_at', table_name='dispatcher_history')
    op.drop_index('ix_dispatcher_history_breaches', table_name='dispatcher_history')
    op.drop_index('ix_dispatcher_assignments_resolution_open', table_name='dispatcher_assignments')
    op.drop_index('ix_dispatcher_assignments_response_open', table_name='dispatcher_assignments')
    op.drop_index('ix_dispatcher_cases_updated_at', table_name='dispatcher_cases')
    op.drop_index('ix_dispatcher_cases_open', table_name='dispatcher_cases')
