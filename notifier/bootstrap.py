from collections.abc import Awaitable

from notifier import api, tables
from notifier.channels import Channel, LogChannel, WebhookChannel
from notifier.handlers import delivery_loop, handlers
from services.district.events import Stream
from services.runtime.context import Context, ServiceParts
from services.runtime.lifecycle import Stop

NAME = "notifier"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    channels: list[Channel] = [LogChannel()]
    if ctx.settings.notifier_webhook_url:
        channels.append(WebhookChannel(ctx.settings.notifier_webhook_url))
    consumer = ctx.consumer(NAME, store, handlers(channels), [Stream.CASES])

    def worker(stop: Stop) -> Awaitable[None]:
        return delivery_loop(stop, store, channels, interval=ctx.settings.relay_interval)

    return ServiceParts(NAME, api.router(ctx.db), store, consumers=[consumer], workers=[worker])
