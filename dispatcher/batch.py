"""The unit of work of one dispatcher transaction: the cases a batch of events or timers
touches, loaded once (locked), changed by each event or timer in turn through the pure
`Router`, and saved once before commit as the difference between what was loaded and what
is now. A case touched by several events of a batch is read once and written once; its
events and history keep their order.

A batch lives in its transaction (`Tx.pending`): when the kernel rolls a batch back and takes
its records again one per transaction, each attempt starts from a fresh load.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from dispatcher import repository
from dispatcher.domain import Case, Decision, NewId, Router, Timer
from dispatcher.repository import Changes, Loaded, StoredTimer, TimerKey
from services.district.events import Envelope
from services.messaging.transaction import Tx


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
        loaded = await repository.load(self.tx.session, missing)
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
        await repository.save(self.tx.session, self.changes(), self.tx.store.clock.now(), self.router.j)


async def batch(tx: Tx, router: Router, case_ids: Collection[str]) -> Batch:
    """The transaction's batch, with these cases loaded: made on first use, saved by the
    transaction just before its commit."""
    cases = tx.pending(Batch, partial(Batch, tx, router), Batch.save)
    await cases.load(case_ids)
    return cases
