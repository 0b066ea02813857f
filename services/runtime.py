"""What every service process shares: the context built from settings, and the app that
runs a set of services (one in distributed mode, all four in embedded mode)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Table, func, select, text

from services import deadletters, edge
from services.auth import Authenticator
from services.batching import GroupCommit
from services.bus import Bus
from services.bus.kafka import KafkaBus
from services.bus.local import LocalBus
from services.clock import Clock, SystemClock
from services.db import Database
from services.directory import Health, Unhealthy, directory
from services.edge import ErrorRenderer
from services.events import Event, Stream
from services.jurisdiction import Jurisdiction, load_jurisdiction
from services.lifecycle import Stop
from services.logs import CASE_ID
from services.messaging import Consumer, Handler, Lock, Relay, Store
from services.metrics import CONTENT_TYPE, Instrument, Metrics
from services.openapi import describe_answers
from services.policy import Policy, load_policy
from services.retry import Backoff, Stopped, always, describe, retry
from services.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Everything a service is built from; the one place that creates engine, bus and clock."""

    settings: Settings
    db: Database
    bus: Bus
    clock: Clock
    jurisdiction: Jurisdiction
    policy: Policy
    authenticator: Authenticator
    metrics: Metrics = field(default_factory=Metrics)

    def consumer(
        self,
        service: str,
        store: Store,
        handlers: Mapping[type[Event], Handler],
        streams: Sequence[Stream],
        *,
        lock: Lock | None = None,
    ) -> Consumer:
        """The service's consumer group on these streams."""
        name = f"{self.settings.topic_prefix}.{service}"
        return Consumer(name, store, self.bus, handlers, streams, lock=lock, batch=self.settings.consumer_batch)

    def store(self, source: str, *, outbox: Table, inbox: Table, deadletters: Table) -> Store:
        return Store(
            self.db,
            source=source,
            outbox=outbox,
            inbox=inbox,
            deadletters=deadletters,
            clock=self.clock,
            topic=lambda stream: self.settings.topic(stream),
            metrics=self.metrics,
        )


def build_context(settings: Settings, *, clock: Clock | None = None, name: str = "gridcall") -> Context:
    """`name` is how this process shows itself to PostgreSQL (`application_name`) and to the
    broker (`client_id`): `gridcall-<service>` in distributed mode, so operators can tell the
    services' connections apart."""
    bus: Bus
    if settings.embedded:
        bus = LocalBus(settings.var_dir / "bus.db")
    else:
        assert settings.kafka_bootstrap_servers
        bus = KafkaBus(
            settings.kafka_bootstrap_servers,
            enable_idempotence=settings.kafka_enable_idempotence,
            partitions=settings.kafka_partitions,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
            client_id=name,
        )
    if settings.db_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    jurisdiction = load_jurisdiction(settings.jurisdiction_file)
    clock = clock or SystemClock()
    return Context(
        settings=settings,
        db=Database(settings.db_url, application_name=name),
        bus=bus,
        clock=clock,
        jurisdiction=jurisdiction,
        policy=load_policy(settings.policy_file, jurisdiction),
        authenticator=Authenticator(settings.signing_key(), clock, units=[u.id for u in jurisdiction.units]),
    )


@dataclass
class ServiceParts:
    """One service as the runtime sees it: its HTTP routes and its background loops."""

    name: str
    router: APIRouter
    store: Store
    consumers: list[Consumer] = field(default_factory=list)
    workers: list[Callable[[Stop], Awaitable[None]]] = field(default_factory=list)
    group_commits: list[GroupCommit[Any, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    # Topics beside the streams' that the service reads or writes (a department's adapter topics).
    topics: list[str] = field(default_factory=list)
    # Error renderers for path prefixes that answer in a format of their own (Open311).
    error_renderers: dict[str, ErrorRenderer] = field(default_factory=dict)


async def supervise(name: str, loop: Callable[[Stop], Awaitable[None]], stop: Stop) -> None:
    """Keep a background loop alive until asked to stop: a crash is logged and the loop
    started again after a pause."""
    try:
        await retry(partial(loop, stop), what=name, stop=stop, retry_on=always, backoff=Backoff(0.5, 10.0))
    except Stopped:
        pass


def create_app(ctx: Context, parts: Sequence[ServiceParts], *, title: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.bus.start()
        streams = [ctx.settings.topic(s) for s in Stream]
        await ctx.bus.ensure_topics(list(dict.fromkeys([*streams, *(t for p in parts for t in p.topics)])))
        loops: list[tuple[str, Callable[[Stop], Awaitable[None]]]] = []
        for p in parts:
            relay = Relay(p.store, ctx.bus, interval=ctx.settings.relay_interval)
            loops.append((f"{p.name}.relay", relay.run))
            loops += [(c.name, c.run) for c in p.consumers]
            loops += [(f"{p.name}.worker", w) for w in p.workers]
        stop = Stop()
        tasks = [asyncio.create_task(supervise(n, fn, stop), name=n) for n, fn in loops]
        try:
            yield
        finally:
            # The server has finished its requests; the writers finish what those requests submitted.
            await asyncio.gather(*(g.close() for p in parts for g in p.group_commits))
            stop.set()  # let every loop finish its step; cancel only what does not end in time
            _, late = await asyncio.wait(tasks, timeout=ctx.settings.shutdown_grace)
            for t in late:
                log.warning("%s did not stop within %.0fs; cancelling it", t.get_name(), ctx.settings.shutdown_grace)
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
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
    app.state.ctx = ctx
    app.state.parts = parts
    app.state.metrics = ctx.metrics
    consumers = [c for p in parts for c in p.consumers]
    app.include_router(directory(ctx.jurisdiction, title))
    for p in parts:
        app.include_router(p.router)
    app.include_router(deadletters.router(consumers))

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
    app.add_middleware(Instrument, metrics=ctx.metrics, router=app.router)  # outermost: it sees the edge's answers too
    return app


async def case_in_path(request: Request) -> None:
    """A request about one case (`{case_id}` in its path) names it in its log lines."""
    if (case_id := request.path_params.get("case_id")) is not None:
        CASE_ID.set(case_id)


async def _outbox_gauges(store: Store) -> None:
    table = store.outbox
    async with store.db.sessions() as s:
        count, oldest = (await s.execute(select(func.count(), func.min(table.c.created_at)))).one()
    age = (store.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
    m = store.metrics
    m.child(m.outbox_backlog, (store.service,)).set(count)
    m.child(m.outbox_age, (store.service,)).set(max(age, 0.0))


async def _deadletter_gauges(metrics: Metrics, consumers: Sequence[Consumer]) -> None:
    for name, count in (await deadletters.counts(consumers)).items():
        metrics.child(metrics.deadletters, (name,)).set(count)
