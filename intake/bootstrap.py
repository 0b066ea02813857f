from intake import api, tables
from intake.handlers import HANDLERS
from services.events import Stream
from services.messaging import Consumer
from services.ratelimit import RateLimit
from services.runtime import Context, ServiceParts

NAME = "intake"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox)
    consumer = Consumer(f"{ctx.settings.topic_prefix}.{NAME}", store, ctx.bus, HANDLERS, [Stream.CASES])
    return ServiceParts(
        NAME,
        api.router(store, ctx.jurisdiction, ctx.policy, ctx.authenticator, RateLimit(ctx.settings.rate_limit)),
        store,
        consumers=[consumer],
    )
