"""The adapters' webhook deliveries on SQLite (the kernel's worker with the adapters' sender and
hooks) with a stand-in department (httpx's MockTransport): Retry-After, 410 switching the
adapter off until ops switch it on, dead after the last attempt and a re-drive, order per case,
and each attempt signed afresh with the same webhook-id (checked with the reference library).
The schedule's arithmetic is tests/unit/test_delivery_retries.py's."""

import json
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from departments.adapters.signing import key_of, new_secret
from departments.adapters.usecases import AdapterOps
from departments.adapters.workers import CHANNEL, Webhooks, gone, switched_off
from departments.tables import deliveries
from services.delivery.worker import Lane, Worker
from services.district.jurisdiction import load_jurisdiction
from services.storage.db import Database
from tests.support.adapters import district_with_adapters
from tests.support.clock import frozen_clock

SCHEDULE = [0.0, 5.0, 300.0]
SECRET = new_secret()
LANE = Lane(CHANNEL, "D-BUS")


class Department:
    """Answers a message with the next status its `script` has for it (then 200), recording what it got."""

    def __init__(self, headers: dict[str, str] | None = None, **script: list[int]) -> None:
        self.script = script
        self.headers = headers or {}
        self.got: list[tuple[str, dict]] = []
        self.stamps: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        assert request.headers["content-type"] == "application/cloudevents+json"
        msg_id, stamp = request.headers["webhook-id"], int(request.headers["webhook-timestamp"])
        when = datetime.fromtimestamp(stamp, UTC)  # the frozen clock's time: the library's own check would refuse it
        assert request.headers["webhook-signature"] == Webhook(SECRET).sign(msg_id, when, body.decode())
        self.stamps.append(stamp)
        self.got.append((request.headers["webhook-id"], json.loads(body)))
        waiting = self.script.get(msg_id) or [200]
        status = waiting.pop(0)
        return httpx.Response(status, headers=self.headers if status != 200 else {})


@pytest.fixture
def ops_of(tmp_path):
    adapter = {"url": "http://dept.example/hook", "secret_env": "GRIDCALL_ADAPTER_SECRET_D_BUS"}
    j = load_jurisdiction(district_with_adapters(tmp_path / "district.yaml", {"D-BUS": adapter}))
    return lambda db, clock: AdapterOps(db, clock, j)


@pytest.fixture
async def db(embedded_settings):
    database = Database(embedded_settings.db_url)
    yield database
    await database.dispose()


def worker(db, clock, department, schedule=SCHEDULE) -> Worker:
    sender = Webhooks(
        clock,
        {"D-BUS": "http://dept.example/hook"},
        {"D-BUS": key_of(SECRET)},
        timeout=2,
        transport=httpx.MockTransport(department),
    )
    return Worker(
        db,
        clock,
        deliveries,
        {CHANNEL: sender},
        service="departments",
        schedule=schedule,
        receipt_wait=600,
        lanes=[LANE],
        rng=random.Random(3),
        held=switched_off,
        on_gone=gone,
    )


async def pending(db, clock, *messages: tuple[str, str]) -> None:
    rows = [
        {
            "msg_id": msg_id,
            "channel": CHANNEL,
            "destination": "D-BUS",
            "case_id": case_id,
            "sequence": f"D-BUS/{case_id}",
            "kind": "gridcall.case.assigned",
            "body": json.dumps({"id": msg_id, "subject": case_id}),
            "state": "created",
            "attempts": 0,
            "next_attempt_at": clock.now(),
            "created_at": clock.now(),
        }
        for msg_id, case_id in messages
    ]
    async with db.transaction() as s:
        await s.execute(deliveries.insert(), rows)


async def states(db) -> dict[str, tuple[str, int, int | None]]:
    async with db.sessions() as s:
        rows = (await s.execute(deliveries.select().order_by(deliveries.c.id))).all()
    return {r.msg_id: (r.state, r.attempts, r.last_status) for r in rows}


async def test_in_order_per_case_retried_then_dead_then_redriven_once(db, ops_of):
    clock = frozen_clock()
    dept = Department(m1=[503, 503, 503], m3=[503])
    hooks = worker(db, clock, dept)
    await pending(db, clock, ("m1", "C1"), ("m2", "C1"), ("m3", "C2"))
    assert await hooks.deliver_due(LANE) == 2  # m2 waits for m1, of the same case
    assert [m for m, _ in dept.got] == ["m1", "m3"]
    assert await hooks.deliver_due(LANE) == 0  # not due yet
    for _ in range(2):
        clock.advance(timedelta(hours=1))
        await hooks.deliver_due(LANE)
    assert [m for m, _ in dept.got] == ["m1", "m3", "m1", "m3", "m1"]
    assert (
        len({s for (m, _), s in zip(dept.got, dept.stamps, strict=True) if m == "m1"}) == 3
    )  # each retry signed afresh, at its own time
    assert (await states(db))["m1"] == ("dead", 3, 503)
    assert await hooks.deliver_due(LANE) == 0  # the dead m1 still holds m2, of its case, back
    assert (await states(db))["m2"][0] == "created"

    ops = ops_of(db, clock)
    [dead] = (await ops.deliveries("dead", "D-BUS")).deliveries
    assert (dead.msg_id, dead.last_error, dead.next_attempt_at) == ("m1", "HTTP 503", None)
    await ops.redrive(dead.id)
    await hooks.deliver_due(LANE)
    await hooks.deliver_due(LANE)
    got = [m for m, _ in dept.got]
    assert got.count("m1") == 4  # three failures, then once after the re-drive
    assert got.count("m2") == 1 and got.index("m2") > len(got) - 2  # after m1, never before
    assert (await states(db))["m1"] == ("delivered", 1, 200)
    assert (await states(db))["m2"] == ("delivered", 1, 200)


async def test_retry_after_sets_the_next_attempt(db, ops_of):
    clock = frozen_clock()
    hooks = worker(db, clock, Department(headers={"Retry-After": "120"}, m1=[429]))
    await pending(db, clock, ("m1", "C1"))
    await hooks.deliver_due(LANE)
    [row] = (await ops_of(db, clock).deliveries()).deliveries
    assert row.next_attempt_at == clock.now() + timedelta(seconds=120)
    clock.advance(timedelta(seconds=119))
    assert await hooks.deliver_due(LANE) == 0
    clock.advance(timedelta(seconds=1))
    assert await hooks.deliver_due(LANE) == 1


async def test_410_switches_the_adapter_off_until_ops_switch_it_on(db, ops_of, caplog):
    clock = frozen_clock()
    dept = Department(m1=[410])
    hooks = worker(db, clock, dept)
    await pending(db, clock, ("m1", "C1"))
    await hooks.deliver_due(LANE)
    assert "disabled" in caplog.text
    await pending(db, clock, ("m2", "C2"))
    assert await hooks.deliver_due(LANE) == 0  # everything waits, m1 too
    ops = ops_of(db, clock)
    [state] = await ops.adapters()
    assert (state.unit_id, state.enabled, state.pending) == ("D-BUS", False, 2)
    assert (await ops.enable("D-BUS")).enabled
    assert await hooks.deliver_due(LANE) == 2
    assert await states(db) == {"m1": ("delivered", 1, 200), "m2": ("delivered", 1, 200)}  # a 410 is no attempt
