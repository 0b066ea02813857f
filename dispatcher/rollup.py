"""The figures hour by hour: a worker counts the figures' facts (dispatcher/figures.py) of every
hour that is over into `dispatcher_figure_hours`, so that a month's or a year's figures add up a
few hundred rows an hour instead of reading the window's cases, assignments and history.

An hour is rolled up once it has been over for `settle` (ten minutes by default): a fact is
written with the time of the transaction that writes it, so every fact of an hour is in by then
(a transaction does not last minutes). The first round rolls up every hour from the first case
on (after the migration that adds the table, on a big district, a few minutes of one query), the
later ones the hours since. One replica rolls at a time (the mark's row lock).

Most facts never change once written: an event's, a report's, an assignment's start. An
assignment's clocks can: a ticket unclaimed hours after its claim no longer counts that claim,
and its response limit may then count as missed. The dispatcher's writes note the hours such a
change touched (`stale_hours`, in the same transaction as the change), and the worker rolls them
up again; until it has, a window reads those hours from the rows.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Insert, delete, func, insert, select, text, update

from dispatcher.domain import Assignment
from dispatcher.figures import DIMS, Scope, Window, closure_facts, facts, grouped, kept
from dispatcher.tables import cases, figure_hours, figure_mark, figure_stale
from services.district.clock import Clock
from services.runtime.lifecycle import Stop
from services.runtime.retry import Stopped, always, retry
from services.storage.bulk import insert_new
from services.storage.clocksql import epoch_hour, hour_of, hour_start
from services.storage.db import Database

log = logging.getLogger(__name__)
# The first round after the upgrade that adds the rollup counts every hour since the first case
# in one statement: minutes on a year of a big district (README, the year's table).
ROUND_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Rolled:
    hours: int = 0  # hours rolled up for the first time
    again: int = 0  # stale hours rolled up again


class Roller:
    def __init__(self, db: Database, clock: Clock, *, settle: timedelta = timedelta(minutes=10), every: float = 60.0):
        self.db = db
        self.clock = clock
        self.settle = settle
        self.every = every

    async def roll_once(self, db: Database | None = None) -> Rolled:
        """Roll up every hour over for `settle` that is not yet, and every stale one, in one
        transaction (on `db`, by default the roller's); the hours rolled."""
        now = self.clock.now()
        over = hour_of(now - self.settle)
        db = db or self.db
        async with db.transaction() as s:
            if db.is_postgres:  # the hours' counts grouped in memory, not on disk
                await s.execute(text("SET LOCAL work_mem = '64MB'"))
            mark = await s.scalar(select(figure_mark.c.until).with_for_update())
            if mark is None:
                first = await s.scalar(select(func.min(cases.c.created_at)))
                await insert_new(s, figure_mark, [{"id": 1, "until": hour_of(first) if first else over}], "id")
                mark = await s.scalar(select(figure_mark.c.until).with_for_update())
            assert mark is not None
            stale = (await s.execute(select(figure_stale.c.id, figure_stale.c.hour))).all()
            if stale:
                await s.execute(delete(figure_stale).where(figure_stale.c.id <= max(r.id for r in stale)))
            again = sorted({r.hour for r in stale if r.hour < mark})
            for first, last in _runs(again):
                await s.execute(delete(figure_hours).where(figure_hours.c.hour >= first, figure_hours.c.hour < last))
                for statement in _roll(first, last, now):
                    await s.execute(statement)
            if mark < over:
                for statement in _roll(mark, over, now):
                    await s.execute(statement)
                await s.execute(update(figure_mark).values(until=over))
        return Rolled(max(over - mark, 0), len(again))

    async def run(self, stop: Stop) -> None:
        """A round every `every` seconds until `stop`; a failed round is tried again. On
        PostgreSQL the rounds have connections of their own, whose statements may take as long
        as the first round's (ROUND_TIMEOUT), not the services' 30 s."""
        db = self.db
        if db.is_postgres:
            db = Database(self.db.url, application_name="dispatcher-rollup", command_timeout=ROUND_TIMEOUT)
        try:
            while not stop:
                try:
                    rolled = await retry(
                        partial(self.roll_once, db), what="figures: rolling up", stop=stop, retry_on=always
                    )
                except Stopped:
                    return
                if rolled.hours > 1 or rolled.again:
                    log.info("figures: %d hours rolled up, %d again", rolled.hours, rolled.again)
                await stop.sleep(self.every)
        finally:
            if db is not self.db:
                await db.dispose()


def _roll(first: int, last: int, now: datetime) -> list[Insert]:
    """The facts of the hours from `first` to `last` (not included), counted per hour: the
    figures' facts, and the closure rates' with the hour of their case's report."""
    window = Window(hour_start(first), hour_start(last), now)
    chosen = kept(window, {}, Scope())
    counted = grouped(facts(window, chosen, Scope()), ("hour", *DIMS))
    ever = Window(hour_start(0), hour_start(last), now)
    closure = closure_facts(kept(window, {}, Scope(), changed=True), ever, window).subquery("closure")
    reported = epoch_hour(closure.c.reported_at).label("reported_hour")
    columns = ["hour", *DIMS, "figure", "n", "seconds"]
    return [
        insert(figure_hours).from_select(columns, counted),
        insert(figure_hours).from_select(
            [*columns, "reported_hour"],
            grouped(closure, ("hour", *DIMS)).add_columns(reported).group_by(reported),
        ),
    ]


def _runs(hours: list[int]) -> list[tuple[int, int]]:
    """Sorted hours as runs of consecutive hours: (first, last + 1)."""
    runs: list[tuple[int, int]] = []
    for h in hours:
        if runs and runs[-1][1] == h:
            runs[-1] = (runs[-1][0], h + 1)
        else:
            runs.append((h, h + 1))
    return runs


# -- what a change touches -------------------------------------------------------------------


def contributions(a: Assignment) -> set[tuple[str, int]]:
    """An assignment's facts, by name and hour, as figures.py `_assignment_facts` says them (a
    limit counted as missed once past: an hour rolled up is over, and so is every limit in it)."""
    out = {("assigned", hour_of(a.assigned_at))}
    if a.claimed_at is not None:
        out.add(("claimed", hour_of(a.claimed_at)))
    clocks = (("response", a.response_due, a.claimed_at), ("resolution", a.resolution_due, a.resolved_at))
    for clock, due, done in clocks:
        if done is not None and done <= due:
            out.add((f"{clock}_met", hour_of(done)))
        elif a.ended_at is None or a.ended_at >= due:
            out.add((f"{clock}_missed", hour_of(due)))
    return out


def stale_hours(before: Assignment, after: Assignment, now: datetime) -> set[int]:
    """The hours before this one whose facts a change of an assignment changed: the ones a
    rollup may hold already. (A claim's duration changes only with its claim.)"""
    current = hour_of(now)
    return {h for _, h in contributions(before) ^ contributions(after) if h < current}
