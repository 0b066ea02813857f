"""Every endpoint survives a dropped database connection: one middleware, for every service.

PostgreSQL may drop a connection at any moment (a restart, a fail-over, an administrator's
`pg_terminate_backend`); the pool's pre-ping only catches connections that died while idle.
A request that fails on a transient database error is run once more, on a fresh connection
(SQLAlchemy invalidates the pool on a disconnect). If it fails so again the database is
really away: the answer is 503 with `Retry-After`, never a 500 that blames nobody.

A middleware rather than a route class or a wrapper per transaction: it covers every route
of every service, the kernel's own included, without each router opting in. The body the
first attempt read is replayed to the second. Running the request again is safe because a
request's effects are one transaction that rolled back; only a connection lost during the
COMMIT itself leaves the outcome unknown, where a repeated report is caught by the duplicate
check or made exact by an `Idempotency-Key`.
"""

import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.retry import describe, transient

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "the database is unavailable right now; try again shortly"


class RetryBrokenConnection:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        answered = False

        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                read.append(message)
            return message

        async def replaying() -> Message:
            return read.pop(0) if read else await receive()

        async def sending(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        for attempt in (recording, replaying):
            try:
                await self.app(scope, attempt, sending)
                return
            except Exception as exc:
                if answered or not transient(exc):
                    raise
                log.warning("%s %s: %s", scope["method"], scope["path"], describe(exc))
        await JSONResponse({"detail": UNAVAILABLE}, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})(
            scope, receive, send
        )
