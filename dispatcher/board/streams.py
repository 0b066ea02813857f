"""The breach streams one dispatcher process serves, and what they may cost it.

A stream ticket opens one stream in a process: it is spent on use there (its id is kept until it
expires), so a leaked or replayed ticket opens nothing more on that replica; with N dispatcher
replicas it could open one on each, within its minute. One person (the token's name) holds at
most `per_person` streams at once in a process (a few browser tabs), the process at most `most`.
However many are open, one poller reads the newest history id once a second and wakes them when
it moves: an idle board costs the database nothing per viewer."""

import asyncio
import logging
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from dispatcher.tables import history
from services.district.clock import Clock
from services.district.errors import RateLimited, Unauthorized
from services.runtime.retry import describe
from services.storage.db import Database

log = logging.getLogger("gridcall.dispatcher.board")

POLL_SECONDS = 1.0
PER_PERSON = 5
MOST = 200
SPENT = "this ticket has opened its stream already: ask for a new one (POST /v1/ops/breaches/stream-tickets)"


class Streams:
    def __init__(self, db: Database, clock: Clock, *, per_person: int = PER_PERSON, most: int = MOST) -> None:
        self.db = db
        self.clock = clock
        self.per_person = per_person
        self.most = most
        self.open: Counter[str] = Counter()
        self.spent: dict[str, float] = {}  # ticket id -> when it expires (epoch seconds)
        self.top = 0
        self.moved = asyncio.Condition()
        self.poller: asyncio.Task[None] | None = None

    def admit(self, who: str, ticket: dict[str, Any] | None) -> None:
        """Count a stream for `who`, spending its ticket; refused if the ticket was spent or
        the person or the process holds as many streams as it may."""
        now = self.clock.now().timestamp()
        self.spent = {jti: exp for jti, exp in self.spent.items() if exp > now}
        if ticket is not None and ticket["jti"] in self.spent:
            raise Unauthorized(SPENT)
        if self.open[who] >= self.per_person:
            raise RateLimited(
                f"{self.per_person} breach streams are open for this person already, the most one may hold: "
                "close a board first",
                headers={"Retry-After": "10"},
            )
        if sum(self.open.values()) >= self.most:
            raise RateLimited(
                f"this server serves {self.most} breach streams already; try again shortly",
                headers={"Retry-After": "10"},
            )
        if ticket is not None:
            self.spent[ticket["jti"]] = float(ticket["exp"])
        self.open[who] += 1

    def leave(self, who: str) -> None:
        self.open[who] -= 1
        if self.open[who] <= 0:
            del self.open[who]
        if not self.open and self.poller is not None:
            self.poller.cancel()
            self.poller = None

    async def newest(self) -> int:
        async with self.db.sessions() as s:
            return int((await s.execute(select(func.max(history.c.id)))).scalar() or 0)

    async def past(self, seen: int, timeout: float) -> int:
        """The newest history id once it is past `seen`, or `seen` after `timeout` seconds."""
        if self.poller is None:
            self.poller = asyncio.create_task(self._poll())
        async with self.moved:
            try:
                await asyncio.wait_for(self.moved.wait_for(lambda: self.top > seen), timeout)
            except TimeoutError:
                return seen
            return self.top

    async def _poll(self) -> None:
        while True:
            try:
                top = await self.newest()
            except Exception as exc:  # the database away: the streams stay open (keep-alives), and resume after
                log.warning("breach streams: cannot read the newest history id: %s", describe(exc))
                top = self.top
            if top > self.top:
                async with self.moved:
                    self.top = top
                    self.moved.notify_all()
            await asyncio.sleep(POLL_SECONDS)
