"""Per-client rate limits for public endpoints: per issued API key, else per IP.

`RateLimit` asks who the client is and counts its request in a `Window`, which says whether the
request fits. Two windows keep the count: `MovingWindow`, in the process's memory (embedded
mode, one process: exact and free), and `services.web.ratewindow.DatabaseWindow`, in the
service's database, so that every replica of a service counts a client's requests together
(GRIDCALL_RATE_LIMIT_STORE)."""

import hashlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import limits
from fastapi import Request

from services.district.errors import RateLimited


def parse_rule(rule: str) -> limits.RateLimitItem:
    try:
        item = limits.parse(rule)
    except ValueError:
        raise ValueError(f"{rule!r} is not a rate; write e.g. '120/minute' or '10/second'") from None
    if item.amount < 1:
        raise ValueError(f"{rule!r} lets nothing through; write at least '1/minute'")
    return item


class Window(Protocol):
    """Where a rate limit counts the hits of each client, at most `limit` per `seconds`."""

    async def hit(self, client: str) -> float:
        """Count a hit and answer 0; or count nothing and answer the seconds until the client
        may try again (more than 0)."""
        ...


class MovingWindow:
    """At most `limit` hits per client in any `seconds` long, in this process's memory: each
    client's hits in a deque, oldest first, so a hit costs O(1). (The `limits` library's
    in-memory moving window inserts every hit at the head of a list, O(limit) a hit, and hands an
    expiry scan to a thread after nearly every request: under load, with its thread hops, several
    per cent of intake's CPU.) Its clock is the process's monotonic one: the window is the
    process's own, and no other process has to agree with it."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self.hits: dict[str, deque[float]] = {}
        self.swept = clock()

    async def hit(self, client: str) -> float:
        now = self.clock()
        if now - self.swept > self.seconds:
            self._sweep(now)
        hits = self.hits.get(client)
        if hits is None:
            hits = self.hits[client] = deque()
        while hits and hits[0] <= now - self.seconds:
            hits.popleft()
        if len(hits) >= self.limit:
            return hits[0] + self.seconds - now
        hits.append(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        """Forget the clients without a hit in the last window: memory follows the active ones."""
        self.hits = {c: h for c, h in self.hits.items() if h and h[-1] > now - self.seconds}
        self.swept = now


class RateLimit:
    """`known_key` tells whether an API key is one the service issued: only those get their own
    window, so a client cannot dodge its limit by inventing keys. `window` makes the window
    that counts, from the rule's limit and seconds."""

    def __init__(
        self,
        rule: str,
        known_key: Callable[[str], Awaitable[bool]] | None = None,
        window: Callable[[int, float], Window] = MovingWindow,
    ) -> None:
        self.item = parse_rule(rule)
        self.window = window(self.item.amount, self.item.get_expiry())
        self.known_key = known_key

    async def __call__(self, request: Request) -> None:
        """A FastAPI dependency: 429 with Retry-After once a client has spent its window."""
        await self.hit(request, request.headers.get("x-api-key"))

    async def client(self, request: Request, api_key: str | None = None) -> str:
        """Who is asking, as far as the service can tell: its API key if it is a known one, else
        its IP address. The rate limit counts per client, and idempotency keys are the client's own."""
        if api_key and self.known_key and await self.known_key(api_key):
            return "key:" + hashlib.sha256(api_key.encode()).hexdigest()
        return "ip:" + (request.client.host if request.client else "unknown")

    async def hit(self, request: Request, api_key: str | None = None) -> None:
        """Count one request of the client."""
        client = await self.client(request, api_key)
        if wait := await self.window.hit(client):
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                f"too many requests from this client (at most {self.item}); retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
