"""Drain on SIGTERM: how a process leaves a load balancer's rotation without a client seeing a
connection reset.

An orchestrator sends SIGTERM and, at the same moment, starts taking the replica out of its
Service; until every proxy has heard, requests keep coming. So on SIGTERM the process first
drains for `GRIDCALL_SHUTDOWN_DRAIN` seconds: it goes on serving, `/readyz` answers 503
(`draining`), and every answer carries `Connection: close`, so no client keeps an idle
connection that the shutdown would cut under a request it is sending. Then uvicorn's own
shutdown: the listener closes, requests in flight finish, and the app's lifespan stops its loops
(consumers and workers finish their step and commit their offsets, then the relay publishes what
they wrote; services/runtime/app.py) within `GRIDCALL_SHUTDOWN_GRACE`.

SIGINT (Ctrl-C at `make run`) and a second signal skip the drain."""

import logging
import signal
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

IN_FLIGHT_SECONDS = 5  # for the requests in flight once the listener closes (an event stream would never end)


class Draining:
    """Whether, and since when, the process drains. Set from a signal handler: a plain value,
    read by the requests and by the server's tick. Its time is the process's monotonic clock,
    not the injected one: it measures how long this process has waited, not a time of the
    domain (a test's frozen clock would never let the drain end)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def __bool__(self) -> bool:
        return self.since is not None

    def lasted(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


class CloseWhileDraining:
    """Every answer given while draining closes its connection: the client's next request opens
    a new one, which the load balancer sends to another replica."""

    def __init__(self, app: ASGIApp, draining: Draining) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and self.draining:
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, sending)


class Server(uvicorn.Server):
    """uvicorn's server, which drains for `drain` seconds on SIGTERM before its own shutdown."""

    def __init__(self, config: uvicorn.Config, draining: Draining, drain: float) -> None:
        super().__init__(config)
        self.draining = draining
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain <= 0 or self.draining:
            super().handle_exit(sig, frame)  # Ctrl-C, no drain, or asked twice: stop now
            return
        self.draining.begin()  # the tick below logs it: a signal handler should not

    async def on_tick(self, counter: int) -> bool:
        if self.draining and not self.should_exit:
            if counter % 10 == 0:
                log.info("draining: /readyz answers 503 for %.0f s more", max(self.drain - self.draining.lasted(), 0))
            if self.draining.lasted() >= self.drain:
                super().handle_exit(signal.SIGTERM, None)  # uvicorn's shutdown, and SIGTERM's exit status
        return await super().on_tick(counter)
