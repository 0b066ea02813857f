"""Failpoints: named places where a test of the running system makes a process pause, so that a
fault (a kill -9) lands exactly there rather than wherever chance puts it, as FoundationDB's
buggify and TiKV's fail-rs do. `GRIDCALL_FAILPOINTS=relay.published=3` pauses a relay 3 s each
time it has published rows and not yet deleted them. Only a test's settings may name any
(`GRIDCALL_ENV=test`; services/runtime/settings.py refuses them elsewhere).

The places:
- `relay.published`: the outbox rows are on the bus, their delete not yet committed."""

import asyncio
import logging
import math

log = logging.getLogger(__name__)

PLACES = frozenset({"relay.published"})


def parse(spec: str) -> dict[str, float]:
    """'relay.published=3' -> {'relay.published': 3.0}; a ValueError names what is wrong."""
    pauses = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, seconds = item.partition("=")
        if name not in PLACES:
            raise ValueError(f"no failpoint {name!r}: the places are {', '.join(sorted(PLACES))}")
        try:
            pause = float(seconds)
        except ValueError:
            pause = math.nan
        if not 0 <= pause < math.inf:
            raise ValueError(f"failpoint {name}: {seconds!r} is not seconds")
        pauses[name] = pause
    return pauses


class Failpoints:
    def __init__(self, spec: str = "") -> None:
        self.pauses = parse(spec)

    async def reach(self, place: str) -> None:
        if (seconds := self.pauses.get(place)) is not None:
            log.warning("failpoint %s: pausing %.1f s", place, seconds)
            await asyncio.sleep(seconds)
