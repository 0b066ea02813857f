"""What ops do with a service's deliveries: list them a page at a time, count them per state,
and re-drive the ones that failed for good. A service's ops endpoints and CLI present these in
their own words (departments/adapters/usecases.py: pending, delivered, dead)."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, func, select, update
from sqlalchemy.engine import Row

from services.delivery.tables import REDRIVABLE, State
from services.district.clock import Clock
from services.district.errors import Conflict, NotFound
from services.storage.db import Database


@dataclass(frozen=True)
class Filters:
    """Which deliveries: each given field narrows the choice, None leaves it open."""

    states: Collection[State] | None = None
    channel: str | None = None
    case_id: str | None = None
    destination: str | None = None

    def of(self, table: Table) -> list[ColumnElement[bool]]:
        c = table.c
        found = [] if self.states is None else [c.state.in_(sorted(self.states))]
        given = {"channel": self.channel, "case_id": self.case_id, "destination": self.destination}
        return found + [c[name] == value for name, value in given.items() if value is not None]


@dataclass(frozen=True)
class Page:
    rows: list[Row[Any]]
    next: int | None  # the `after` that gives the next page; None: there is none


class NotRedrivable(Conflict):
    """Only a dead or permanently failed delivery goes back: any other is on its way, or done."""

    code = "not_redrivable"

    def __init__(self, state: str) -> None:
        super().__init__(f"the delivery is {state}; only a dead or permanently failed one can be re-driven")
        self.state = state


class DeliveryOps:
    def __init__(self, db: Database, clock: Clock, table: Table) -> None:
        self.db = db
        self.clock = clock
        self.table = table

    async def listing(self, filters: Filters = Filters(), after: int | None = None, limit: int = 100) -> Page:
        """Up to `limit` deliveries in id order, from the first after `after`: a page whose
        place holds while new rows are written (they come after it)."""
        t = self.table
        query = select(t).where(*filters.of(t)).order_by(t.c.id).limit(limit + 1)
        if after is not None:
            query = query.where(t.c.id > after)
        async with self.db.sessions() as s:
            rows = list((await s.execute(query)).all())
        return Page(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)

    async def redrive(self, delivery_id: int) -> Row[Any]:
        """A dead or permanently failed delivery back to created, attempts reset, due now; it is
        sent once more, after any earlier unfinished delivery of its sequence."""
        t = self.table
        async with self.db.transaction() as s:
            state = await s.scalar(select(t.c.state).where(t.c.id == delivery_id).with_for_update())
            if state is None:
                raise NotFound("no such delivery")
            if state not in REDRIVABLE:
                raise NotRedrivable(state)
            await s.execute(self._back().where(t.c.id == delivery_id))
            return (await s.execute(select(t).where(t.c.id == delivery_id))).one()

    async def redrive_all(self, filters: Filters = Filters()) -> int:
        """Every dead or permanently failed delivery that `filters` choose back to created; how many."""
        t = self.table
        states = REDRIVABLE if filters.states is None else REDRIVABLE & set(filters.states)
        if not states:
            return 0
        chosen = Filters(states, filters.channel, filters.case_id, filters.destination)
        async with self.db.transaction() as s:
            return len((await s.execute(self._back().where(*chosen.of(t)).returning(t.c.id))).all())

    def _back(self) -> Any:
        return update(self.table).values(state=State.CREATED, attempts=0, next_attempt_at=self.clock.now())

    async def counts(
        self, filters: Filters = Filters(), per: Sequence[str] = ("channel", "state")
    ) -> dict[tuple[Any, ...], int]:
        """How many deliveries `filters` choose, per value of the `per` columns (a dashboard's
        states per channel, a unit's per state). Narrow `states` on a big table: every row
        chosen is counted."""
        t = self.table
        columns = [t.c[name] for name in per]
        query = select(*columns, func.count()).where(*filters.of(t)).group_by(*columns)
        async with self.db.sessions() as s:
            return {tuple(row[:-1]): row[-1] for row in (await s.execute(query)).all()}
