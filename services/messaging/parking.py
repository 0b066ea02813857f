"""Parking: the records a consumer could not handle, kept in the service's dead-letter table
with the error until ops re-drive them (services/messaging/deadletters.py)."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Table,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from services.district.clock import Clock
from services.messaging.bus import ID_HEADER, TYPE_HEADER, Record
from services.messaging.envelope import Envelope
from services.messaging.tables import column_text, error_text
from services.storage.db import Database


class Parking:
    """A service's dead-letter table: park a record, list, unpark, park again."""

    def __init__(self, db: Database, table: Table, clock: Clock) -> None:
        self.db, self.table, self.clock = db, table, clock

    async def park(self, consumer: str, record: Record, error: BaseException) -> None:
        """Keep a record the consumer could not handle, with the error; parking the same
        record again counts one more attempt."""
        table = self.table
        try:
            envelope = Envelope.decode(record.value)
            about: dict[str, str | None] = {
                "event_id": envelope.id,
                "event_type": envelope.type,
                "case_id": envelope.subject,
            }
        except ValueError:  # not a gridcall envelope: what its CloudEvents headers say, if any
            about = {
                "event_id": record.headers.get(ID_HEADER),
                "event_type": record.headers.get(TYPE_HEADER),
                "case_id": record.key,
            }
        now = self.clock.now()
        insert = (postgresql.insert if self.db.is_postgres else sqlite.insert)(table).values(
            consumer=consumer,
            **{k: column_text(v) if v is not None else None for k, v in about.items()},
            payload=record.value,
            source_topic=column_text(record.topic),
            source_partition=record.partition,
            source_offset=record.offset,
            error=error_text(error),
            attempts=1,
            parked_at=now,
        )
        upsert = insert.on_conflict_do_update(
            index_elements=["consumer", "source_topic", "source_partition", "source_offset"],
            set_={"error": insert.excluded.error, "attempts": table.c.attempts + 1, "parked_at": now},
        )
        async with self.db.transaction() as s:
            await s.execute(upsert)

    async def parked(self, consumer: str, event_id: str | None = None) -> Sequence[Row[Any]]:
        """The consumer's parked records, oldest first (all of them, or one event's)."""
        table = self.table
        query = select(table).where(table.c.consumer == consumer).order_by(table.c.id)
        if event_id is not None:
            query = query.where(table.c.event_id == event_id)
        async with self.db.sessions() as s:
            return (await s.execute(query)).all()

    async def count_parked(self, consumer: str) -> int:
        table = self.table
        async with self.db.sessions() as s:
            return await s.scalar(select(func.count()).where(table.c.consumer == consumer)) or 0

    async def unpark(self, parked_id: int) -> None:
        async with self.db.transaction() as s:
            await s.execute(delete(self.table).where(self.table.c.id == parked_id))

    async def repark(self, parked_id: int, error: BaseException) -> None:
        """A re-drive failed again: keep the record, with the new error."""
        table = self.table
        async with self.db.transaction() as s:
            await s.execute(
                update(table)
                .where(table.c.id == parked_id)
                .values(error=error_text(error), attempts=table.c.attempts + 1, parked_at=self.clock.now())
            )
