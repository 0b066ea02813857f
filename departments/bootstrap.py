from fastapi import APIRouter

from departments import api, console, tables
from departments.adapters import signing
from departments.desk import Desk
from departments.handlers import handlers, load_tickets
from departments.staff import Accounts
from services.events import Stream
from services.runtime import Context, ServiceParts

NAME = "departments"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    consumer = ctx.consumer(NAME, store, handlers(), [Stream.CASES], lock=load_tickets)
    signing.adapter_keys(ctx.jurisdiction)  # a configured adapter without its secret fails start-up, naming it
    accounts = Accounts(ctx.db, ctx.clock, ctx.authenticator, ctx.jurisdiction)
    routes = APIRouter()
    routes.include_router(api.router(Desk(store, ctx.jurisdiction), accounts))
    routes.include_router(console.router(ctx.policy))  # the staff console at /console, on the API's origin
    return ServiceParts(NAME, routes, store, consumers=[consumer])
