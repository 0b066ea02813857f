from departments import api, tables
from departments.handlers import HANDLERS, Desk
from services.events import Stream
from services.runtime import Context, ServiceParts

NAME = "departments"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    consumer = ctx.consumer(NAME, store, HANDLERS, [Stream.CASES])
    return ServiceParts(NAME, api.router(Desk(store, ctx.jurisdiction)), store, consumers=[consumer])
