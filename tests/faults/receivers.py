"""The systems gridcall delivers to, as the fault suite runs them: a department's system behind
a unit's adapter, which can hang and come back, and an apps' webhook receiver that can fail
every other call. Each is an ASGI app served by uvicorn in the test's own process; it checks
every signature with the reference Standard Webhooks library and records every call by its
webhook-id (the delivery's msg_id) with what it answered, so that a retry (after a time-out or
a 500: expected) is told from a second delivery of what was already answered 2xx (a double).
`Deliveries` holds what a receiver recorded against a service's deliveries table."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

from tests.faults.harness import Run, System, scalar
from tests.support.servers import free_port
from tests.support.waiting import eventually

# A held request is never answered when its sender is about to give up on it: an answer in a
# race with the sender's time-out may go unread, and the retry that follows is expected (the
# receiver deduplicates by webhook-id), not the double this suite looks for.
MARGIN = 0.5  # seconds


@dataclass(eq=False)  # each call is itself, whatever it holds
class Call:
    msg_id: str
    arrived: float  # the event loop's time
    status: int | None = None  # what it was answered; None: the sender hung up before an answer


class Receiver:
    """Records every call; `answer` says what each one gets (None: none, the sender hung up)."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.calls: list[Call] = []
        self.unsigned = 0  # calls refused 401: no valid signature

    @property
    def answered(self) -> Counter[str]:
        """How many times each msg_id was answered 2xx."""
        return Counter(c.msg_id for c in self.calls if c.status is not None and 200 <= c.status < 300)

    def count(self, status: int | None) -> int:
        return sum(1 for c in self.calls if c.status == status)

    async def answer(self, call: Call, receive: Any) -> int | None:
        raise NotImplementedError

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self.webhook.verify(body, headers)
        except WebhookVerificationError:
            self.unsigned += 1
            status: int | None = 401
        else:
            call = Call(headers["webhook-id"], asyncio.get_running_loop().time())
            self.calls.append(call)
            status = call.status = await self.answer(call, receive)
        if status is not None:
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})


async def hung_up(receive: Any) -> None:
    """Returns when the sender closes the connection (its request body already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Department(Receiver):
    """A department's system: answers 200, but while it hangs (`hang`) holds every request
    unanswered until the hang ends or the sender hangs up. `timeout`: the sender's, in seconds."""

    def __init__(self, secret: str, timeout: float) -> None:
        super().__init__(secret)
        self.timeout = timeout
        self.up = asyncio.Event()
        self.up.set()
        self.holding: set[Call] = set()  # the requests held now
        self.held = 0  # requests held in all
        self.overdue = 0  # held requests still there after their sender's time-out (and 5 s)

    async def hang(self, seconds: float) -> None:
        """Hang for `seconds`, then answer again: the held requests that are still waiting
        first, but never when one of them is within MARGIN of its sender's time-out."""
        self.up.clear()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(seconds)
            while True:
                now = loop.time()
                left = [c.arrived + self.timeout - now for c in self.holding]
                if not any(-5 < t <= MARGIN for t in left):
                    self.overdue += sum(1 for t in left if t <= -5)
                    break
                await asyncio.sleep(0.02)
        finally:
            self.up.set()

    async def answer(self, call: Call, receive: Any) -> int | None:
        if not self.up.is_set():
            self.holding.add(call)
            self.held += 1
            gone, up = asyncio.ensure_future(hung_up(receive)), asyncio.ensure_future(self.up.wait())
            try:
                done, _ = await asyncio.wait({gone, up}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.holding.discard(call)
                gone.cancel()
                up.cancel()
            if gone in done:
                return None
        return 200


class FailingHalf(Receiver):
    """An apps' webhook receiver: answers 204, but while it fails (`fail_half`) every other call 500."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.failing = False
        self.since = 0  # calls since it began failing

    async def fail_half(self, seconds: float) -> None:
        self.failing = True
        try:
            await asyncio.sleep(seconds)
        finally:
            self.failing = False

    async def answer(self, call: Call, receive: Any) -> int | None:
        if not self.failing:
            return 204
        self.since += 1
        return 500 if self.since % 2 == 1 else 204


@asynccontextmanager
async def served(app: Receiver) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1, for as long as the context lasts; its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = server.force_exit = True
        await task


DRAIN = 60.0  # seconds a backlog of deliveries gets to drain, once the common checks are done
PENDING = {"created", "sending", "temporary-failure"}


@dataclass(frozen=True)
class Deliveries:
    """What `receiver` should have got: the rows of `table` (a service's deliveries) that `where`
    chooses; `missing` counts what should have made such a row and made none."""

    what: str  # its name in the notes
    receiver: Receiver
    table: str
    where: str
    missing: str

    async def check(self, system: System, conn: asyncpg.Connection, run: Run) -> None:
        """The backlog drains: within DRAIN seconds nothing is waiting, and nothing is dead or
        failed for good (lost otherwise); every row delivered was answered 2xx (lost otherwise),
        and none twice, nor under an id the table does not hold (doubled)."""
        t, w = self.table, self.where
        deadline = time.monotonic() + DRAIN
        while True:  # the system goes on making deliveries (cases still escalate): a moment with none waiting
            rows = {r["msg_id"]: r["state"] for r in await conn.fetch(f"SELECT msg_id, state FROM {t} WHERE {w}")}
            if not set(rows.values()) & PENDING or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        answered = self.receiver.answered  # read after the rows: a row delivered by then was answered by then
        unknown = set(answered) - set(rows)
        if unknown:  # made and delivered since the rows were read, or none of the table's
            known = f"SELECT msg_id FROM {t} WHERE {w} AND msg_id = ANY($1)"
            unknown -= {r["msg_id"] for r in await conn.fetch(known, sorted(unknown))}
        lost = {state: n for state, n in sorted(Counter(rows.values()).items()) if state != "delivered"}
        unanswered = [k for k, s in rows.items() if s == "delivered" and not answered[k]]
        lost["delivered but never answered 2xx"] = len(unanswered)
        lost["never made (no row)"] = await scalar(conn, self.missing)
        doubled = {
            "answered 2xx twice or more": sum(1 for n in answered.values() if n > 1),
            "answered 2xx under an id it does not hold": len(unknown),
        }
        for what, n in lost.items():
            if n:
                run.lost += n
                run.notes.append(f"{self.what}: {n} lost in {t}: {what}")
        for what, n in doubled.items():
            if n:
                run.doubled += n
                run.notes.append(f"{self.what}: {n} doubled in {t}: {what}")
        ago = await conn.fetchval(f"SELECT extract(epoch FROM now() - max(delivered_at)) FROM {t} WHERE {w}")
        last = ""
        if ago is not None:
            last = f", the last {time.monotonic() - float(ago) - system.fault_ended:+.1f} s from the fault's end"
        r = self.receiver
        run.notes.append(
            f"{self.what}: {len(rows)} deliveries in {len(r.calls)} calls ({r.count(500)} answered 500, "
            f"{r.count(None)} hung up){last}"
        )
        if r.unsigned:
            run.notes.append(f"{self.what}: {r.unsigned} calls without a valid signature (refused 401)")
