"""The adapters' deliveries: the webhook sender that posts an assignment to a unit's own system,
signed per Standard Webhooks at send time, and the hooks the kernel's delivery worker
(services/delivery/worker.py, a lane per unit: departments/bootstrap.py) runs it with: a unit
whose system answered 410 Gone has its adapter switched off, and its deliveries wait for ops;
a delivery that fails for good is told to ops (an event the notifier handles).

Each unit has its own HTTP client. A timeout or an error is a temporary failure, tried again on
the schedule: the receiver deduplicates by webhook-id, so sending again after an unknown
outcome (a crash mid-send) is safe."""

import asyncio
import logging
from collections.abc import Collection, Sequence
from datetime import datetime

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from departments.adapters import signing
from departments.tables import adapters
from services.delivery.retries import retry_after
from services.delivery.sender import Item, Outcome, Result
from services.delivery.worker import Failed, OnFailed
from services.district.clock import Clock
from services.district.events import DeliveryFailed
from services.messaging.envelope import Envelope
from services.messaging.transaction import Store
from services.runtime.retry import describe
from services.storage.bulk import insert_new

log = logging.getLogger(__name__)
CHANNEL = "webhook"
CONTENT_TYPE = "application/cloudevents+json"


class Webhooks:
    """The Sender of the adapters' webhooks: `urls` and `keys` by unit id (the destination)."""

    channel = CHANNEL
    resend_unknown = True

    def __init__(
        self,
        clock: Clock,
        urls: dict[str, str],
        keys: dict[str, bytes],
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.clock = clock
        self.urls = urls
        self.keys = keys
        self.timeout = timeout
        self.transport = transport
        self.clients: dict[str, httpx.AsyncClient] = {}

    def _client(self, unit_id: str) -> httpx.AsyncClient:
        if unit_id not in self.clients:
            self.clients[unit_id] = httpx.AsyncClient(timeout=self.timeout, transport=self.transport)
        return self.clients[unit_id]

    async def send(self, item: Item) -> Result:
        """One attempt, signed at send time (a retry carries a fresh timestamp, the same id)."""
        unit_id, body = item.destination, item.body.encode()
        stamp = int(self.clock.now().timestamp())
        headers = signing.headers(self.keys[unit_id], item.msg_id, stamp, body) | {"content-type": CONTENT_TYPE}
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self._client(unit_id).post(self.urls[unit_id], content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return Result(Outcome.TEMPORARY, f"no answer within {self.timeout:g}s")
        except httpx.HTTPError as exc:
            return Result(Outcome.TEMPORARY, describe(exc))
        status = answer.status_code
        if answer.is_success:
            return Result(Outcome.DELIVERED, status=status)
        if status == 410:
            return Result(Outcome.GONE, f"HTTP {status}", status)
        wait = retry_after(answer.headers.get("retry-after"), self.clock.now()) if status in (429, 503) else None
        return Result(Outcome.TEMPORARY, f"HTTP {status}", status, retry_after=wait)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()


async def switched_off(session: AsyncSession) -> Collection[str]:
    """The units whose system switched their adapter off: their deliveries wait for ops."""
    return set(await session.scalars(select(adapters.c.unit_id).where(adapters.c.disabled_at.is_not(None))))


async def gone(session: AsyncSession, unit_id: str, at: datetime) -> None:
    await disable(session, unit_id, "the unit's system answered 410 Gone", at)
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


def failed(store: Store) -> OnFailed:
    """Tell ops (through the notifier) of each delivery to a unit's system that will not arrive by
    itself, in the transaction that records it: an event in the departments outbox."""

    async def tell(session: AsyncSession, failures: Sequence[Failed], at: datetime) -> None:
        events = [
            Envelope.wrap(
                DeliveryFailed(
                    case_id=f.row.case_id or "",
                    unit_id=f.row.destination,
                    kind=f.row.kind,
                    delivery_id=f.row.id,
                    reason=f.reason or f.state.value,
                ),
                source=store.source,
                time=at,
            )
            for f in failures
        ]
        await store.write_outbox(session, events)

    return tell
