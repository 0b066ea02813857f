"""A dead letter is never a dead end: a record parked for a bug goes back through its consumer
once the bug is fixed, and is handled exactly once (PostgreSQL, the broker)."""

import asyncio
import json
import subprocess
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from dispatcher import tables
from gridcall.app import build_app
from services.district.clock import SystemClock
from services.district.events import CaseReported, Location, Stream
from services.messaging.bus import Message, Record
from services.messaging.envelope import Envelope
from services.web.auth import Authenticator
from tests.support.apps import lifespan
from tests.support.cluster import base_env, gridcall_args
from tests.support.journey import bearer
from tests.support.staff import signed
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def reported(case_id: str, category: str = "garbage") -> CaseReported:
    where = Location(lat=30.505, lon=114.305)
    return CaseReported(case_id=case_id, category=category, description="bags", location=where, grid_id="G11")


@pytest.fixture
async def dispatcher(pg_settings):
    """The dispatcher in-process, its consumer running on the broker, and an ops client."""
    app = build_app(pg_settings, ["dispatcher"])
    ops = Authenticator(pg_settings.secret_key.get_secret_value(), SystemClock()).issue("ops", ttl=timedelta(hours=1))
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://dispatcher", headers=bearer(ops)
        ) as client,
    ):
        yield app, client


@pytest.fixture
def broken_on_reported(dispatcher):
    """A real bug: the dispatcher's handler for case.reported raises. Restore it to fix the bug."""
    app, _ = dispatcher
    consumer = app.state.parts[0].consumers[0]
    real = consumer.handlers

    async def bug(tx, envelope, event):
        raise RuntimeError("a bug in on_reported")

    consumer.handlers = {**real, CaseReported: bug}

    def fix() -> None:
        consumer.handlers = real

    yield fix
    fix()


async def routed(app, case_id: str) -> tuple[int, int, int]:
    """(cases, assignments, case.assigned in history) for the case."""
    async with app.state.ctx.db.sessions() as s:
        return tuple(
            [
                await s.scalar(select(func.count()).where(t.c.case_id == case_id, *where))
                for t, where in (
                    (tables.cases, ()),
                    (tables.assignments, ()),
                    (tables.history, (tables.history.c.type == "case.assigned",)),
                )
            ]
        )


async def test_a_record_parked_for_a_bug_is_routed_once_when_redriven_after_the_fix(dispatcher, broken_on_reported):
    app, ops = dispatcher
    ctx, consumer = app.state.ctx, app.state.parts[0].consumers[0]
    case_id = f"bug-{uuid.uuid4()}"
    envelope = Envelope.wrap(reported(case_id), source="/intake", time=ctx.clock.now())
    await ctx.bus.publish([Message(ctx.settings.topic(Stream.CASES), case_id, envelope.encode())])

    async def parked() -> dict | None:
        listed = (await ops.get("/v1/ops/deadletters", params={"consumer": "dispatcher"})).json()
        return listed if listed["count"] == 1 else None

    listed = await eventually(parked, timeout=30)
    [letter] = listed["deadletters"]
    assert (letter["event_id"], letter["case_id"], letter["consumer"]) == (envelope.id, case_id, consumer.name)
    assert "a bug in on_reported" in letter["error"] and letter["attempts"] == 1
    assert (await ops.get("/healthz")).json()["deadletters"] == 1
    assert await routed(app, case_id) == (0, 0, 0)

    broken_on_reported()
    [row] = await consumer.store.parking.parked(consumer.name)
    r = await ops.post("/v1/ops/deadletters/redrive", params={"event_id": envelope.id})
    assert r.status_code == 200, r.text
    assert (r.json()["handled"], r.json()["failed"], r.json()["remaining"]) == (1, 0, 0)
    assert await routed(app, case_id) == (1, 1, 1)

    # Re-driving again changes nothing, even with a second parked copy of the same event.
    assert (await ops.post("/v1/ops/deadletters/redrive")).json()["handled"] == 0
    record = Record(row.source_topic, row.source_partition, row.source_offset, row.case_id, row.payload)
    await consumer.store.parking.park(consumer.name, record, RuntimeError("parked twice"))
    assert (await ops.post("/v1/ops/deadletters/redrive")).json()["handled"] == 1
    assert await routed(app, case_id) == (1, 1, 1)
    assert (await ops.get("/v1/ops/deadletters")).json() == {"count": 0, "deadletters": []}


