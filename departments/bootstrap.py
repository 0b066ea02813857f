"""The departments service wired from a Context: its store and consumer (assignments become
tickets), one consumer per unit with an adapter's updates topic, the kernel's delivery worker
over the units' webhooks (a lane per unit) with its gauges, the pruner's horizon for those
deliveries, and the routes (the staff API, the adapters' endpoints, the AsyncAPI document, the
console)."""

from collections.abc import Awaitable
from datetime import timedelta

from fastapi import APIRouter

from departments import api, console, tables
from departments.adapters import api as adapters_api
from departments.adapters import asyncapi, signing
from departments.adapters.handlers import decoder
from departments.adapters.outbound import Outbound
from departments.adapters.usecases import AdapterOps, inbox_name, updates_topic
from departments.adapters.workers import CHANNEL, Webhooks, failed, gone, switched_off
from departments.handlers import handlers
from departments.repository import load_tickets
from departments.usecases.queue import Queues
from departments.usecases.staff import Accounts
from departments.usecases.tickets import Desk
from services.delivery.tables import retention
from services.delivery.worker import Lane, Worker
from services.district.clock import Clock
from services.district.events import Stream
from services.messaging.consumer import TopicConsumer
from services.messaging.transaction import Store
from services.runtime.context import Context, ServiceParts
from services.runtime.lifecycle import Stop
from services.runtime.settings import Settings
from services.storage.db import Database

NAME = "departments"


def store_of(db: Database, clock: Clock, settings: Settings) -> Store:
    """Departments' store outside its service: what the CLI's account changes emit goes into
    its outbox, and the running service's relay publishes it."""
    return Store(
        db,
        source=f"/{NAME}",
        outbox=tables.outbox,
        inbox=tables.inbox,
        deadletters=tables.deadletters,
        clock=clock,
        topic=settings.topic,
    )


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    prefix = ctx.settings.topic_prefix
    out = Outbound.of(ctx.jurisdiction, prefix, ctx.settings.retry_schedule[0])
    consumer = ctx.consumer(NAME, store, handlers(out), [Stream.CASES], lock=load_tickets)
    # a configured adapter without its secret fails start-up, naming it
    keys = signing.adapter_keys(ctx.jurisdiction, ctx.settings.environment(*signing.secret_names(ctx.jurisdiction)))
    urls = {unit: str(a.url) for unit, a in out.adapters.items() if a.url is not None}
    timeout = ctx.settings.adapter_timeout
    webhooks = Worker(
        ctx.db,
        ctx.clock,
        tables.deliveries,
        {CHANNEL: Webhooks(ctx.clock, urls, keys, timeout=timeout)},
        service=NAME,
        schedule=ctx.settings.retry_schedule,
        receipt_wait=ctx.settings.delivery_receipt_wait,
        lanes=[Lane(CHANNEL, unit) for unit in sorted(urls)],  # one department's outage delays no other's
        lease=timeout * 2 + 10,
        interval=ctx.settings.relay_interval,
        metrics=ctx.metrics,
        held=switched_off,
        on_gone=gone,
        on_failed=failed(store),
    )
    ctx.metrics.probe(webhooks.gauges)
    accounts = Accounts(ctx.db, ctx.clock, ctx.authenticator, ctx.jurisdiction, store)
    desk = Desk(store, ctx.jurisdiction)
    queues = Queues(store, ctx.jurisdiction, accounts)
    updates = [
        TopicConsumer(
            f"{prefix}.{NAME}.adapter.{unit.id}",
            store,
            ctx.bus,
            [updates_topic(prefix, unit.id)],
            decoder(desk, unit.id),
            inbox=inbox_name(unit.id),
            batch=ctx.settings.consumer_batch,
        )
        for unit in ctx.jurisdiction.units
        if unit.adapter is not None and unit.adapter.kafka
    ]
    routes = APIRouter()
    routes.include_router(api.router(desk, accounts, queues))
    routes.include_router(adapters_api.router(desk, keys, AdapterOps(ctx.db, ctx.clock, ctx.jurisdiction)))
    routes.include_router(asyncapi.router())
    # the staff console at /console, on the API's origin
    routes.include_router(console.router(ctx.jurisdiction, ctx.policy))

    def deliver(stop: Stop) -> Awaitable[None]:
        return webhooks.run(stop)

    topics = [*out.topics(), *(t for c in updates for t in c.topics)]
    kept = retention(tables.deliveries, timedelta(days=ctx.settings.delivery_retention_days))
    return ServiceParts(
        NAME, routes, store, consumers=[consumer, *updates], workers=[deliver], topics=topics, horizons=[kept]
    )
