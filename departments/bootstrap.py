from departments import api, tables
from departments.handlers import Desk, handlers, load_tickets
from services.events import Stream
from services.runtime import Context, ServiceParts

NAME = "departments"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    consumer = ctx.consumer(NAME, store, handlers(), [Stream.CASES], lock=load_tickets)
    return ServiceParts(NAME, api.router(Desk(store, ctx.jurisdiction)), store, consumers=[consumer])
