"""In embedded mode one app runs all four services: its ops endpoints cover every consumer."""

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from dispatcher import tables as dispatcher_tables
from gridcall.app import build_app
from services.district.clock import SystemClock
from services.district.events import CaseReported, Location
from services.messaging.bus import Record
from services.messaging.envelope import Envelope
from services.web.auth import Authenticator
from tests.support.journey import bearer


async def test_one_app_lists_and_redrives_the_dead_letters_of_every_service(embedded_settings):
    app = build_app(embedded_settings)
    consumers = {c.name.rpartition(".")[2]: c for p in app.state.parts for c in p.consumers}
    assert set(consumers) == {"intake", "dispatcher", "departments", "notifier"}
    event = CaseReported(
        case_id="parked-case",
        category="garbage",
        description="bags",
        location=Location(lat=30.505, lon=114.305),
        grid_id="G11",
    )
    good = Envelope.wrap(event, source="/intake", time=SystemClock().now()).encode()
    dispatcher, notifier = consumers["dispatcher"], consumers["notifier"]
    await dispatcher.store.parking.park(
        dispatcher.name, Record("t", 0, 1, "parked-case", good), RuntimeError("was a bug")
    )
    await notifier.store.parking.park(notifier.name, Record("t", 0, 2, "junk", b"junk"), ValueError("not an event"))

    ops = Authenticator(embedded_settings.secret_key.get_secret_value(), SystemClock()).issue(
        "ops", ttl=timedelta(hours=1)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gridcall", headers=bearer(ops)) as c:
        listed = (await c.get("/v1/ops/deadletters")).json()
        assert listed["count"] == 2
        assert {d["consumer"] for d in listed["deadletters"]} == {dispatcher.name, notifier.name}
        assert (await c.get("/healthz")).json()["deadletters"] == 2

        redriven = (await c.post("/v1/ops/deadletters/redrive")).json()
        assert (redriven["handled"], redriven["failed"], redriven["remaining"]) == (1, 1, 1)
        assert [d["consumer"] for d in (await c.get("/v1/ops/deadletters")).json()["deadletters"]] == [notifier.name]

    async with app.state.ctx.db.sessions() as s:
        cases = dispatcher_tables.cases
        assert await s.scalar(select(func.count()).where(cases.c.case_id == "parked-case")) == 1
    await app.state.ctx.db.dispose()
