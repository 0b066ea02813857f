"""Embedded mode with SQLite's write lock held by someone else (a second process, the CLI, a
backup): a lock is a wait, never an error. Every request that arrives meanwhile answers once
the lock is let go, none with a 5xx, and a test's own connection queues the same way."""

import asyncio
import sqlite3
import threading
import time

import pytest

from tests.support.apps import running
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.staff import enrol

HOLD = 2.0


def hold_write_lock(path: str, taken: threading.Event, seconds: float) -> None:
    """Another connection to the file takes the write lock (BEGIN IMMEDIATE) and keeps it."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        other.execute("ROLLBACK")
    finally:
        other.close()


@pytest.fixture
async def client(embedded_settings):
    async with running(embedded_settings) as app:
        yield app.client


async def test_requests_wait_out_a_write_lock_held_elsewhere_and_none_fails(client, embedded_settings):
    secret = embedded_settings.secret_key.get_secret_value()
    tokens = await enrol(embedded_settings.db_url, secret, ["U-G11"])
    staff = tokens("U-G11")
    first = await file_report(client)
    await case_in_status(client, first, "assigned")
    ticket = await open_ticket(client, "U-G11", staff, first["case_id"])

    taken = threading.Event()
    holder = asyncio.create_task(
        asyncio.to_thread(hold_write_lock, str(embedded_settings.var_dir / "gridcall.db"), taken, HOLD)
    )
    assert await asyncio.to_thread(taken.wait, 5), "the other connection never got the lock"
    started = time.monotonic()

    def report(i: int) -> dict[str, object]:
        return {
            "category": "garbage",
            "description": f"heap {i} by the gate",
            "location": {"lat": round(30.5005 + 0.0008 * i, 6), "lon": 114.301},
        }

    writes = [client.post("/v1/reports", json=report(i)) for i in range(8)]
    writes.append(client.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(staff)))
    reads = [
        client.get(f"/v1/cases/{first['case_id']}", headers={"X-Tracking-Token": first["tracking_token"]}),
        client.get("/v1/units/U-G11/tickets", headers=bearer(staff)),
    ]
    answers = await asyncio.gather(*writes, *reads, enrol(embedded_settings.db_url, secret, ["U-G12"]))
    waited = time.monotonic() - started
    await holder
    *responses, more_tokens = answers

    assert [r.status_code for r in responses] == [202] * 8 + [200] * 3, [r.text for r in responses]
    assert waited >= HOLD * 0.8, f"the writes answered after {waited:.2f} s: the lock was not in their way"
    assert more_tokens("U-G12")  # the test's own connection queued too
    for r in responses[:8]:
        await case_in_status(client, r.json(), "assigned")


def test_a_migrated_file_is_in_wal_mode_before_any_service_opens_it(embedded_settings):
    """The migrations make the file on the services' own engine: no two connections of a
    starting app ever race each other into WAL mode (a switch that takes the whole file)."""
    with sqlite3.connect(embedded_settings.var_dir / "gridcall.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
