"""The departments consumer with adapters, on SQLite and PostgreSQL: an assignment, an
unassignment and a reopening of a unit with an adapter become one CloudEvent each, as a
webhook delivery (created, in the unit's and case's sequence) and as an outbox record for the
unit's assignments topic, in the consumer's transaction; the contact only for a unit
configured to receive it; a redelivered batch makes no second message."""

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from departments.bootstrap import bootstrap as departments_bootstrap
from departments.tables import deliveries, outbox
from services.district.events import CaseContactGiven, CaseReopened
from services.runtime.context import Context, build_context
from services.runtime.settings import Settings
from tests.integration.test_set_based_consumers import as_one_batch, assigned, records, unassigned
from tests.support.adapters import district_with_adapters, secret_env
from tests.support.clock import frozen_clock

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")  # type: ignore[no-any-return]


@pytest.fixture
async def ctx(base, tmp_path, monkeypatch) -> AsyncIterator[Context]:
    adapter = {"url": "http://127.0.0.1:9/hook", "secret_env": secret_env("U-G11"), "kafka": True, "contact": True}
    district = district_with_adapters(tmp_path / "district.yaml", {"U-G11": adapter})
    monkeypatch.setenv(secret_env("U-G11"), "whsec_" + "A" * 44)
    settings = base.model_copy(update={"jurisdiction_file": district})
    context = build_context(settings, clock=frozen_clock())
    yield context
    await context.db.dispose()


async def test_messages_in_the_consumers_transaction_once(ctx):
    consumer = departments_bootstrap(ctx).consumers[0]
    case = f"c-{uuid.uuid4().hex[:8]}"
    reported = CaseContactGiven(case_id=case, contact={"name": "Li", "phone": "13800000000"})
    details = {"attributes": {"floor": 3}, "address": "3 Maple Lane", "media_urls": ["https://img.example/1.jpg"]}
    events = [
        reported,
        assigned(case, f"{case}-a1").model_copy(update={"details": details}),
        unassigned(case, f"{case}-a1"),
        CaseReopened(case_id=case, unit_id="U-G11", comment="still there"),
        assigned(case, f"{case}-a2", unit="D-SAN"),  # no adapter: no message
    ]
    batch = records(ctx, events)
    await as_one_batch(consumer, batch)
    await as_one_batch(consumer, batch)  # redelivered: nothing new

    async with ctx.db.sessions() as s:
        rows = (await s.execute(select(deliveries).where(deliveries.c.case_id == case).order_by(deliveries.c.id))).all()
        topic = f"{ctx.settings.topic_prefix}.dept.U-G11.assignments"
        published = (await s.execute(select(outbox).where(outbox.c.topic == topic, outbox.c.key == case))).all()
    types = ["gridcall.case.assigned", "gridcall.case.unassigned", "gridcall.case.reopened"]
    assert [r.kind for r in rows] == types
    assert all((r.state, r.attempts, r.channel, r.destination) == ("created", 0, "webhook", "U-G11") for r in rows)
    assert {r.sequence for r in rows} == {f"U-G11/{case}"}  # in order, per unit and case
    assert [json.loads(p.payload)["type"] for p in published] == types
    assert [p.payload.decode() for p in published] == [r.body for r in rows]  # one message, two faces
    first = json.loads(rows[0].body)
    assert first["id"] == rows[0].msg_id and first["subject"] == case
    data = first["data"]
    assert data["contact"] == {"name": "Li", "phone": "13800000000"}
    assert (data["address"], data["attributes"], data["media_urls"]) == (
        "3 Maple Lane",
        {"floor": 3},
        ["https://img.example/1.jpg"],
    )
    assert data["location"] is None and data["reporters"] == 1 and data["ticket_id"] == f"{case}-a1"
