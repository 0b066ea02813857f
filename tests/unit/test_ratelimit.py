"""The windows behind every rate limit: the moving window in memory, exact, and the arithmetic
of the sliding window counter the database window uses (services/web/ratewindow.py; its
statement is tested on PostgreSQL in tests/integration/test_rate_limit_shared.py)."""

import itertools
import logging

import pytest
from sqlalchemy import MetaData

from services.storage.db import Database
from services.web.ratelimit import MovingWindow
from services.web.ratewindow import DatabaseWindow, fits, previous_weight, rate_window_table, wait
from tests.support.clock import frozen_clock
from tests.support.servers import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_client_gets_its_limit_per_window_and_is_told_when_to_come_back():
    clock = Clock()
    window = MovingWindow(2, 10.0, clock)
    assert await window.hit("a") == 0
    clock.now += 1
    assert await window.hit("a") == 0
    clock.now += 1
    assert await window.hit("a") == 8.0  # the first hit leaves the window 10 s after it came
    assert await window.hit("b") == 0  # another client has a window of its own
    clock.now += 8.5
    assert await window.hit("a") == 0  # the first hit left; the refused one never counted
    assert await window.hit("a") == 0.5


async def test_clients_without_a_hit_in_the_last_window_are_forgotten():
    clock = Clock()
    window = MovingWindow(5, 10.0, clock)
    await window.hit("gone")
    clock.now += 6
    await window.hit("active")
    clock.now += 5
    await window.hit("active")
    assert set(window.hits) == {"active"}


def test_the_previous_window_counts_for_the_share_of_it_the_last_period_covers():
    # Cloudflare's example: 42 hits in the previous minute, 18 in this one, 15 s into it.
    weight = previous_weight(15, 60)
    assert weight == 0.75
    assert 42 * weight + 18 == 49.5
    assert not fits(42, 18, 50, weight)  # 50.5 with this hit
    assert fits(42, 18, 51, weight)
    assert fits(0, 0, 1, previous_weight(0, 60)) and not fits(0, 1, 1, previous_weight(59.9, 60))
    assert fits(1, 0, 1, previous_weight(60, 60))  # the previous window has slid out whole


def test_a_refused_client_is_told_when_the_previous_window_has_slid_far_enough():
    assert wait(42, 18, 50, 60, 15) == pytest.approx(60 * 11 / 42 - 15)  # its share down to 31: 0.71 s
    assert wait(42, 18, 50, 60, 15.8) == 0
    assert wait(10, 2, 10, 60, 15) == 3.0  # 7.5 + 2 + 1 > 10 until 18 s in: 7 + 2 + 1


def test_a_client_that_filled_the_current_window_waits_into_the_next_one():
    # 10 of 10 this minute, 30 s in: 30 s to the next minute, where these 10 weigh 9 by 6 s in.
    assert wait(0, 10, 10, 60, 30) == 36.0
    assert fits(10, 0, 10, previous_weight(6, 60)) and not fits(10, 0, 10, previous_weight(5.9, 60))


def test_the_wait_is_the_first_moment_another_hit_fits():
    """Over a grid of counts and times: after the wait the hit fits, a little before it does not."""

    def fits_at(previous: int, current: int, limit: int, t: float) -> bool:
        if t >= 60:  # the next window: the current one is its previous, nothing counted in it yet
            return fits(current, 0, limit, previous_weight(t - 60, 60))
        return fits(previous, current, limit, previous_weight(t, 60))

    for previous, current, limit, elapsed in itertools.product(
        range(0, 25, 3), range(0, 25, 4), (1, 5, 12), (0, 7.5, 59)
    ):
        if current > limit:
            continue  # refused hits are never counted: a window holds at most the limit
        w = wait(previous, current, limit, 60, elapsed)
        assert (w == 0) == fits(previous, current, limit, previous_weight(elapsed, 60))
        if w:
            assert fits_at(previous, current, limit, elapsed + w + 1e-9), (previous, current, limit, elapsed)
            assert not fits_at(previous, current, limit, elapsed + w - 0.01), (previous, current, limit, elapsed)


async def test_a_database_that_does_not_answer_lets_requests_through_and_says_so_once(caplog):
    """Fail open: a resident's report must not fail because its rate limit cannot be counted."""
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone")
    window = DatabaseWindow(rate_window_table(MetaData(), "t"), db, frozen_clock(), limit=1, seconds=60)
    try:
        with caplog.at_level(logging.WARNING, logger="services.web.ratewindow"):
            assert [await window.hit("ip:203.0.113.7") for _ in range(3)] == [0, 0, 0]
    finally:
        await db.dispose()
    [warning] = [r.getMessage() for r in caplog.records]
    assert "does not answer" in warning and "203.0.113.7" not in warning
