"""The dispatcher's handlers: each loads a case (locked), asks the pure `Router` what happens,
and saves the new case, its timers, its history and the events in the same transaction."""

import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.domain import (
    Assignment,
    AssignmentStatus,
    Case,
    Decision,
    InvalidTransition,
    Router,
    TimerKind,
)
from dispatcher.tables import assignments, cases, history
from dispatcher.tables import timers as timer_rows
from services.events import (
    CaseCancelRequested,
    CaseReported,
    CaseSatisfactionAnswered,
    Envelope,
    Event,
    Priority,
    Role,
    TicketClaimed,
    TicketEscalated,
    TicketResolved,
    TicketReturned,
    TicketWhistled,
    Tier,
)
from services.messaging import Handler, Tx, error_text
from services.retry import transient


def new_id() -> str:
    return str(uuid.uuid4())


async def load_case(session: AsyncSession, case_id: str, *, lock: bool = True) -> Case | None:
    """The case and its assignments; `lock` takes the case row lock that serialises every change
    to one case (events, API calls and timers alike) across dispatcher replicas."""
    query = select(cases).where(cases.c.case_id == case_id)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        return None
    rows = await session.execute(
        select(assignments).where(assignments.c.case_id == case_id).order_by(assignments.c.seq)
    )
    return Case(
        case_id=row.case_id,
        category=row.category,
        description=row.description,
        grid_id=row.grid_id,
        priority=Priority(row.priority),
        returns=row.returns,
        supervised=row.supervised,
        resolved=row.resolved,
        closed=row.closed,
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at,
        details=row.details,
        assignments=tuple(_assignment(r) for r in rows),
    )


async def lock_cases(tx: Tx, case_ids: list[str]) -> None:
    """The consumer's lock: a batch's cases, in case order, as the timer worker locks them."""
    await tx.session.execute(
        select(cases.c.case_id).where(cases.c.case_id.in_(case_ids)).order_by(cases.c.case_id).with_for_update()
    )


def _assignment(r: Any) -> Assignment:
    return Assignment(
        assignment_id=r.assignment_id,
        unit_id=r.unit_id,
        tier=Tier(r.tier),
        role=Role(r.role),
        status=AssignmentStatus(r.status),
        assigned_at=r.assigned_at,
        response_due=r.response_due,
        resolution_due=r.resolution_due,
        response_warn_at=r.response_warn_at,
        resolution_warn_at=r.resolution_warn_at,
        response_warned=r.response_warned,
        resolution_warned=r.resolution_warned,
        response_breached=r.response_breached,
        resolution_breached=r.resolution_breached,
        next_alert_at=r.next_alert_at,
        alerts=r.alerts,
        claimed_at=r.claimed_at,
        resolved_at=r.resolved_at,
        end_reason=r.end_reason,
        note=r.note,
    )


async def save(tx: Tx, router: Router, before: Case | None, decision: Decision) -> None:
    """Persist the decision: case row, assignments, timers, history and outgoing events."""
    case, now = decision.case, tx.store.clock.now()
    lead = case.lead
    values = {
        "status": case.status.value,
        "tier": lead.tier.value,
        "unit_id": lead.unit_id,
        "priority": case.priority.value,
        "returns": case.returns,
        "supervised": case.supervised,
        "resolved": case.resolved,
        "closed": case.closed,
        "resolved_by": case.resolved_by,
        "resolved_at": case.resolved_at,
        "updated_at": now,
    }
    if before is None:
        grid = router.j.grid(case.grid_id)
        community = router.j.community(grid.community_id)
        await tx.session.execute(
            cases.insert().values(
                case_id=case.case_id,
                category=case.category,
                description=case.description,
                details=case.details,
                grid_id=case.grid_id,
                community_id=community.id,
                street_id=community.street_id,
                created_at=now,
                **values,
            )
        )
    else:
        await tx.session.execute(update(cases).where(cases.c.case_id == case.case_id).values(**values))

    known = {a.assignment_id: a for a in (before.assignments if before else ())}
    for seq, a in enumerate(case.assignments):
        row = {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(a).items()}
        if a.assignment_id not in known:
            await tx.session.execute(assignments.insert().values(case_id=case.case_id, seq=seq, **row))
        elif known[a.assignment_id] != a:
            await tx.session.execute(
                update(assignments).where(assignments.c.assignment_id == a.assignment_id).values(**row)
            )
    await _sync_timers(tx.session, router, case, new=before is None)
    if decision.events:
        await tx.session.execute(
            history.insert(),
            [
                {
                    "case_id": case.case_id,
                    "at": now,
                    "type": e.type.removeprefix("gridcall."),
                    "details": e.model_dump(mode="json", exclude={"case_id"}),
                }
                for e in decision.events
            ],
        )
    for e in decision.events:
        tx.emit(e)


