"""intake: the timeline by case and step, for the status of a step in Open311's request updates
(the latest step of its case up to it that sets one: one index lookup, not a replay of the case)

Revision ID: intake_0008
Revises: intake_0007
Create Date: 2026-12-07 21:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'intake_0008'
down_revision: str | None = 'intake_0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_intake_timeline_case_step', 'intake_timeline', ['case_id', 'id'])
    op.drop_index('ix_intake_timeline_case_id', table_name='intake_timeline')


def downgrade() -> None:
    op.create_index('ix_intake_timeline_case_id', 'intake_timeline', ['case_id'])
    op.drop_index('ix_intake_timeline_case_step', table_name='intake_timeline')
