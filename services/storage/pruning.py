"""Tables that would otherwise grow for ever lose their old rows: a worker of each service
deletes, in batches of BATCH rows a transaction, the rows older than each table's horizon.

A horizon counts from a time the service wrote with the injected clock, so a test that moves
the clock moves the horizon, and the batches keep each delete short: it holds its locks and its
share of the WAL for a thousand rows, not for a year's.

The inbox's horizon (GRIDCALL_INBOX_HORIZON_DAYS, 14 days by default) must be longer than the
broker keeps its records plus the longest a consumer may lag behind: an event redelivered
after its inbox row was deleted would be handled a second time. Kafka keeps a topic's records
seven days unless told otherwise.

Outbound deliveries (services/delivery/) and the notifier's notifications go once they are
finished and older than GRIDCALL_DELIVERY_RETENTION_DAYS (30 by default, never shorter than the
inbox's horizon: their unique keys are what keeps a redelivered event from sending twice, so they
must outlive the inbox row that refuses it)."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Column, ColumnElement, CursorResult, Table, and_, delete, select, true, tuple_

from services.district.clock import Clock
from services.runtime.lifecycle import Stop
from services.runtime.retry import Stopped, always, retry
from services.storage.db import Database

log = logging.getLogger(__name__)

BATCH = 1000  # rows a transaction
EVERY = 600.0  # seconds between rounds


@dataclass(frozen=True)
class Horizon:
    """The rows of `table` whose `since` is older than `keep`, and that meet `where`, go."""

    table: Table
    since: Column  # type: ignore[type-arg]
    keep: timedelta
    where: ColumnElement[bool] = true()  # e.g. only the rows in a final state


class Pruner:
    def __init__(
        self, name: str, db: Database, clock: Clock, horizons: Sequence[Horizon], *, every: float = EVERY
    ) -> None:
        self.name = name
        self.db = db
        self.clock = clock
        self.horizons = list(horizons)
        self.every = every

    async def prune_once(self) -> dict[str, int]:
        """Delete what is past each horizon now, one horizon after the other in their order (a
        notification goes once its deliveries have); the rows deleted, per table."""
        pruned: dict[str, int] = {}
        for h in self.horizons:
            key = list(h.table.primary_key.columns)
            past = and_(h.since < self.clock.now() - h.keep, h.where)
            old = select(*key).where(past).limit(BATCH)
            pruned[h.table.name] = 0
            while True:
                async with self.db.transaction() as s:
                    # `past` again on the rows deleted: a row changed meanwhile (a delivery re-driven
                    # by ops) is checked as it is now, not as the batch's query saw it.
                    done = await s.execute(delete(h.table).where(tuple_(*key).in_(old), past))
                    deleted = cast(CursorResult[Any], done).rowcount
                pruned[h.table.name] += deleted
                if deleted < BATCH:
                    break
        return pruned

    async def run(self, stop: Stop) -> None:
        """A round every `every` seconds until `stop` (a failed round is tried again); the first
        after `every`, so that a start (of a process, of a test's cluster) adds no work of its own."""
        while not stop:
            await stop.sleep(self.every)
            if stop:
                return
            try:
                pruned = await retry(self.prune_once, what=f"{self.name}: pruning", stop=stop, retry_on=always)
            except Stopped:
                return
            if any(pruned.values()):
                log.info("%s: pruned %s", self.name, ", ".join(f"{n} from {t}" for t, n in pruned.items() if n))
