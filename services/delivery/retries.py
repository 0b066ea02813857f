"""When a delivery is tried again: pure arithmetic over the one schedule
(`GRIDCALL_DELIVERY_RETRY_SCHEDULE`, the delay before each attempt; by default close to the
Standard Webhooks recommendation: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), for every
channel. What a sender's `Result` makes of a row is decided here; the worker only writes it."""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from services.delivery.sender import Outcome, Result
from services.delivery.tables import State

JITTER = 0.2  # a delay is drawn from ±20% of the schedule's, so failed deliveries do not come back in step
MOST_RETRY_AFTER = 24 * 3600.0  # a Retry-After further off than a day is taken as a day

# What each outcome but a temporary failure makes of a row: a temporary failure depends on the attempts left.
_STATES = {
    Outcome.DELIVERED: State.DELIVERED,
    Outcome.ACCEPTED: State.SENDING,  # held until its receipt comes (or does not)
    Outcome.AMBIGUOUS: State.SENDING,
    Outcome.PERMANENT: State.PERMANENT_FAILURE,
    Outcome.GONE: State.CREATED,  # not its failure: it waits, its attempts unchanged, until ops let it go
}


@dataclass(frozen=True)
class Next:
    state: State
    delay: float = 0.0  # seconds until the next attempt, for TEMPORARY_FAILURE


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


def after(schedule: Sequence[float], attempts: int, result: Result, rng: random.Random | None = None) -> Next:
    """What follows attempt number `attempts` (1 for the first) that came to `result`. A
    temporary failure is tried again after the schedule's next delay, or after the receiver's
    `retry_after` (at most a day) when it gave one, and is dead once the schedule is used up."""
    if result.outcome is not Outcome.TEMPORARY:
        return Next(_STATES[result.outcome])
    if attempts >= len(schedule):
        return Next(State.DEAD)
    if result.retry_after is not None:
        return Next(State.TEMPORARY_FAILURE, min(max(result.retry_after, 0.0), MOST_RETRY_AFTER))
    delay = schedule[attempts]
    return Next(State.TEMPORARY_FAILURE, delay * (rng or random).uniform(1 - JITTER, 1 + JITTER))
