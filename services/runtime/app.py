"""The app that runs a set of services (one in distributed mode, all four in embedded mode):
their routes, their loops under supervision, /healthz and /metrics. What it is built from is
the Context (services/runtime/context.py)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select, text

from services.district.events import Stream
from services.messaging import deadletters
from services.messaging.consumer import Consumer
from services.messaging.relay import Relay
from services.messaging.transaction import Store
from services.runtime.context import Context, ServiceParts
from services.runtime.drain import CloseWhileDraining, Draining
from services.runtime.failpoints import Failpoints
from services.runtime.health import Alive, Readiness, Schema, readiness
from services.runtime.lifecycle import Stop
from services.runtime.logs import CASE_ID
from services.runtime.metrics import CONTENT_TYPE, Instrument, Metrics
from services.runtime.retry import Backoff, Stopped, always, describe, retry
from services.storage.pruning import Horizon, Pruner
from services.web import edge
from services.web.deadletters import router as deadletter_routes
from services.web.directory import Health, Unhealthy, directory
from services.web.openapi import describe_answers

log = logging.getLogger(__name__)


async def supervise(name: str, loop: Callable[[Stop], Awaitable[None]], stop: Stop) -> None:
    """Keep a background loop alive until asked to stop: a crash is logged and the loop
    started again after a pause."""
    try:
        await retry(partial(loop, stop), what=name, stop=stop, retry_on=always, backoff=Backoff(0.5, 10.0))
    except Stopped:
        pass


def create_app(
    ctx: Context,
    parts: Sequence[ServiceParts],
    *,
    title: str,
    schemas: Mapping[str, Schema] | None = None,
) -> FastAPI:
    """The app of `parts`; `schemas`: each service's migrations as this release knows them (readiness)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.gather(*(check() for p in parts for check in p.checks))
        await ctx.bus.start()
        streams = [ctx.settings.topic(s) for s in Stream]
        await ctx.bus.ensure_topics(list(dict.fromkeys([*streams, *(t for p in parts for t in p.topics)])))
        loops: list[tuple[str, Callable[[Stop], Awaitable[None]]]] = []
        failpoints = Failpoints(ctx.settings.failpoints)
        relayed = [
            (f"{p.name}.relay", Relay(p.store, ctx.bus, interval=ctx.settings.relay_interval, failpoints=failpoints))
            for p in parts
        ]
        inbox_horizon = timedelta(days=ctx.settings.inbox_horizon_days)
        for p in parts:
            loops += [(c.name, c.run) for c in p.consumers]
            loops += [(f"{p.name}.worker", w) for w in p.workers]
            inbox = Horizon(p.store.inbox, p.store.inbox.c.handled_at, inbox_horizon)
            loops.append((f"{p.name}.pruner", Pruner(p.name, p.store.db, ctx.clock, [inbox, *p.horizons]).run))
        work, relaying = Stop(), Stop()
        tasks = [asyncio.create_task(supervise(n, fn, work), name=n) for n, fn in loops]
        relays = [asyncio.create_task(supervise(n, r.run, relaying), name=n) for n, r in relayed]
        try:
            yield
        finally:
            # The server has finished its requests; the writers finish what those requests
            # submitted; the consumers and workers finish their step and commit; then the relays
            # publish what all of them wrote. Only what does not end within the grace is cancelled.
            loop = asyncio.get_running_loop()
            grace = ctx.settings.shutdown_grace
            ends = loop.time() + grace
            await asyncio.gather(*(g.close() for p in parts for g in p.group_commits))
            work.set()
            await _finish(tasks, ends - loop.time() - max(1.0, grace / 4))  # a quarter kept for the relays
            relaying.set()
            await _finish(relays, ends - loop.time())
            await ctx.bus.stop()
            await ctx.db.dispose()

    # The edge's guard is a dependency of the app, so every route has it, present and future.
    # No native OpenTelemetry: gridcall configures none, and FastAPI would otherwise look up the
    # global providers on every request to find that out.
    app = FastAPI(
        title=title,
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(edge.guard), Depends(case_in_path)],
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.authenticator = ctx.authenticator
    app.state.draining = draining = Draining()
    app.state.ctx = ctx
    app.state.parts = parts
    app.state.metrics = ctx.metrics
    consumers = [c for p in parts for c in p.consumers]
    app.include_router(directory(ctx.jurisdiction, title))
    for p in parts:
        app.include_router(p.router)
    app.include_router(deadletter_routes(consumers))

    @app.get(
        "/healthz",
        tags=["ops"],
        response_model=Health,
        responses={503: {"model": Unhealthy, "description": "the database cannot be reached"}},
    )
    async def healthz() -> JSONResponse:
        try:
            async with ctx.db.sessions() as s:
                await s.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("healthz: the database is not answering: %s", describe(exc))
            return JSONResponse({"status": "unavailable", "database": "not answering"}, status_code=503)
        parked = await deadletters.counts(consumers)
        return JSONResponse({"status": "ok", "services": [p.name for p in parts], "deadletters": sum(parked.values())})

    @app.get("/livez", tags=["ops"], response_model=Alive)
    async def livez() -> dict[str, str]:
        """The process answers (nothing else is asked: a liveness probe that named a dependency
        would restart every replica in a database outage)."""
        return {"status": "alive"}

    @app.get(
        "/readyz",
        tags=["ops"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready: what is missing, by check"}},
    )
    async def readyz() -> JSONResponse:
        """Ready to serve: the database answers and its tables are at the migrations' head (a 503
        names what is missing). A broker that does not answer or a stuck relay is reported in
        `degraded` and leaves the process ready (services/runtime/health.py says why)."""
        failing, degraded = await readiness(ctx.db, ctx.bus, parts, schemas or {}, ctx.settings.ready_outbox_age)
        if draining:
            failing["draining"] = "asked to stop: finishing what it has, taking nothing new"
        if failing or degraded:
            log.warning("readyz: %s", "; ".join(f"{k}: {v}" for k, v in {**failing, **degraded}.items()))
        body = {"status": "not ready" if failing else "ready", "failing": failing, "degraded": degraded}
        return JSONResponse(body, status_code=503 if failing else 200)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus' scrape: no token, like every exporter's (keep the port off the internet)."""
        return Response(await ctx.metrics.render(), media_type=CONTENT_TYPE)

    for p in parts:
        ctx.metrics.probe(partial(_outbox_gauges, p.store))
    ctx.metrics.probe(partial(_deadletter_gauges, ctx.metrics, consumers))

    renderers = {prefix: r for p in parts for prefix, r in p.error_renderers.items()}
    edge.install(app, renderers)
    describe_answers(app, own=list(renderers))
    app.add_middleware(CloseWhileDraining, draining=draining)
    app.add_middleware(Instrument, metrics=ctx.metrics, router=app.router)  # outermost: it sees the edge's answers too
    return app


async def _finish(tasks: Sequence["asyncio.Task[None]"], within: float) -> None:
    """Wait for loops asked to stop; cancel those still running after `within` seconds."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=max(within, 0.1))
    for t in late:
        log.warning("%s did not stop within the shutdown grace; cancelling it", t.get_name())
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def case_in_path(request: Request) -> None:
    """A request about one case (`{case_id}` in its path) names it in its log lines."""
    if (case_id := request.path_params.get("case_id")) is not None:
        CASE_ID.set(case_id)


async def _outbox_gauges(store: Store) -> None:
    table = store.outbox
    async with store.db.sessions() as s:
        count, oldest = (await s.execute(select(func.count(), func.min(table.c.created_at)))).one()
    # How long rows have waited in the real world: `created_at` is the database's own stamp
    # (server_default now()), so it is read against the wall clock, not the injected one.
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    m = store.metrics
    m.child(m.outbox_backlog, (store.service,)).set(count)
    m.child(m.outbox_age, (store.service,)).set(max(age, 0.0))


async def _deadletter_gauges(metrics: Metrics, consumers: Sequence[Consumer]) -> None:
    for name, count in (await deadletters.counts(consumers)).items():
        metrics.child(metrics.deadletters, (name,)).set(count)
