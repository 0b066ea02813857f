"""Wires the notifier from a `Context`: its store, the channels (log, and a webhook when one is
configured, with the settings' timeout), the consumer of the cases topic, the delivery worker
and the ops API."""

from collections.abc import Awaitable

from notifier import api, tables
from notifier.channels import Channel, LogChannel, WebhookChannel
from notifier.handlers import handlers
from notifier.workers import delivery_loop
from services.district.events import Stream
from services.runtime.context import Context, ServiceParts
from services.runtime.lifecycle import Stop

NAME = "notifier"


def bootstrap(ctx: Context) -> ServiceParts:
    settings = ctx.settings
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    channels: list[Channel] = [LogChannel()]
    if settings.notifier_webhook_url:
        channels.append(WebhookChannel(settings.notifier_webhook_url, timeout=settings.notifier_timeout))
    consumer = ctx.consumer(NAME, store, handlers(channels), [Stream.CASES])

    def worker(stop: Stop) -> Awaitable[None]:
        return delivery_loop(
            stop, store, channels, interval=settings.relay_interval, attempts=settings.notifier_attempts
        )

    return ServiceParts(NAME, api.router(ctx.db), store, consumers=[consumer], workers=[worker])
