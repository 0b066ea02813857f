import hashlib

from sqlalchemy import select, update

from intake.domain import (
    CaseConflict,
    CaseStatus,
    view_change,
)
from intake.tables import case_views, timeline
from services.events import (
    CaseAssigned,
    CaseCancelRefused,
    CaseCancelRequested,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CaseSatisfactionAnswered,
    CaseWhistled,
    Envelope,
    Event,
)
from services.messaging import Handler, Store, Tx


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
        await tx.session.execute(
            update(case_views).where(case_views.c.case_id == case_id).values(satisfaction_answered_at=now)
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


async def lock_views(tx: Tx, case_ids: list[str]) -> None:
    """The consumer's lock: a batch's case views, in case order."""
    await tx.session.execute(
        select(case_views.c.case_id)
        .where(case_views.c.case_id.in_(case_ids))
        .order_by(case_views.c.case_id)
        .with_for_update()
    )


async def on_lifecycle(tx: Tx, envelope: Envelope, event: Event) -> None:
    change = view_change(event)
    if change is None:
        return
    values = dict(change.columns)
    if change.status is not None:
        values["status"] = change.status.value
    await tx.session.execute(
        update(case_views).where(case_views.c.case_id == event.case_id).values(updated_at=envelope.time, **values)
    )
    if change.timeline_type:
        await tx.session.execute(
            timeline.insert().values(
                case_id=event.case_id, at=envelope.time, type=change.timeline_type, details=change.details
            )
        )


HANDLERS: dict[type[Event], Handler] = {
    e: on_lifecycle
    for e in (
        CaseAssigned,
        CaseClaimed,
        CaseResolved,
        CaseClosed,
        CaseReopened,
        CaseEscalated,
        CaseWhistled,
        CaseCancelRefused,
    )
}
