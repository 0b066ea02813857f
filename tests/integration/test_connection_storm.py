"""Connections terminated in the middle of their work, hundreds of times a second, on a real
PostgreSQL, through the services' own engine (services/storage/db.py): asyncpg raises every
kind of failure it has (a connection closed in the middle of an operation, one already closed,
an InternalClientError: one that lost track of its protocol), no transaction hangs, and once
the storm ends every transaction goes through at once: no broken connection was kept."""

import asyncio
import time
import uuid
from collections import Counter

import asyncpg
import pytest
from sqlalchemy import text

from services.storage.db import COMMAND_TIMEOUT, Database

pytestmark = pytest.mark.integration


async def test_a_connection_that_lost_its_protocol_state_is_dropped_and_the_pool_recovers(pg_url):
    name = f"storm-{uuid.uuid4().hex[:8]}"
    db = Database(pg_url, application_name=name)
    admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    raised: Counter[str] = Counter()
    ends = time.monotonic() + 4

    async def worker() -> None:
        while time.monotonic() < ends:
            try:
                async with asyncio.timeout(5), db.transaction() as s:
                    await s.execute(text("SELECT pg_sleep(0.002)"))
                    await s.execute(text("SELECT 1"))
            except TimeoutError:
                raised["hung"] += 1
            except Exception as exc:  # noqa: BLE001  (the storm's failures are counted, not raised)
                raised[type(exc).__name__] += 1

    async def storm() -> None:
        while time.monotonic() < ends:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", name
            )
            await asyncio.sleep(0.005)

    try:
        await asyncio.gather(storm(), *(worker() for _ in range(20)))

        async def after() -> None:
            async with db.transaction() as s:
                await s.execute(text("SELECT 1"))

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(after() for _ in range(40))), COMMAND_TIMEOUT / 3)
        recovered = time.monotonic() - started
    finally:
        await db.dispose()
        await admin.close()

    assert raised["hung"] == 0, raised
    assert raised["InternalError"] > 0, raised  # the storm did make connections lose their protocol state
    assert recovered < 2