async def test_a_record_that_fails_again_stays_parked_with_the_new_error(dispatcher):
    app, ops = dispatcher
    ctx = app.state.ctx
    case_id = f"ufo-{uuid.uuid4()}"
    envelope = Envelope.wrap(reported(case_id, category="ufo"), source="/intake", time=ctx.clock.now())
    await ctx.bus.publish([Message(ctx.settings.topic(Stream.CASES), case_id, envelope.encode())])

    async def parked() -> bool:
        return (await ops.get("/v1/ops/deadletters")).json()["count"] == 1

    await eventually(parked, timeout=30)
    by_name = {"consumer": app.state.parts[0].consumers[0].name}
    r = (await ops.post("/v1/ops/deadletters/redrive", params=by_name)).json()
    assert (r["handled"], r["failed"], r["remaining"]) == (0, 1, 1)
    assert "unknown category 'ufo'" in r["results"][0]["error"]
    [letter] = (await ops.get("/v1/ops/deadletters")).json()["deadletters"]
    assert letter["attempts"] == 2


async def test_ops_endpoints_need_an_ops_token_and_a_known_consumer(dispatcher, pg_settings):
    _, ops = dispatcher
    assert (await ops.get("/v1/ops/deadletters", headers={"Authorization": ""})).status_code == 401
    staff = signed(Authenticator(pg_settings.secret_key.get_secret_value(), SystemClock()), "U-G11")
    assert (await ops.post("/v1/ops/deadletters/redrive", headers=bearer(staff))).status_code == 403
    r = await ops.get("/v1/ops/deadletters", params={"consumer": "nobody"})
    assert r.status_code == 404 and r.json()["detail"].endswith(".dispatcher")


async def test_the_cli_lists_and_redrives_parked_records(pg_settings):
    """`gridcall deadletter`: the composition root builds every service's consumer."""
    app = build_app(pg_settings, ["departments"])
    consumer = app.state.parts[0].consumers[0]
    case_id = f"cli-{uuid.uuid4()}"
    record = Record(pg_settings.topic(Stream.CASES), 0, 7, case_id, b"not an event")
    await consumer.store.parking.park(consumer.name, record, ValueError("not an event"))
    env = base_env(
        {
            "GRIDCALL_ENV": "test",
            "GRIDCALL_DATABASE_URL": pg_settings.database_url,
            "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS": pg_settings.kafka_bootstrap_servers or "",
            "GRIDCALL_TOPIC_PREFIX": pg_settings.topic_prefix,
        }
    )

    def gridcall(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(gridcall_args("deadletter", *args), env=env, capture_output=True, text=True, timeout=60)

    try:
        listed = await asyncio.to_thread(gridcall, "list", "--consumer", "departments")
        assert listed.returncode == 0, listed.stderr
        [letter] = json.loads(listed.stdout)["deadletters"]
        assert (letter["case_id"], letter["source_offset"], letter["event_id"]) == (case_id, 7, None)

        again = await asyncio.to_thread(gridcall, "redrive", "--consumer", consumer.name)
        assert again.returncode == 1  # still not an event: kept, with the new error
        assert json.loads(again.stdout)["remaining"] == 1
        assert (await consumer.store.parking.parked(consumer.name))[0].attempts == 2

        unknown = await asyncio.to_thread(gridcall, "list", "--consumer", "nobody")
        assert unknown.returncode == 2 and "no consumer 'nobody'" in unknown.stderr
    finally:
        await consumer.store.parking.unpark((await consumer.store.parking.parked(consumer.name))[0].id)
        await app.state.ctx.db.dispose()
