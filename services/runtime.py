"""What every service process shares: the context built from settings, and the app that
runs a set of services (one in distributed mode, all four in embedded mode)."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Table, text

from services.auth import Authenticator
from services.batching import GroupCommit
from services.bus import Bus
from services.bus.kafka import KafkaBus
from services.bus.local import LocalBus
from services.clock import Clock, SystemClock
from services.db import Database
from services.directory import Health, Unhealthy, directory
from services.events import Event, Stream
from services.jurisdiction import Jurisdiction, load_jurisdiction
from services.lifecycle import Stop
from services.messaging import Consumer, Handler, Lock, Relay, Store
from services.openapi import describe_answers
from services.policy import Policy, load_policy
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
        batch = self.settings.consumer_batch or (50 if self.db.is_postgres else 10)
        return Consumer(name, store, self.bus, handlers, streams, lock=lock, batch=batch)

    def store(self, source: str, *, outbox: Table, inbox: Table) -> Store:
        return Store(
            self.db,
            source=source,
            outbox=outbox,
            inbox=inbox,
            clock=self.clock,
            topic=lambda stream: self.settings.topic(stream),
        )


def build_context(settings: Settings, *, clock: Clock | None = None) -> Context:
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
        )
    if settings.db_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    jurisdiction = load_jurisdiction(settings.jurisdiction_file)
    return Context(
        settings=settings,
        db=Database(settings.db_url),
        bus=bus,
        clock=clock or SystemClock(),
        jurisdiction=jurisdiction,
        policy=load_policy(settings.policy_file, jurisdiction),
        authenticator=Authenticator(settings.signing_key(), units=[u.id for u in jurisdiction.units]),
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


async def supervise(name: str, loop: Callable[[Stop], Awaitable[None]], stop: Stop) -> None:
    """Keep a background loop alive until asked to stop: log a crash and start it again."""
    backoff = 0.5
    while not stop:
        try:
            await loop(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped; restarting in %.1fs", name, backoff)
            await stop.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def create_app(ctx: Context, parts: Sequence[ServiceParts], *, title: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.bus.start()
        await ctx.bus.ensure_topics([ctx.settings.topic(s) for s in Stream])
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

    app = FastAPI(title=title, version="0.1.0", lifespan=lifespan)
    app.state.authenticator = ctx.authenticator
    app.state.ctx = ctx
    app.include_router(directory(ctx.jurisdiction, title))
    for p in parts:
        app.include_router(p.router)
    describe_answers(app)

    @app.exception_handler(RequestValidationError)
    async def unprocessable(request: Request, exc: RequestValidationError) -> Response:
        """FastAPI's 422, but safe for any input it echoes: a lone surrogate (JSON may carry
        one as \\ud800) goes back escaped instead of failing to encode as a 500."""
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=False)
        return Response(body.encode("utf-8", "backslashreplace"), 422, media_type="application/json")

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
            return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "services": [p.name for p in parts]})

    return app
