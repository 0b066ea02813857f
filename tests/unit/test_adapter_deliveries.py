"""The webhook delivery worker on SQLite with a stand-in department (httpx's MockTransport):
the retry schedule and its jitter, Retry-After, 410 switching the adapter off until ops switch
it on, dead after the last attempt and a re-drive, order per case, and each attempt signed
afresh with the same webhook-id (checked with the reference library)."""

import json
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from departments.adapters.signing import key_of, new_secret
from departments.adapters.usecases import AdapterOps
from departments.adapters.workers import Webhooks
from departments.tables import deliveries
from services.delivery import retries
from services.delivery.retries import Verdict
from services.district.jurisdiction import load_jurisdiction
from services.runtime.settings import parse_schedule
from services.storage.db import Database
from tests.support.adapters import district_with_adapters
from tests.support.clock import frozen_clock

SCHEDULE = [0.0, 5.0, 300.0]
SECRET = new_secret()


def test_the_schedule_with_jitter_then_dead():
    rng = random.Random(7)
    assert retries.after(SCHEDULE, 1, 200).verdict is Verdict.DELIVERED
    for attempts, base in [(1, 5.0), (2, 300.0)]:
        step = retries.after(SCHEDULE, attempts, 500, None, rng)
        assert step.verdict is Verdict.RETRY
        assert base * 0.8 <= step.delay <= base * 1.2
    assert retries.after(SCHEDULE, 3, None).verdict is Verdict.DEAD  # a timeout counts as a failure
    assert retries.after(SCHEDULE, 1, 410).verdict is Verdict.GONE


def test_retry_after_is_honoured_on_429_and_503_only():
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert retries.retry_after("120", now) == 120
    assert retries.retry_after("Tue, 01 Dec 2026 08:01:00 GMT", now) == 60
    assert retries.retry_after("soon", now) is None
    assert retries.after(SCHEDULE, 1, 503, 42.0) == retries.Next(Verdict.RETRY, 42.0)
    assert retries.after(SCHEDULE, 1, 429, 10**9).delay == retries.MOST_RETRY_AFTER
    assert retries.after(SCHEDULE, 1, 500, 42.0, random.Random(1)).delay != 42.0
    assert retries.after(SCHEDULE, 3, 503, 42.0).verdict is Verdict.DEAD


def test_the_schedule_setting():
    assert parse_schedule("0s,5s,5m,30m,2h,5h,10h,10h") == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    assert parse_schedule("0s, 500ms,1s") == [0, 0.5, 1]
    with pytest.raises(ValueError):
        parse_schedule("5 minutes")


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


def worker(db, clock, department, schedule=SCHEDULE) -> Webhooks:
    return Webhooks(
        db,
        clock,
        {"D-BUS": "http://dept.example/hook"},
        {"D-BUS": key_of(SECRET)},
        schedule=schedule,
        timeout=2,
        rng=random.Random(3),
        transport=httpx.MockTransport(department),
    )


async def pending(db, clock, *messages: tuple[str, str]) -> None:
    rows = [
        {
            "msg_id": msg_id,
            "unit_id": "D-BUS",
            "case_id": case_id,
            "event_type": "gridcall.case.assigned",
            "body": json.dumps({"id": msg_id, "subject": case_id}),
            "state": "pending",
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
    assert await hooks.deliver_due("D-BUS") == 2  # m2 waits for m1, of the same case
    assert [m for m, _ in dept.got] == ["m1", "m3"]
    assert await hooks.deliver_due("D-BUS") == 0  # not due yet
    for _ in range(2):
        clock.advance(timedelta(hours=1))
        await hooks.deliver_due("D-BUS")
    assert [m for m, _ in dept.got] == ["m1", "m3", "m1", "m3", "m1"]
    assert (
        len({s for (m, _), s in zip(dept.got, dept.stamps, strict=True) if m == "m1"}) == 3
    )  # each retry signed afresh, at its own time
    assert (await states(db))["m1"] == ("dead", 3, 503)
    assert await hooks.deliver_due("D-BUS") == 0  # the dead m1 still holds m2, of its case, back
    assert (await states(db))["m2"][0] == "pending"

    ops = ops_of(db, clock)
    [dead] = (await ops.deliveries("dead", "D-BUS")).deliveries
    assert (dead.msg_id, dead.last_error, dead.next_attempt_at) == ("m1", "HTTP 503", None)
    await ops.redrive(dead.id)
    await hooks.deliver_due("D-BUS")
    await hooks.deliver_due("D-BUS")
    got = [m for m, _ in dept.got]
    assert got.count("m1") == 4  # three failures, then once after the re-drive
    assert got.count("m2") == 1 and got.index("m2") > len(got) - 2  # after m1, never before
    assert (await states(db))["m1"] == ("delivered", 1, 200)
    assert (await states(db))["m2"] == ("delivered", 1, 200)


async def test_retry_after_sets_the_next_attempt(db, ops_of):
    clock = frozen_clock()
    hooks = worker(db, clock, Department(headers={"Retry-After": "120"}, m1=[429]))
    await pending(db, clock, ("m1", "C1"))
    await hooks.deliver_due("D-BUS")
    [row] = (await ops_of(db, clock).deliveries()).deliveries
    assert row.next_attempt_at == clock.now() + timedelta(seconds=120)
    clock.advance(timedelta(seconds=119))
    assert await hooks.deliver_due("D-BUS") == 0
    clock.advance(timedelta(seconds=1))
    assert await hooks.deliver_due("D-BUS") == 1


async def test_410_switches_the_adapter_off_until_ops_switch_it_on(db, ops_of, caplog):
    clock = frozen_clock()
    dept = Department(m1=[410])
    hooks = worker(db, clock, dept)
    await pending(db, clock, ("m1", "C1"))
    await hooks.deliver_due("D-BUS")
    assert "disabled" in caplog.text
    await pending(db, clock, ("m2", "C2"))
    assert await hooks.deliver_due("D-BUS") == 0  # everything waits, m1 too
    ops = ops_of(db, clock)
    [state] = await ops.adapters()
    assert (state.unit_id, state.enabled, state.pending) == ("D-BUS", False, 2)
    assert (await ops.enable("D-BUS")).enabled
    assert await hooks.deliver_due("D-BUS") == 2
    assert await states(db) == {"m1": ("delivered", 1, 200), "m2": ("delivered", 1, 200)}  # a 410 is no attempt