async def _sync_timers(session: AsyncSession, router: Router, case: Case, *, new: bool) -> None:
    """Make the case's timer rows equal to what its state needs: add, move, cancel."""
    wanted = {(t.assignment_id, t.kind.value): t.due_at for t in router.timers(case)}
    have = {}
    if not new:
        rows = await session.execute(
            select(timer_rows.c.id, timer_rows.c.assignment_id, timer_rows.c.kind, timer_rows.c.due_at).where(
                timer_rows.c.case_id == case.case_id
            )
        )
        have = {(r.assignment_id, r.kind): r for r in rows}
    gone = [r.id for key, r in have.items() if key not in wanted]
    if gone:
        await session.execute(delete(timer_rows).where(timer_rows.c.id.in_(gone)))
    added = [
        {"case_id": case.case_id, "assignment_id": a, "kind": k, "due_at": due}
        for (a, k), due in wanted.items()
        if (a, k) not in have
    ]
    if added:
        await session.execute(timer_rows.insert(), added)
    for key, due in wanted.items():
        if key in have and have[key].due_at != due:
            await session.execute(
                update(timer_rows).where(timer_rows.c.id == have[key].id).values(due_at=due, lease_until=None)
            )


def handlers(router: Router) -> dict[type[Event], Handler]:
    async def on_reported(tx: Tx, envelope: Envelope, event: CaseReported) -> None:
        if await load_case(tx.session, event.case_id) is not None:
            return
        await save(tx, router, None, router.report(event, tx.store.clock.now(), new_id))

    def on_case(step: Callable[[Case, Any, Tx], Decision]) -> Handler:
        async def handle(tx: Tx, envelope: Envelope, event: Any) -> None:
            case = await load_case(tx.session, event.case_id)
            if case is None:
                raise InvalidTransition(f"no case {event.case_id} in the dispatcher")
            await save(tx, router, case, step(case, event, tx))

        return handle

    def now(tx: Tx) -> Any:
        return tx.store.clock.now()

    return {
        CaseReported: on_reported,
        TicketClaimed: on_case(lambda c, e, tx: router.claim(c, e, now(tx))),
        TicketResolved: on_case(lambda c, e, tx: router.resolve(c, e, now(tx))),
        TicketEscalated: on_case(lambda c, e, tx: router.escalate(c, e, now(tx), new_id)),
        TicketReturned: on_case(lambda c, e, tx: router.return_(c, e, now(tx), new_id)),
        TicketWhistled: on_case(lambda c, e, tx: router.whistle(c, e, now(tx), new_id)),
        CaseSatisfactionAnswered: on_case(lambda c, e, tx: router.satisfaction(c, e, now(tx), new_id)),
        CaseCancelRequested: on_case(lambda c, e, tx: router.cancel(c, e)),
    }


async def fire_timers(tx: Tx, router: Router, timer_ids: list[int], owner: str) -> tuple[int, dict[int, str]]:
    """Fire leased timers, in one transaction, each effect exactly once.

    Every case of the batch is locked first, in case-id order: replicas lock in the same
    order, so they never deadlock, and the case lock serialises timers with every other
    change to the case. Holding a case, we fire all of its due timers in due order, whoever
    leased them, so one case's timers never fire out of order across replicas; a replica
    that leased one of them finds the row gone and skips it. Each timer row is deleted in
    the same transaction as its effect. A timer whose handling fails is rolled back alone
    (a savepoint) and returned with its error; a transient failure (a deadlock, a lock
    timeout, a dropped connection) is no failure of the timer and rolls back the batch, which
    the worker takes again at once."""
    leased = (
        await tx.session.execute(
            select(timer_rows.c.case_id, timer_rows.c.due_at)
            .where(timer_rows.c.id.in_(timer_ids), timer_rows.c.lease_owner == owner)
            .order_by(timer_rows.c.due_at, timer_rows.c.id)
        )
    ).all()
    await tx.session.execute(
        select(cases.c.case_id)
        .where(cases.c.case_id.in_({r.case_id for r in leased}))
        .order_by(cases.c.case_id)
        .with_for_update()
    )
    now = tx.store.clock.now()
    fired = 0
    failed: dict[int, str] = {}
    for case_id, due_at in leased:
        # this timer, and before it every earlier one of its case (some other replica's lease)
        due = (
            await tx.session.execute(
                select(timer_rows.c.id, timer_rows.c.assignment_id, timer_rows.c.kind)
                .where(timer_rows.c.case_id == case_id, timer_rows.c.due_at <= min(due_at, now))
                .order_by(timer_rows.c.due_at, timer_rows.c.id)
            )
        ).all()
        for row in due:
            emitted = len(tx.emitted)
            try:
                async with tx.session.begin_nested():
                    gone = await tx.session.execute(
                        delete(timer_rows).where(timer_rows.c.id == row.id).returning(timer_rows.c.id)
                    )
                    if gone.first() is None:
                        continue  # an earlier firing of this case cancelled it
                    case = await load_case(tx.session, case_id, lock=False)
                    if case is not None:
                        decision = router.fire(case, row.assignment_id, TimerKind(row.kind), now, new_id)
                        await save(tx, router, case, decision)
                        fired += 1
            except Exception as exc:
                if transient(exc):
                    raise  # a deadlock or a dropped connection: the whole batch is tried again
                del tx.emitted[emitted:]
                failed[row.id] = error_text(exc)
    return fired, failed
