"""Wires the dispatcher from a `Context`: its store, the consumer of cases and tickets with the
`Router`'s handlers, the timer worker, the ops API and the live board, and the gauges."""

from datetime import timedelta

from fastapi import APIRouter

from dispatcher import api, board, tables, usecases
from dispatcher.domain import Router
from dispatcher.handlers import handlers, lock_cases
from dispatcher.workers import TimerWorker
from services.district.events import Stream
from services.runtime.context import Context, ServiceParts

NAME = "dispatcher"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    router = Router(ctx.jurisdiction, ctx.policy)
    consumer = ctx.consumer(NAME, store, handlers(router), [Stream.CASES, Stream.TICKETS], lock=lock_cases(router))
    worker = TimerWorker(
        store, router, interval=ctx.settings.timer_interval, lease=timedelta(seconds=ctx.settings.timer_lease)
    )
    ops = APIRouter()
    ops.include_router(api.router(ctx.db, ctx.clock, ctx.jurisdiction, ctx.policy))
    ops.include_router(api.figures_router(ctx.db, ctx.clock, ctx.jurisdiction, ctx.policy))
    ops.include_router(board.router(ctx.db, ctx.clock, ctx.jurisdiction, ctx.policy))  # the live board at /ops
    parts = ServiceParts(NAME, ops, store, consumers=[consumer], workers=[worker.run])
    parts.extras["timers"] = worker
    ctx.metrics.probe(worker.gauges)
    ctx.metrics.probe(usecases.rates_probe(ctx.db, ctx.clock, ctx.policy, ctx.metrics))
    return parts
