"""Intake's event handlers: the consumer applies the lifecycle events of the cases stream to
the resident's view of a case (case_views, timeline), a batch of events at a time. What HTTP
calls do is in usecases.py."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain import ViewChange, view_change
from intake.tables import case_views, revoked_staff, timeline
from services.district.events import (
    CaseAssigned,
    CaseCancelRefused,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseNoted,
    CaseReopened,
    CaseResolved,
    CaseWhistled,
    Event,
    StaffRevoked,
)
from services.messaging.consumer import Handler
from services.messaging.envelope import Envelope
from services.messaging.transaction import Tx

# What lifecycle events change in a case view: `view_change`'s columns, the status and the time.
CHANGING = (
    "status",
    "tier",
    "unit_id",
    "unit_name",
    "response_due",
    "resolution_due",
    "satisfaction_answered_at",
    "cancel_requested_at",
    "resolved_at",
    "resolved_unit_id",
    "result_note",
    "closed_at",
    "satisfaction",
    "updated_at",
)
SAVE_VIEW = update(case_views).where(case_views.c.case_id == bindparam("view_id"))


@dataclass
class ViewBatch:
    """The case views and timeline entries of one batch of events, changed in memory and
    written by `write` before commit (see `Tx.pending`): one query reads and locks the
    batch's views, two multi-row statements write them, with the result the events would
    have had one by one."""

    session: AsyncSession
    views: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: no such view
    changed: set[str] = field(default_factory=set)
    timeline_rows: list[dict[str, Any]] = field(default_factory=list)

    async def load(self, case_ids: Sequence[str]) -> None:
        """The views of these cases not loaded yet, locked in case order (the order intake's
        writer locks the views a duplicate joins, so the two never deadlock)."""
        missing = sorted(c for c in case_ids if c not in self.views)
        if not missing:
            return
        columns = [case_views.c[name] for name in CHANGING]
        rows = await self.session.execute(
            select(case_views.c.case_id, *columns)
            .where(case_views.c.case_id.in_(missing))
            .order_by(case_views.c.case_id)
            .with_for_update()
        )
        self.views.update(dict.fromkeys(missing))
        self.views.update({r.case_id: {name: r._mapping[name] for name in CHANGING} for r in rows})

    def apply(self, case_id: str, change: ViewChange, at: datetime) -> None:
        view = self.views[case_id]
        if view is not None:
            view.update(change.columns, **dict.fromkeys(change.stamped, at), updated_at=at)
            if change.status is not None:
                view["status"] = change.status.value
            self.changed.add(case_id)
        if change.timeline_type:
            self.timeline_rows.append(
                {"case_id": case_id, "at": at, "type": change.timeline_type, "details": change.details}
            )

    async def write(self) -> None:
        if self.changed:
            saved = [{"view_id": c, **self.views[c]} for c in sorted(self.changed)]  # type: ignore[dict-item]
            await self.session.execute(SAVE_VIEW, saved)
        if self.timeline_rows:
            await self.session.execute(timeline.insert(), self.timeline_rows)


def view_batch(tx: Tx) -> ViewBatch:
    return tx.pending(ViewBatch, partial(ViewBatch, tx.session), ViewBatch.write)


async def lock_views(tx: Tx, case_ids: list[str]) -> None:
    """The consumer's lock: a batch's case views, read and locked in case order."""
    await view_batch(tx).load(case_ids)


async def on_lifecycle(tx: Tx, envelope: Envelope, event: Event) -> None:
    """A lifecycle event as the resident sees it: public facts in the view and the timeline."""
    change = view_change(event)
    if change is None:
        return
    views = view_batch(tx)
    await views.load([event.case_id])
    views.apply(event.case_id, change, envelope.time)


async def on_staff_revoked(tx: Tx, envelope: Envelope, event: StaffRevoked) -> None:
    """Remember the revoked account (once: a redelivery changes nothing)."""
    known = await tx.session.scalar(select(revoked_staff.c.staff_id).where(revoked_staff.c.staff_id == event.staff_id))
    if known is None:
        await tx.session.execute(revoked_staff.insert().values(staff_id=event.staff_id, revoked_at=envelope.time))


def handlers() -> dict[type[Event], Handler]:
    return {
        StaffRevoked: on_staff_revoked,
        CaseAssigned: on_lifecycle,
        CaseClaimed: on_lifecycle,
        CaseResolved: on_lifecycle,
        CaseClosed: on_lifecycle,
        CaseReopened: on_lifecycle,
        CaseEscalated: on_lifecycle,
        CaseWhistled: on_lifecycle,
        CaseNoted: on_lifecycle,
        CaseCancelRefused: on_lifecycle,
    }
