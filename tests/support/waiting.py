"""Waiting for what happens after a request: `eventually` in async tests, `eventually_sync` in
synchronous ones (a test driving the app with blocking requests)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# What a probe may raise while the condition is not met yet: it is asked again.
NOT_YET = (AssertionError, LookupError, ValueError)


class Patience:
    """One wait's bookkeeping: what the probe last raised, and when to give up."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.last: BaseException | None = None

    def check(self, value: T | None) -> T | None:
        """`value` if the condition is met; else None, or the failure once the time is up."""
        if value:
            return value
        if time.monotonic() > self.deadline:
            raise AssertionError(f"condition not met within {self.timeout}s (last: {self.last!r})")
        return None


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Await `probe` until it returns a truthy value without raising; fail after `timeout`."""
    patience = Patience(timeout)
    while True:
        value = None
        try:
            value = await probe()
            patience.last = None
        except NOT_YET as exc:
            patience.last = exc
        if (met := patience.check(value)) is not None:
            return met
        await asyncio.sleep(interval)


def eventually_sync(probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """`eventually` for a synchronous `probe`, blocking between its calls."""
    patience = Patience(timeout)
    while True:
        value = None
        try:
            value = probe()
            patience.last = None
        except NOT_YET as exc:
            patience.last = exc
        if (met := patience.check(value)) is not None:
            return met
        time.sleep(interval)
