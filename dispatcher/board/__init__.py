"""The live board for ops at /ops: breaches as they happen, the rates per street and community,
cases per day, and the deliveries that failed for good. The page is rendered on the server; its
script asks the JSON API for the figures (`/v1/ops/stats`, `/v1/ops/stats/daily`,
`/v1/ops/cases/{id}`) with the ops token the person pasted, and listens to
`GET /v1/ops/breaches/stream` (Server-Sent Events) for breaches.

The failed deliveries are the notifier's (`/v1/ops/notifications`) and departments' adapters'
(`/v1/ops/deliveries`), asked on the page's own origin like everything else: `gridcall run`
serves them there, and so does a deployment whose proxy routes the paths to the services. A
dispatcher served alone has no such paths, and the panel says the source is not reachable from
the page (the page's policy allows no other origin)."""

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import timedelta
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel

from dispatcher.board.labels import CHANNELS, HISTORY, KINDS, LABELS, TIERS
from dispatcher.board.streams import Streams
from dispatcher.figures import Window
from dispatcher.usecases import breach_history
from services.district.clock import Clock
from services.district.errors import Unauthorized
from services.district.jurisdiction import Jurisdiction, label
from services.district.policy import Policy
from services.storage.db import Database
from services.web import pages
from services.web.auth import Authenticator, OpsDep, authenticate, bearer_token, ops_only
from services.web.openapi import problem, retry_after

PACKAGE = "dispatcher.board"
HEADERS = pages.headers(pages.csp(script=True))
PURPOSE = "ops-breach-stream"
TICKET_TTL = timedelta(seconds=60)
MISSING_TICKET = (
    "missing ticket: POST /v1/ops/breaches/stream-tickets with the ops token, or send 'Authorization: Bearer <token>'"
)
RECENT = timedelta(hours=24)  # what a board shows when it connects
STREAM_SECONDS = 600  # then the page reconnects with a new ticket, so a stream never outlives its check by long
KEEP_ALIVE_SECONDS = 15.0


class StreamTicket(BaseModel):
    ticket: str
    expires_in: int


def _sse(event: str, data: Any, event_id: int | None = None) -> str:
    body = json.dumps(jsonable_encoder(data), ensure_ascii=False)
    return (f"id: {event_id}\n" if event_id is not None else "") + f"event: {event}\ndata: {body}\n\n"


