"""Notification delivery over a real HTTP webhook, with retries, on SQLite and on PostgreSQL."""

from datetime import timedelta

import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from notifier.bootstrap import bootstrap
from notifier.channels import LogChannel, WebhookChannel
from notifier.tables import deliveries, notifications
from notifier.workers import deliver_due
from services.district.events import CaseResolved
from services.messaging.envelope import Envelope
from services.runtime.context import build_context
from tests.support.apps import serve
from tests.support.clock import frozen_clock

pytestmark = pytest.mark.integration


@pytest.fixture
async def webhook():
    """A real HTTP server that fails the first `failures` calls with 503, then accepts."""
    app = FastAPI()
    app.state.received = []
    app.state.failures = 0

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        if app.state.failures > 0:
            app.state.failures -= 1
            return Response(status_code=503)
        app.state.received.append(await request.json())
        return Response(status_code=204)

    async with serve(app) as url:
        app.state.url = f"{url}/hook"
        yield app.state


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request):
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")


async def test_a_resolution_reaches_the_webhook_after_a_failed_attempt(settings, webhook):
    clock = frozen_clock()
    ctx = build_context(settings.model_copy(update={"notifier_webhook_url": webhook.url}), clock=clock)
    parts = bootstrap(ctx)
    consumer = parts.consumers[0]
    channels = [LogChannel(), WebhookChannel(webhook.url)]
    event = CaseResolved(case_id="c1", assignment_id="a1", unit_id="U-G11", note="Cleared")
    envelope = Envelope.wrap(event, source="/dispatcher", time=clock.now())
    async with parts.store.transaction() as tx:
        await consumer.handlers[CaseResolved](tx, envelope, event)

    webhook.failures = 1
    assert await deliver_due(parts.store, channels) == 2  # log succeeds, webhook gets a 503
    assert webhook.received == []
    assert await deliver_due(parts.store, channels) == 0  # the retry is not due yet

    clock.advance(timedelta(seconds=3))
    assert await deliver_due(parts.store, channels) == 1
    [message] = webhook.received
    assert message["case_id"] == "c1" and message["audience"] == "resident"
    assert message["message"] == "Your report has been resolved: Cleared"

    async with ctx.db.sessions() as s:
        rows = (await s.execute(select(deliveries.c.channel, deliveries.c.status, deliveries.c.attempts))).all()
    assert sorted(rows) == [("log", "delivered", 1), ("webhook", "delivered", 2)]
    await ctx.db.dispose()


async def test_due_deliveries_go_out_a_batch_at_a_time_each_once(settings, webhook):
    """A batch is sent together and marked in one statement: every delivery once, attempt 1."""
    clock = frozen_clock()
    ctx = build_context(settings.model_copy(update={"notifier_webhook_url": webhook.url}), clock=clock)
    parts = bootstrap(ctx)
    handle = parts.consumers[0].handlers[CaseResolved]
    async with parts.store.transaction() as tx:
        for i in range(5):
            event = CaseResolved(case_id=f"batch-{i}", assignment_id=f"a{i}", unit_id="U-G11", note=f"Done {i}")
            await handle(tx, Envelope.wrap(event, source="/dispatcher", time=clock.now()), event)

    channels = [LogChannel(), WebhookChannel(webhook.url)]  # a delivery per channel: ten
    assert [await deliver_due(parts.store, channels, batch=4) for _ in range(4)] == [4, 4, 2, 0]
    assert sorted(m["case_id"] for m in webhook.received) == [f"batch-{i}" for i in range(5)]
    async with ctx.db.sessions() as s:
        rows = (
            await s.execute(
                select(deliveries.c.status, deliveries.c.attempts, deliveries.c.delivered_at)
                .join(notifications, notifications.c.id == deliveries.c.notification_id)
                .where(notifications.c.case_id.startswith("batch-"))
            )
        ).all()
    assert len(rows) == 10 and set(rows) == {("delivered", 1, clock.now())}
    await ctx.db.dispose()
