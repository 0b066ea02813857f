"""The delivery worker: sends pending webhook deliveries to units' own systems after the
consumer committed them, signed per Standard Webhooks, at least once and in order per case.

Each unit with a webhook has a loop of its own, with its own HTTP client, so one department's
outage or slowness never delays another's deliveries. A round claims the unit's due
deliveries that are the earliest undelivered of their case (so a case's messages go out one
after the other, in the order they were written; behind a dead one, the case's later
messages wait until ops re-drive it), by moving their next attempt a lease
ahead in a short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas split the
work and never take the same row); sends them concurrently, each bounded by the timeout; and
records the outcomes in one statement. A replica that dies mid-send leaves rows whose lease
expires, and they are sent again: the receiver deduplicates by webhook-id."""

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from departments.adapters import signing
from departments.tables import adapters, deliveries
from services.delivery import retries
from services.delivery.retries import Verdict
from services.district.clock import Clock
from services.runtime.lifecycle import Stop
from services.runtime.metrics import Metrics
from services.runtime.retry import Stopped, always, describe, retry
from services.storage.bulk import insert_new, update_rows
from services.storage.db import Database

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/cloudevents+json"


_OUTCOMES = {Verdict.DELIVERED: "delivered", Verdict.GONE: "gone", Verdict.DEAD: "dead"}


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str | None
    retry_after: str | None = None


class Webhooks:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        urls: dict[str, str],
        keys: dict[str, bytes],
        *,
        schedule: Sequence[float],
        timeout: float,
        interval: float = 0.2,
        batch: int = 50,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.urls = urls
        self.keys = keys
        self.schedule = list(schedule)
        self.timeout = timeout
        self.lease = timedelta(seconds=timeout * 2 + 10)
        self.interval = interval
        self.batch = batch
        self.rng = rng or random.Random()
        self.transport = transport
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.metrics = metrics or Metrics()

    async def run(self, stop: Stop) -> None:
        """One loop per unit, side by side."""
        try:
            await asyncio.gather(*(self._unit_loop(unit, stop) for unit in sorted(self.urls)))
        finally:
            for client in self.clients.values():
                await client.aclose()
            self.clients.clear()

    async def _unit_loop(self, unit_id: str, stop: Stop) -> None:
        while not stop:
            try:
                sent = await retry(
                    partial(self.deliver_due, unit_id), what=f"webhooks to {unit_id}", stop=stop, retry_on=always
                )
            except Stopped:
                return
            if sent == 0:
                await stop.sleep(self.interval)

    async def deliver_due(self, unit_id: str) -> int:
        """Send this unit's due deliveries once; how many were sent."""
        claimed = await self._claim(unit_id)
        if not claimed:
            return 0
        attempts = await asyncio.gather(*(self._post(unit_id, row) for row in claimed))
        await self._record(unit_id, claimed, attempts)
        return len(claimed)

    async def _claim(self, unit_id: str) -> Sequence[Row[Any]]:
        now = self.clock.now()
        earlier = deliveries.alias("earlier")
        async with self.db.transaction() as s:
            if await s.scalar(select(adapters.c.disabled_at).where(adapters.c.unit_id == unit_id)):
                return []  # switched off by its system (410): its deliveries wait for ops
            due = (
                select(deliveries.c.id)
                .where(
                    deliveries.c.unit_id == unit_id,
                    deliveries.c.state == "pending",
                    deliveries.c.next_attempt_at <= now,
                    ~exists().where(
                        earlier.c.case_id == deliveries.c.case_id,
                        earlier.c.unit_id == unit_id,
                        earlier.c.state != "delivered",  # a dead one holds its case's later messages
                        earlier.c.id < deliveries.c.id,
                    ),
                )
                .order_by(deliveries.c.id)
                .limit(self.batch)
                .with_for_update(of=deliveries, skip_locked=True)
            )
            claimed = await s.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=now + self.lease)
                .returning(deliveries.c.id, deliveries.c.msg_id, deliveries.c.body, deliveries.c.attempts)
            )
            return sorted(claimed.all(), key=lambda r: r.id)

    def _client(self, unit_id: str) -> httpx.AsyncClient:
        if unit_id not in self.clients:
            self.clients[unit_id] = httpx.AsyncClient(timeout=self.timeout, transport=self.transport)
        return self.clients[unit_id]

    async def _post(self, unit_id: str, row: Row[Any]) -> Attempt:
        """One attempt, signed at send time (a retry carries a fresh timestamp, the same id)."""
        body = row.body.encode()
        stamp = int(self.clock.now().timestamp())
        headers = signing.headers(self.keys[unit_id], row.msg_id, stamp, body) | {"content-type": CONTENT_TYPE}
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._client(unit_id).post(self.urls[unit_id], content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return Attempt(None, f"no answer within {self.timeout:g}s")
        except httpx.HTTPError as exc:
            return Attempt(None, describe(exc))
        if answer.is_success:
            return Attempt(answer.status_code, None)
        return Attempt(answer.status_code, f"HTTP {answer.status_code}", answer.headers.get("retry-after"))

    async def _record(self, unit_id: str, rows: Sequence[Row[Any]], attempts: Sequence[Attempt]) -> None:
        now = self.clock.now()
        changes: list[dict[str, Any]] = []
        outcomes: list[str] = []
        gone = False
        for row, attempt in zip(rows, attempts, strict=True):
            tried = row.attempts + 1
            wait = retries.retry_after(attempt.retry_after, now)
            step = retries.after(self.schedule, tried, attempt.status, wait, self.rng)
            change = {
                "id": row.id,
                "state": "pending",
                "attempts": tried,
                "next_attempt_at": now,
                "last_error": attempt.error,
                "last_status": attempt.status,
                "delivered_at": None,
            }
            outcomes.append(_OUTCOMES.get(step.verdict, "retry"))
            if step.verdict is Verdict.DELIVERED:
                change.update(state="delivered", delivered_at=now)
            elif step.verdict is Verdict.GONE:
                gone = True
                change.update(attempts=row.attempts)  # not its failure: it waits for the adapter
            elif step.verdict is Verdict.DEAD:
                change.update(state="dead")
                log.warning("delivery %s to %s dead after %d attempts: %s", row.id, unit_id, tried, attempt.error)
            else:
                change.update(next_attempt_at=now + timedelta(seconds=step.delay))
                log.info("webhook delivery %s to %s failed (attempt %d): %s", row.id, unit_id, tried, attempt.error)
            changes.append(change)
        async with self.db.transaction() as s:
            await update_rows(s, deliveries, "id", changes)
            if gone:
                await disable(s, unit_id, "the unit's system answered 410 Gone", now)
        self.metrics.tally(self.metrics.deliveries, (("departments", "adapter_webhook", o) for o in outcomes))
        if gone:
            log.warning(
                "adapter of %s disabled: its system answered 410 Gone; its deliveries wait "
                "(gridcall adapter enable --unit %s, or POST /v1/ops/adapters/%s/enable)",
                unit_id,
                unit_id,
                unit_id,
            )


async def disable(session: AsyncSession, unit_id: str, because: str, at: datetime) -> None:
    """Switch a unit's adapter off (its row in departments_adapters), whoever comes first."""
    row = {"unit_id": unit_id, "disabled_at": at, "disabled_because": because}
    if not await insert_new(session, adapters, [row], "unit_id"):
        await session.execute(
            update(adapters).where(adapters.c.unit_id == unit_id).values(disabled_at=at, disabled_because=because)
        )