# One Server-Sent Event as a client parses it: `data` is JSON text (a list of breaches for
# `snapshot`, one breach for `breach`).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["snapshot", "breach"]},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def router(db: Database, clock: Clock, j: Jurisdiction, policy: Policy) -> APIRouter:
    static = pages.StaticFiles(PACKAGE, ("ops.js", "ops.css"), "/ops")
    streams = Streams(db, clock)
    env = pages.templates(PACKAGE)
    api = APIRouter()

    @api.get("/ops", include_in_schema=False)
    async def board(lang: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
        """督办看板: the live board; Chinese unless `?lang=en`."""
        chosen = pages.language(lang)
        now = clock.now().astimezone(policy.calendar.zone)
        today = policy.calendar.midnight(now)
        data = {
            "lang": chosen,
            "labels": LABELS[chosen],
            "tiers": TIERS[chosen],
            "kinds": KINDS[chosen],
            "history": HISTORY[chosen],
            "channels": CHANNELS[chosen],
            "streets": [{"id": s.id, "name": label(s, chosen)} for s in j.streets],
            "communities": [{"id": c.id, "name": label(c, chosen), "street_id": c.street_id} for c in j.communities],
            "grids": {g.id: label(g, chosen) for g in j.grids},
            "units": {u.id: label(u, chosen) for u in j.units},
            "categories": {c.code: label(c, chosen) for c in policy.categories},
            "today": today.isoformat(),
            # whole days, as a person counts a month
            "month": (today - timedelta(days=30)).isoformat(),
            "timezone": policy.calendar.timezone,
        }
        html = env.get_template("ops.html").render(
            lang=chosen, other=pages.other(chosen), t=LABELS[chosen], data=data, static=static
        )
        return HTMLResponse(html, headers=HEADERS)

    api.include_router(static.router())

    @api.post("/v1/ops/breaches/stream-tickets", tags=["ops"], response_model=StreamTicket)
    async def stream_ticket(request: Request, who: OpsDep) -> dict[str, Any]:
        """A ticket that opens one breach stream, within a minute. A browser's EventSource
        cannot send an Authorization header; the ticket goes in the stream's URL instead of the
        token."""
        authenticator: Authenticator = request.app.state.authenticator
        ticket = authenticator.issue_ticket(PURPOSE, TICKET_TTL, who.name)
        return {"ticket": ticket, "expires_in": TICKET_TTL.seconds}

    @api.get(
        "/v1/ops/breaches/stream",
        tags=["ops"],
        response_model=str,  # the events' text; typed under text/event-stream
        responses={
            200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": "Server-Sent Events"},
            401: problem("no ticket or ops token, or a bad, expired or spent one: ask for a new ticket"),
            403: problem("a staff token: the stream is for ops"),
            429: problem(
                "this person, or this server, holds as many streams as it may",
                headers=retry_after("seconds until a place may be free"),
            ),
        },
    )
    async def stream(
        request: Request,
        ticket: Annotated[
            str | None, Query(max_length=1000, description="from POST /v1/ops/breaches/stream-tickets")
        ] = None,
    ) -> StreamingResponse:
        """Breaches as they are recorded (Server-Sent Events): first a `snapshot` of those of the
        last 24 hours, newest first, then a `breach` event for each new one; rows as in
        `GET /v1/ops/breaches?state=all`, with their `breach_id`. Opened with an ops bearer
        token or, from a browser, a stream ticket.

        Why a ticket and not the token in the URL: URLs end up in proxies' logs and the
        browser's history, and the ops token lives for days. A ticket lives a minute, opens
        only this stream (a bearer check refuses it: it has an audience) and is logged
        nowhere (gridcall logs no URLs; metrics see only the route's template). A ticket opens
        one stream; a person holds a few at once (dispatcher/board/streams.py)."""
        who, spent = _authorize(request, ticket)
        streams.admit(who, spent)
        return Stream(
            _events(streams, db, clock),
            release=lambda: streams.leave(who),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return api


def _authorize(request: Request, ticket: str | None) -> tuple[str, dict[str, Any] | None]:
    """Who opens the stream, and the ticket it spends: a stream ticket, or else an ops bearer
    token (for curl and scripts)."""
    authenticator: Authenticator = request.app.state.authenticator
    if ticket is not None:
        try:
            claims = authenticator.verify_ticket(ticket, PURPOSE)
        except ValueError as exc:
            raise Unauthorized(str(exc)) from None
        return str(claims.get("name") or "ops"), claims
    token = bearer_token(request.headers.get("authorization"))
    return ops_only(authenticate(authenticator, token, missing=MISSING_TICKET)).name, None


class Stream(StreamingResponse):
    """A breach stream that gives its place back however it ends: finished, cut by the client,
    or cancelled before its first byte (then its events were never started, and only the
    response knows it was admitted)."""

    def __init__(self, content: AsyncIterator[str], *, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.events = content
        self.release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()
            await cast(AsyncGenerator[str, None], self.events).aclose()


async def _events(streams: Streams, db: Database, clock: Clock) -> AsyncGenerator[str, None]:
    """The snapshot, then the breaches as the shared poller sees history move (the breaches
    are read only when it moved), and a keep-alive after each KEEP_ALIVE_SECONDS without a
    byte sent (history may move without a breach for long); for STREAM_SECONDS."""

    def window() -> Window:
        now = clock.now()
        return Window(now - RECENT, now + RECENT, now)  # `until` ahead: ids bound what is new

    loop = asyncio.get_running_loop()
    seen = await streams.newest()
    yield "retry: 2000\n\n" + _sse("snapshot", await breach_history(db, window(), 200, through=seen), seen)
    ends, said = loop.time() + STREAM_SECONDS, loop.time()
    while (left := ends - loop.time()) > 0:
        top = await streams.past(seen, min(KEEP_ALIVE_SECONDS, left))
        if top > seen:
            found = await breach_history(db, window(), 1000, after=seen, through=top)
            for breach in reversed(found):
                yield _sse("breach", breach, breach["breach_id"])
            said = loop.time() if found else said
            seen = top
        if loop.time() - said >= KEEP_ALIVE_SECONDS:
            yield ": keep-alive\n\n"
            said = loop.time()
