"""Per-client rate limits for public endpoints: a moving window per issued API key, else per IP.

The window lives in the process's memory: with several intake replicas each enforces its
own share, which is what a load balancer that spreads clients evenly needs."""

import hashlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import limits
from fastapi import Request

from services.district.errors import RateLimited


def parse_rule(rule: str) -> limits.RateLimitItem:
    try:
        return limits.parse(rule)
    except ValueError:
        raise ValueError(f"{rule!r} is not a rate; write e.g. '120/minute' or '10/second'") from None


class MovingWindow:
    """At most `limit` hits per client in any `seconds` long: each client's hits in a deque,
    oldest first, so a hit costs O(1). (The `limits` library's in-memory moving window inserts
    every hit at the head of a list, O(limit) a hit, and hands an expiry scan to a thread after
    nearly every request: under load, with its thread hops, several per cent of intake's CPU.)"""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self.hits: dict[str, deque[float]] = {}
        self.swept = clock()

    def hit(self, client: str) -> float:
        """Count a hit and answer 0, or answer the seconds until the client may try again."""
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
    window, so a client cannot dodge its limit by inventing keys."""

    def __init__(self, rule: str, known_key: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self.item = parse_rule(rule)
        self.window = MovingWindow(self.item.amount, self.item.get_expiry())
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
        if wait := self.window.hit(client):
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                f"too many requests from this client (at most {self.item}); retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
