"""Per-client rate limits for public endpoints: a moving window per API key, else per IP.

The window lives in the process's memory: with several intake replicas each enforces its
own share, which is what a load balancer that spreads clients evenly needs."""

import math
import time

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
    def __init__(self, rule: str) -> None:
        self.item = parse_rule(rule)
        self.window = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, request: Request) -> None:
        """A FastAPI dependency: 429 with Retry-After once a client has spent its window."""
        await self.hit(request, request.headers.get("x-api-key"))

    async def hit(self, request: Request, api_key: str | None = None) -> None:
        """Count one request of the client with this API key (else of its IP address)."""
        client = api_key or (request.client.host if request.client else "unknown")
        if await self.window.hit(self.item, client):
            return
        stats = await self.window.get_window_stats(self.item, client)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise HTTPException(
            429,
            f"too many requests from this client (at most {self.item}); retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )
