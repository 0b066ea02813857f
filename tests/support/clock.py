"""The suite's frozen time: where every `frozen_clock()` starts.

By default a Monday, 2026-11-02 09:00 UTC (17:00 in the policy's Shanghai). The session-wide
switch `GRIDCALL_TEST_CLOCK_YEARS` (say `+7` or `-7`) moves it that many years of whole weeks
(52 each, so it stays a Monday at 09:00) away: `make test` runs the suite years from today
once, so that any code or test that mixes the injected clock with the wall clock (a token
checked against the machine's date, a ticket dated by `datetime.now`) fails on every day,
not on the day the two drift apart."""

import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.district.clock import FrozenClock

SWITCH = "GRIDCALL_TEST_CLOCK_YEARS"
DEFAULT_START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _years() -> int:
    raw = os.environ.get(SWITCH, "0").strip() or "0"
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{SWITCH} must be a whole number of years such as +7 or -7, not {raw!r}") from None


START = DEFAULT_START + timedelta(weeks=52 * _years())
# The demo policy's time zone, for tests that name the suite's days as ops and residents see them.
LOCAL = ZoneInfo("Asia/Shanghai")


def local(days: float = 0, **delta: float) -> datetime:
    """The suite's start moved by `days` (and `hours=`, ...), in the policy's time zone."""
    return (START + timedelta(days=days, **delta)).astimezone(LOCAL)


def local_midnight(days: int = 0) -> datetime:
    """Midnight, in the policy's time zone, of the day `days` after the suite's start."""
    return local(days).replace(hour=0, minute=0, second=0, microsecond=0)


def frozen_clock(start: datetime | None = None) -> FrozenClock:
    """A clock that moves only when told, at the suite's start unless given another."""
    return FrozenClock(start or START)
