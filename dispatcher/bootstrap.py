from dispatcher import api, tables
from dispatcher.handlers import handlers
from services.events import Stream
from services.messaging import Consumer
from services.runtime import Context, ServiceParts

NAME = "dispatcher"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox)
    consumer = Consumer(
        f"{ctx.settings.topic_prefix}.{NAME}",
        store,
        ctx.bus,
        handlers(ctx.jurisdiction),
        [Stream.CASES, Stream.TICKETS],
    )
    return ServiceParts(NAME, api.router(ctx.db), store, consumers=[consumer])
