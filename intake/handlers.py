import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain import CaseConflict, CaseStatus, Satisfaction, ViewChange, view_change
from intake.tables import case_views, timeline
from services.district.events import (
    CaseAssigned,
    CaseCancelRefused,
    CaseCancelRequested,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseNoted,
    CaseReopened,
    CaseResolved,
    CaseSatisfactionAnswered,
    CaseWhistled,
    Envelope,
    Event,
)
from services.messaging.consumer import Handler
from services.messaging.transaction import Store, Tx


def body_hash(canonical_json: str) -> str:
    return hashlib.sha256(canonical_json.encode()).hexdigest()


async def answer_satisfaction(store: Store, case_id: str, satisfied: bool, comment: str) -> None:
    """回访: the resident's answer, once per resolution; it closes or reopens the case."""
    async with store.transaction() as tx:
        view = (
            await tx.session.execute(select(case_views).where(case_views.c.case_id == case_id).with_for_update())
        ).one()
        if view.status != CaseStatus.RESOLVED.value:
            raise CaseConflict(f"the case is {view.status}; the satisfaction visit opens once it is resolved")
        if view.satisfaction_answered_at is not None:
            raise CaseConflict("this resolution has been answered already")
        now = store.clock.now()
        outcome = Satisfaction.SATISFIED if satisfied else Satisfaction.UNSATISFIED
        await tx.session.execute(
            update(case_views)
            .where(case_views.c.case_id == case_id)
            .values(satisfaction_answered_at=now, satisfaction=outcome.value)
        )
        await tx.session.execute(
            timeline.insert().values(case_id=case_id, at=now, type="satisfaction", details={"satisfied": satisfied})
        )
        tx.emit(CaseSatisfactionAnswered(case_id=case_id, satisfied=satisfied, comment=comment))


async def request_cancel(store: Store, case_id: str, reason: str) -> None:
    """Withdraw a case nobody has claimed. The dispatcher has the last word: if a unit claimed
    it meanwhile, the cancellation is refused and the timeline says so."""
    async with store.transaction() as tx:
        view = (
            await tx.session.execute(select(case_views).where(case_views.c.case_id == case_id).with_for_update())
        ).one()
        if view.status not in (CaseStatus.RECEIVED.value, CaseStatus.ASSIGNED.value):
            raise CaseConflict(f"the case is {view.status}; only a case nobody has claimed can be withdrawn")
        if view.cancel_requested_at is not None:
            raise CaseConflict("the case is being withdrawn already")
        now = store.clock.now()
        await tx.session.execute(
            update(case_views).where(case_views.c.case_id == case_id).values(cancel_requested_at=now)
        )
        await tx.session.execute(timeline.insert().values(case_id=case_id, at=now, type="cancel_requested", details={}))
        tx.emit(CaseCancelRequested(case_id=case_id, reason=reason))


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


def handlers() -> dict[type[Event], Handler]:
    return {
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
