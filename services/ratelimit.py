"""Per-client rate limits for public endpoints: a moving window per issued API key, else per IP.

The window lives in the process's memory: with several intake replicas each enforces its
own share, which is what a load balancer that spreads clients evenly needs."""

import hashlib
import math
import time
from collections.abc import Awaitable, Callable

import limits
from fastapi import HTTPException, Request
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


def parse_rule(rule: str) -> limits.RateLimitItem:
    try:
        return limits.parse(rule)
    except ValueError:
        raise ValueError(f"{rule!r} is not a rate; write e.g. '120/minute' or '10/second'") from None


class RateLimit:
    """`known_key` tells whether an API key is one the service issued: only those get their own
    window, so a client cannot dodge its limit by inventing keys."""

    def __init__(self, rule: str, known_key: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self.item = parse_rule(rule)
        self.window = MovingWindowRateLimiter(MemoryStorage())
        self.known_key = known_key

    async def __call__(self, request: Request) -> None:
        """A FastAPI dependency: 429 with Retry-After once a client has spent its window."""
        await self.hit(request, request.headers.get("x-api-key"))

    async def hit(self, request: Request, api_key: str | None = None) -> None:
        """Count one request of the client: its API key if it is a known one, else its IP address."""
        if api_key and self.known_key and await self.known_key(api_key):
            client = "key:" + hashlib.sha256(api_key.encode()).hexdigest()
        else:
            client = "ip:" + (request.client.host if request.client else "unknown")
        if await self.window.hit(self.item, client):
            return
        stats = await self.window.get_window_stats(self.item, client)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise HTTPException(
            429,
            f"too many requests from this client (at most {self.item}); retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )
