"""The one retry schedule's arithmetic (services/delivery/retries.py): what an attempt's
`Result` makes of a delivery, the schedule with its jitter, Retry-After (capped), and the
setting that holds the schedule."""

import random
from datetime import UTC, datetime

import pytest

from services.delivery import retries
from services.delivery.retries import Next
from services.delivery.sender import Outcome, Result
from services.delivery.tables import State
from services.runtime.settings import Settings, parse_schedule

SCHEDULE = [0.0, 5.0, 300.0]
FAILED = Result(Outcome.TEMPORARY, "HTTP 500", 500)


def test_the_schedule_with_jitter_then_dead():
    rng = random.Random(7)
    assert retries.after(SCHEDULE, 1, Result(Outcome.DELIVERED, status=200)) == Next(State.DELIVERED)
    for attempts, base in [(1, 5.0), (2, 300.0)]:
        step = retries.after(SCHEDULE, attempts, FAILED, rng)
        assert step.state is State.TEMPORARY_FAILURE
        assert base * 0.8 <= step.delay <= base * 1.2
    timeout = Result(Outcome.TEMPORARY, "no answer within 10s")
    assert retries.after(SCHEDULE, 3, timeout).state is State.DEAD  # a timeout counts as a failure


def test_each_outcome_but_a_temporary_failure_ignores_the_schedule():
    for attempts in (1, 3, 99):
        assert retries.after(SCHEDULE, attempts, Result(Outcome.GONE, "HTTP 410", 410)).state is State.CREATED
        assert retries.after(SCHEDULE, attempts, Result(Outcome.PERMANENT, "no such number")).state is (
            State.PERMANENT_FAILURE
        )
        for waiting in (Outcome.ACCEPTED, Outcome.AMBIGUOUS):
            assert retries.after(SCHEDULE, attempts, Result(waiting)).state is State.SENDING


def test_retry_after_is_honoured_and_capped():
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert retries.retry_after("120", now) == 120
    assert retries.retry_after("Tue, 01 Dec 2026 08:01:00 GMT", now) == 60
    assert retries.retry_after("soon", now) is None
    assert retries.retry_after(None, now) is None
    busy = Result(Outcome.TEMPORARY, "HTTP 503", 503, retry_after=42.0)
    assert retries.after(SCHEDULE, 1, busy) == Next(State.TEMPORARY_FAILURE, 42.0)
    far = Result(Outcome.TEMPORARY, "HTTP 429", 429, retry_after=10.0**9)
    assert retries.after(SCHEDULE, 1, far).delay == retries.MOST_RETRY_AFTER
    assert retries.after(SCHEDULE, 1, FAILED, random.Random(1)).delay != 42.0
    assert retries.after(SCHEDULE, 3, busy).state is State.DEAD  # out of attempts, whatever it asks


def test_the_schedule_setting(monkeypatch):
    for name in ("GRIDCALL_DELIVERY_RETRY_SCHEDULE", "GRIDCALL_ADAPTER_RETRY_SCHEDULE"):
        monkeypatch.delenv(name, raising=False)
    assert parse_schedule("0s,5s,5m,30m,2h,5h,10h,10h") == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    assert parse_schedule("0s, 500ms,1s") == [0, 0.5, 1]
    with pytest.raises(ValueError):
        parse_schedule("5 minutes")
    assert Settings().retry_schedule == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    assert Settings().delivery_receipt_wait == 600
    monkeypatch.setenv("GRIDCALL_ADAPTER_RETRY_SCHEDULE", "0s,2s")  # its name while only the adapters had one
    assert Settings().retry_schedule == [0, 2]
    monkeypatch.setenv("GRIDCALL_DELIVERY_RETRY_SCHEDULE", "0s,1s")
    assert Settings().retry_schedule == [0, 1]
    with pytest.raises(ValueError, match="not a delay"):
        Settings(delivery_retry_schedule="soon")
