"""Notification delivery over a real HTTP webhook, with retries, on the embedded database."""

import asyncio
from datetime import timedelta

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from notifier.bootstrap import bootstrap
from notifier.channels import LogChannel, WebhookChannel
from notifier.handlers import deliver_due
from notifier.tables import deliveries
from services.clock import FrozenClock
from services.events import CaseResolved, Envelope
from services.runtime import build_context
from tests.support.servers import free_port
from tests.support.waiting import eventually


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

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started)
    app.state.url = f"http://127.0.0.1:{port}/hook"
    yield app.state
    server.should_exit = True
    await task


async def test_a_resolution_reaches_the_webhook_after_a_failed_attempt(embedded_settings, webhook):
    clock = FrozenClock()
    ctx = build_context(embedded_settings.model_copy(update={"notifier_webhook_url": webhook.url}), clock=clock)
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
