from fastapi import APIRouter

from departments import api, console, tables
from departments.adapters import asyncapi, inbound, signing
from departments.desk import Desk
from departments.handlers import handlers, load_tickets
from departments.staff import Accounts
from services.events import Stream
from services.messaging import TopicConsumer
from services.runtime import Context, ServiceParts

NAME = "departments"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    consumer = ctx.consumer(NAME, store, handlers(), [Stream.CASES], lock=load_tickets)
    keys = signing.adapter_keys(ctx.jurisdiction)  # a configured adapter without its secret fails start-up, naming it
    accounts = Accounts(ctx.db, ctx.clock, ctx.authenticator, ctx.jurisdiction)
    desk = Desk(store, ctx.jurisdiction)
    prefix = ctx.settings.topic_prefix
    updates = [
        TopicConsumer(
            f"{prefix}.{NAME}.adapter.{unit.id}",
            store,
            ctx.bus,
            [inbound.updates_topic(prefix, unit.id)],
            inbound.decoder(desk, unit.id),
            inbox=inbound.inbox_name(unit.id),
            batch=ctx.settings.consumer_batch,
        )
        for unit in ctx.jurisdiction.units
        if unit.adapter is not None and unit.adapter.kafka
    ]
    routes = APIRouter()
    routes.include_router(api.router(desk, accounts))
    routes.include_router(inbound.router(desk, keys))
    routes.include_router(asyncapi.router())
    routes.include_router(console.router(ctx.policy))  # the staff console at /console, on the API's origin
    topics = [t for c in updates for t in c.topics]
    return ServiceParts(NAME, routes, store, consumers=[consumer, *updates], topics=topics)
