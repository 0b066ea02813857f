"""The dispatcher's state in its tables, read and written a batch of cases at a time.

`Batch` is the unit of work of one dispatcher transaction: the cases a batch of events or
timers touches, loaded once (locked), changed by each event or timer in turn through the pure
`Router`, and saved once before commit as the difference between what was loaded and what is
now. A case touched by several events of a batch is read once and written once; its events
and history keep their order. A batch lives in its transaction (`Tx.pending`): when the
kernel rolls a batch back and takes its records again one per transaction, each attempt
starts from a fresh load.

`load` reads the cases of a batch, their assignments and their timers in three queries for
all case ids at once, taking the case rows' locks in case-id order (the order every locker
uses, so consumers and timer workers never deadlock). `save` writes what a batch changed as
a handful of set-based statements, whatever the number of cases (services/storage/bulk.py): one
insert per table for new rows, one update per table for changed rows, one delete for the
timers no longer needed.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import partial
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.domain import Assignment, AssignmentStatus, Case, Decision, NewId, Router, Timer, TimerKind
from dispatcher.tables import assignments, cases, history, timers
from services.district.events import Location, Priority, Role, Tier
from services.district.jurisdiction import Jurisdiction
from services.messaging.envelope import Envelope
from services.messaging.transaction import Tx
from services.storage.bulk import among, insert_rows, update_rows

TimerKey = tuple[str, TimerKind]  # (assignment id, kind): one row of each per case at most


@dataclass(frozen=True)
class StoredTimer:
    id: int
    case_id: str
    assignment_id: str
    kind: TimerKind
    due_at: datetime
    lease_owner: str | None

    @property
    def key(self) -> TimerKey:
        return (self.assignment_id, self.kind)


@dataclass
class Loaded:
    cases: dict[str, Case] = field(default_factory=dict)
    timers: list[StoredTimer] = field(default_factory=list)


@dataclass
class Changes:
    """What a batch wrote, as rows: new and changed cases and assignments, timers added, moved
    and gone, and the history of every event recorded, in the order recorded."""

    new_cases: list[Case] = field(default_factory=list)
    changed_cases: list[Case] = field(default_factory=list)
    new_assignments: list[tuple[str, int, Assignment]] = field(default_factory=list)  # case id, seq
    changed_assignments: list[Assignment] = field(default_factory=list)
    timers_added: list[tuple[str, TimerKey, datetime]] = field(default_factory=list)  # case id
    timers_moved: list[tuple[int, datetime]] = field(default_factory=list)
    timers_gone: list[int] = field(default_factory=list)
    history: list[tuple[str, Envelope]] = field(default_factory=list)  # case id, each event as emitted


async def load(session: AsyncSession, case_ids: Collection[str], *, lock: bool = True) -> Loaded:
    """The cases among `case_ids` that exist, with their assignments in order, and their timers;
    `lock` takes the case rows' locks, which serialise every change to a case (events, timers,
    API calls) across replicas."""
    if not case_ids:
        return Loaded()
    query = select(cases).where(among(session, cases.c.case_id, sorted(case_ids))).order_by(cases.c.case_id)
    case_rows = (await session.execute(query.with_for_update() if lock else query)).all()
    if not case_rows:
        return Loaded()
    found = [r.case_id for r in case_rows]
    given: dict[str, list[Assignment]] = {case_id: [] for case_id in found}
    for r in await session.execute(
        select(assignments)
        .where(among(session, assignments.c.case_id, found))
        .order_by(assignments.c.case_id, assignments.c.seq)
    ):
        given[r.case_id].append(_assignment(r))
    timer_rows = await session.execute(
        select(timers.c.id, timers.c.case_id, timers.c.assignment_id, timers.c.kind, timers.c.due_at)
        .add_columns(timers.c.lease_owner)
        .where(among(session, timers.c.case_id, found))
    )
    return Loaded(
        cases={r.case_id: _case(r, given[r.case_id]) for r in case_rows},
        timers=[
            StoredTimer(t.id, t.case_id, t.assignment_id, TimerKind(t.kind), t.due_at, t.lease_owner)
            for t in timer_rows
        ],
    )


async def save(session: AsyncSession, changes: Changes, now: datetime, j: Jurisdiction) -> None:
    """Write a batch's changes: a statement per table and kind of change, none when there is
    nothing of that kind. Timers go before they are added again, as a fired supervision timer
    is (the same case, assignment and kind)."""
    await insert_rows(session, cases, [_new_case_row(c, now, j) for c in changes.new_cases])
    await update_rows(session, cases, "case_id", [_case_state(c, now) for c in changes.changed_cases])
    await insert_rows(
        session,
        assignments,
        [{"case_id": case_id, "seq": seq, **_assignment_row(a)} for case_id, seq, a in changes.new_assignments],
    )
    await update_rows(session, assignments, "assignment_id", [_assignment_row(a) for a in changes.changed_assignments])
    if changes.timers_gone:
        await session.execute(delete(timers).where(among(session, timers.c.id, changes.timers_gone)))
    await update_rows(
        session, timers, "id", [{"id": i, "due_at": due, "lease_until": None} for i, due in changes.timers_moved]
    )
    await insert_rows(
        session,
        timers,
        [
            {"case_id": case_id, "assignment_id": a, "kind": kind.value, "due_at": due}
            for case_id, (a, kind), due in changes.timers_added
        ],
    )
    await insert_rows(session, history, list(_history_rows(changes.history, now)))


ASSIGNMENT_STATE = tuple(Assignment.__dataclass_fields__)


def _case_state(case: Case, now: datetime) -> dict[str, Any]:
    lead = case.lead
    return {
        "case_id": case.case_id,
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


def _new_case_row(case: Case, now: datetime, j: Jurisdiction) -> dict[str, Any]:
    community = j.community(j.grid(case.grid_id).community_id)
    return {
        "category": case.category,
        "description": case.description,
        "details": case.details,
        "grid_id": case.grid_id,
        "community_id": community.id,
        "street_id": community.street_id,
        "lat": case.location.lat if case.location else None,
        "lon": case.location.lon if case.location else None,
        "created_at": now,
        **_case_state(case, now),
    }


def _assignment_row(a: Assignment) -> dict[str, Any]:
    row = {f: getattr(a, f) for f in ASSIGNMENT_STATE}  # not asdict(), which deep-copies every value
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in row.items()}


def _history_rows(recorded: Iterable[tuple[str, Envelope]], now: datetime) -> Iterable[dict[str, Any]]:
    """An event's history details are its envelope's data (serialised once, as emitted),
    without the case id the row has already."""
    for case_id, e in recorded:
        details = {k: v for k, v in e.data.items() if k != "case_id"}
        yield {"case_id": case_id, "at": now, "type": e.type.removeprefix("gridcall."), "details": details}


def _case(r: Any, given: list[Assignment]) -> Case:
    return Case(
        case_id=r.case_id,
        category=r.category,
        description=r.description,
        grid_id=r.grid_id,
        priority=Priority(r.priority),
        location=Location(lat=r.lat, lon=r.lon) if r.lat is not None and r.lon is not None else None,
        returns=r.returns,
        supervised=r.supervised,
        resolved=r.resolved,
        closed=r.closed,
        resolved_by=r.resolved_by,
        resolved_at=r.resolved_at,
        details=r.details,
        assignments=tuple(given),
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
        ended_at=r.ended_at,
        note=r.note,
    )


@dataclass(frozen=True)
class _Slot:
    """A timer the case needs: its row if it has one already, and when it is due."""

    row: int | None
    due_at: datetime


class Batch:
    def __init__(self, tx: Tx, router: Router) -> None:
        self.tx = tx
        self.router = router
        self.asked: set[str] = set()
        self.loaded = Loaded()
        self.cases: dict[str, Case] = {}
        self.timers: dict[str, dict[TimerKey, _Slot]] = {}
        self.history: list[tuple[str, Envelope]] = []

    async def load(self, case_ids: Collection[str]) -> None:
        """Load (and lock) the cases not asked for yet; an id with no case is remembered as
        such, so a report finds it new without asking again."""
        missing = sorted(set(case_ids) - self.asked)
        if not missing:
            return
        self.asked.update(missing)
        loaded = await load(self.tx.session, missing)
        self.loaded.cases.update(loaded.cases)
        self.loaded.timers += loaded.timers
        self.cases.update(loaded.cases)
        for t in loaded.timers:
            self.timers.setdefault(t.case_id, {})[t.key] = _Slot(t.id, t.due_at)

    def get(self, case_id: str) -> Case | None:
        return self.cases.get(case_id)

    def put(self, decision: Decision) -> None:
        """The case as decided; its timers follow its state, its events are emitted and kept
        in its history."""
        case = decision.case
        self.cases[case.case_id] = case
        wanted = {(t.assignment_id, t.kind): t.due_at for t in self.router.timers(case)}
        had = self.timers.get(case.case_id, {})
        self.timers[case.case_id] = {
            key: _Slot(had[key].row if key in had else None, due) for key, due in wanted.items()
        }
        for e in decision.events:
            self.history.append((case.case_id, self.tx.emit(e)))

    def due(self, leased: Collection[int], owner: str, now: datetime) -> list[StoredTimer]:
        """The timers to fire for the timers `owner` leased, in due order: each leased one still
        ours, and before it every earlier timer of its case, whoever leased that one (firing a
        case's timers out of order could escalate a case before warning it)."""
        until: dict[str, datetime] = {}
        for t in self.loaded.timers:
            if t.id in leased and t.lease_owner == owner:
                at = min(t.due_at, now)
                until[t.case_id] = max(until.get(t.case_id, at), at)
        due = [t for t in self.loaded.timers if t.case_id in until and t.due_at <= until[t.case_id]]
        return sorted(due, key=lambda t: (t.due_at, t.id))

    def fire(self, timer: StoredTimer, now: datetime, new_id: NewId) -> bool:
        """Fire a loaded timer if its case still needs it as it was loaded (an earlier firing
        in this batch may have cancelled or moved it); the timer's row goes with its effect."""
        slots = self.timers.get(timer.case_id, {})
        slot = slots.get(timer.key)
        if slot is None or slot != _Slot(timer.id, timer.due_at):
            return False
        decision = self.router.fire(
            self.cases[timer.case_id], Timer(timer.assignment_id, timer.kind, timer.due_at), now, new_id
        )
        del slots[timer.key]
        self.put(decision)
        return True

    def changes(self) -> Changes:
        """The difference between the state loaded and the state now, as rows to write."""
        out = Changes()
        for case_id, case in self.cases.items():
            before = self.loaded.cases.get(case_id)
            if before is None:
                out.new_cases.append(case)
            elif before != case:
                out.changed_cases.append(case)
            known = {a.assignment_id: a for a in before.assignments} if before else {}
            for seq, a in enumerate(case.assignments):
                if a.assignment_id not in known:
                    out.new_assignments.append((case_id, seq, a))
                elif known[a.assignment_id] != a:
                    out.changed_assignments.append(a)
        kept: dict[int, datetime] = {}
        for case_id, slots in self.timers.items():
            for key, slot in slots.items():
                if slot.row is None:
                    out.timers_added.append((case_id, key, slot.due_at))
                else:
                    kept[slot.row] = slot.due_at
        for t in self.loaded.timers:
            if t.id not in kept:
                out.timers_gone.append(t.id)
            elif kept[t.id] != t.due_at:
                out.timers_moved.append((t.id, kept[t.id]))
        out.history = self.history
        return out

    async def save(self) -> None:
        await save(self.tx.session, self.changes(), self.tx.store.clock.now(), self.router.j)


async def batch(tx: Tx, router: Router, case_ids: Collection[str]) -> Batch:
    """The transaction's batch, with these cases loaded: made on first use, saved by the
    transaction just before its commit."""
    cases = tx.pending(Batch, partial(Batch, tx, router), Batch.save)
    await cases.load(case_ids)
    return cases
