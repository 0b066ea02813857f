"""When a webhook delivery is tried again: pure arithmetic over the configured schedule
(`GRIDCALL_ADAPTER_RETRY_SCHEDULE`, the delay before each attempt; by default close to the
Standard Webhooks recommendation: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)."""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

JITTER = 0.2  # a delay is drawn from ±20% of the schedule's, so failed deliveries do not come back in step
MOST_RETRY_AFTER = 24 * 3600.0  # a Retry-After further off than a day is taken as a day


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    GONE = "gone"  # 410: the unit's system asks us to stop; its adapter is disabled


@dataclass(frozen=True)
class Next:
    verdict: Verdict
    delay: float = 0.0  # seconds until the next attempt, for RETRY


def retry_after(value: str | None, now: datetime) -> float | None:
    """A Retry-After header's seconds: delta-seconds or an HTTP date; None if absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def after(
    schedule: Sequence[float],
    attempts: int,
    status: int | None,
    wait: float | None = None,
    rng: random.Random | None = None,
) -> Next:
    """What follows attempt number `attempts` (1 for the first) that got `status` (None: no
    answer, such as a timeout or a refused connection) and a Retry-After of `wait` seconds."""
    if status is not None and 200 <= status < 300:
        return Next(Verdict.DELIVERED)
    if status == 410:
        return Next(Verdict.GONE)
    if attempts >= len(schedule):
        return Next(Verdict.DEAD)
    if status in (429, 503) and wait is not None:
        return Next(Verdict.RETRY, min(wait, MOST_RETRY_AFTER))
    delay = schedule[attempts]
    return Next(Verdict.RETRY, delay * (rng or random).uniform(1 - JITTER, 1 + JITTER))
