"""The whole app (or some of its services) in the test's own process: built with
`gridcall.app.build_app`, started under its lifespan, a client over it, and staff tokens dated
by the app's clock. Every in-process `stack`/`client` fixture is one `running(...)`."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from departments.usecases.staff import StaffRole
from gridcall.app import build_app
from services.district.clock import Clock
from services.runtime.settings import Settings
from tests.support.servers import free_port
from tests.support.staff import Tokens, enrol
from tests.support.waiting import eventually

BASE_URL = "http://gridcall"


def not_enrolled(unit_id: str | None = None) -> str:
    raise AssertionError("this app was started without staff: running(..., handlers=...) enrols them")


@dataclass
class Running:
    """A started app and what a test drives it with."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    clock: Clock
    tokens: Tokens = not_enrolled  # handlers: tokens(unit_id); ops: tokens()
    supervisors: Tokens = not_enrolled


def lifespan(app: FastAPI) -> LifespanManager:
    """The app's start-up and shutdown, with a loaded machine's room: asgi_lifespan's 5 s is
    not (a CI run failed at a shutdown that took longer, its loops finishing their step under
    load); the app's own GRIDCALL_SHUTDOWN_GRACE bounds the shutdown."""
    return LifespanManager(app, startup_timeout=60, shutdown_timeout=60)


@asynccontextmanager
async def running(
    settings: Settings,
    names: Sequence[str] | None = None,
    *,
    clock: Clock | None = None,
    handlers: bool | Sequence[str] = False,
    supervisors: Sequence[str] = (),
    served: bool = False,
    **overrides: object,
) -> AsyncIterator[Running]:
    """`build_app(settings, names, clock=clock)` started, with `overrides` (Settings fields) on
    its settings. `handlers`: enrol a handler in every unit (True) or in the units named, and
    `supervisors` in the units named. `served`: the client talks to it over a real socket
    (uvicorn in this process) rather than httpx's ASGI transport, which gathers a whole
    response before it answers (an event stream has none)."""
    unknown = set(overrides) - set(Settings.model_fields)
    if unknown:
        raise TypeError(f"running() got unknown settings {sorted(unknown)}")
    if overrides:
        settings = settings.model_copy(update=overrides)
    app = build_app(settings, names, clock=clock)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(lifespan(app))
        if served:
            url = await stack.enter_async_context(serve(app))
            client = httpx.AsyncClient(base_url=url, timeout=10)
        else:
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        await stack.enter_async_context(client)
        started = Running(app, client, settings, app.state.ctx.clock)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
        if handlers:
            units = None if handlers is True else list(handlers)
            started.tokens = await enrol(settings.db_url, secret, units, clock=clock)
        if supervisors:
            started.supervisors = await enrol(
                settings.db_url, secret, list(supervisors), role=StaffRole.SUPERVISOR, clock=clock
            )
        yield started


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1 (its lifespan left to the caller); its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = server.force_exit = True
        await task
