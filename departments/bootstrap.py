from departments import api, tables
from departments.desk import Desk
from departments.handlers import handlers, load_tickets
from departments.staff import Accounts
from services.events import Stream
from services.runtime import Context, ServiceParts

NAME = "departments"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    consumer = ctx.consumer(NAME, store, handlers(), [Stream.CASES], lock=load_tickets)
    accounts = Accounts(ctx.db, ctx.clock, ctx.authenticator, ctx.jurisdiction)
    return ServiceParts(NAME, api.router(Desk(store, ctx.jurisdiction), accounts), store, consumers=[consumer])
