"""Drain on SIGTERM (services/runtime/drain.py), on the distributed system of the fault suite
(tests/faults/harness.py): intake asked to stop while clients stream reports over kept-alive
connections, and both dispatchers asked to stop at once in the middle of their batches.

A stopping process answers `/readyz` 503 (`draining`) and closes every connection after its
answer for the drain's seconds, then stops listening, finishes what is in flight and, before
it exits, commits its consumers' work and publishes its outbox. So no client sees a connection
cut under a request it had sent (the clients stand behind a load balancer that stops sending to
the replica half a second after its /readyz first says 503; a refused connection is a request
never sent: it goes again, as to another replica), the process leaves nothing in its outbox, and
nothing accepted is lost or doubled."""

import asyncio
import signal
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.faults.harness import System, check, outbox_rows, scenario_tag, system
from tests.support.journey import STREETLIGHT_G11
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

DRAIN = 2.0  # seconds
GRACE = 10.0
CLIENTS = 6  # each sends one report after another over its kept-alive connection


@dataclass
class Clients:
    """What the clients saw: each report's case, the answers that closed their connection, the
    connections refused (nothing sent), and the requests cut after they were sent."""

    answered: dict[str, str] = field(default_factory=dict)
    closing: int = 0
    refused: int = 0
    cut: list[str] = field(default_factory=list)


async def stream(url: str, tag: str, seconds: float, seen: Clients, routed: asyncio.Event) -> None:
    """CLIENTS clients for `seconds`, behind a load balancer that sends a request on only while
    `routed` is set; a report goes again with its Idempotency-Key until it is answered (a
    careful client), so that the count of what was accepted is exact."""
    ends = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=CLIENTS)) as c:

        async def client(n: int) -> None:
            sent = 0
            while time.monotonic() < ends:
                key = f"{tag}-{n}-{sent}"
                body = {**STREETLIGHT_G11, "description": key, "insist": True}
                while True:
                    await routed.wait()
                    try:
                        r = await c.post("/v1/reports", json=body, headers={"Idempotency-Key": key})
                    except httpx.ConnectError:  # nothing listens: the request was never sent
                        seen.refused += 1
                        await asyncio.sleep(0.1)
                        continue
                    except httpx.TransportError as exc:  # sent, and the connection went under it
                        seen.cut.append(f"{type(exc).__name__}: {exc}")
                        await asyncio.sleep(0.1)
                        continue
                    if r.status_code == 202:
                        break
                    await asyncio.sleep(0.1)
                seen.answered[key] = r.json()["case_id"]
                seen.closing += r.headers.get("connection") == "close"
                sent += 1
                await asyncio.sleep(0.02)

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def stopped(s: System, name: str, routed: asyncio.Event | None = None) -> tuple[float, str]:
    """SIGTERM to `name`, watching its /readyz while it drains, as a load balancer does: half a
    second after the first 503 it stops routing to it (clears `routed`). (Seconds until the
    process exited, what /readyz said while it could.)"""
    process = s.cluster[name]
    assert process.popen is not None
    said = ""
    loop = asyncio.get_running_loop()
    leaving: asyncio.TimerHandle | None = None
    started = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    async with httpx.AsyncClient(base_url=process.url, timeout=2) as probe:
        while process.popen.poll() is None:
            try:
                r = await probe.get("/readyz")
                if r.status_code == 503 and routed is not None and routed.is_set() and not leaving:
                    leaving = loop.call_later(0.5, routed.clear)
                said = f"{r.status_code} {r.json()['failing'].get('draining', '')}"
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    return time.monotonic() - started, said


async def flowing(seen: Clients, at_least: int = 30) -> None:
    async def enough() -> bool:
        return len(seen.answered) >= at_least

    await eventually(enough)


def finished_cleanly(s: System, name: str) -> str:
    """The process's log says nothing was cancelled at its stop."""
    text = (s.log_dir / f"{name}.log").read_text(errors="replace")
    assert "cancelling it" not in text and "timeout graceful shutdown exceeded" not in text, text[-3000:]
    return text


async def test_intake_stopped_mid_stream_drains_and_no_client_sees_a_cut_request(pg_admin, broker, tmp_path):
    seen = Clients()
    async with system(
        pg_admin, broker, tmp_path, GRIDCALL_SHUTDOWN_DRAIN=str(DRAIN), GRIDCALL_SHUTDOWN_GRACE=str(GRACE)
    ) as s:
        routed = asyncio.Event()
        routed.set()
        load = asyncio.create_task(stream(s.cluster["intake"].url, scenario_tag("drain-intake"), 10, seen, routed))
        await flowing(seen)
        before = len(seen.answered)
        took, said = await stopped(s, "intake", routed)
        finished_cleanly(s, "intake")
        assert await outbox_rows(s, "intake") == 0  # what it accepted was published before it exited
        served_while_draining = len(seen.answered) - before
        await asyncio.to_thread(s.restart, "intake")
        routed.set()
        await load
        run = await check(s, "drain-intake", seen.answered, set(seen.answered.values()))

    assert said == "503 asked to stop: finishing what it has, taking nothing new"
    assert DRAIN <= took < DRAIN + GRACE
    assert served_while_draining > 0 and seen.closing > 0  # it went on serving, closing each connection
    assert seen.cut == []  # refused connections, yes (nothing sent); cut requests, none
    assert (run.lost, run.doubled) == (0, 0), run.notes
    assert run.accepted == len(seen.answered) > 100


async def test_both_dispatchers_stopped_mid_batch_commit_and_publish_before_they_exit(pg_admin, broker, tmp_path):
    seen = Clients()
    async with system(
        pg_admin, broker, tmp_path, GRIDCALL_SHUTDOWN_DRAIN=str(DRAIN), GRIDCALL_SHUTDOWN_GRACE=str(GRACE)
    ) as s:
        routed = asyncio.Event()
        routed.set()
        load = asyncio.create_task(stream(s.cluster["intake"].url, scenario_tag("drain-dispatch"), 10, seen, routed))
        await flowing(seen)
        (took, said), (took_2, _) = await asyncio.gather(stopped(s, "dispatcher"), stopped(s, "dispatcher-2"))
        for name in ("dispatcher", "dispatcher-2"):
            finished_cleanly(s, name)
        # No dispatcher runs now: a row left in their outbox would wait for the next start.
        assert await outbox_rows(s, "dispatcher") == 0
        for name in ("dispatcher", "dispatcher-2"):
            await asyncio.to_thread(s.restart, name)
        await load
        run = await check(s, "drain-dispatch", seen.answered, set(seen.answered.values()))

    assert said.startswith("503 asked to stop")
    assert DRAIN <= took < DRAIN + GRACE and DRAIN <= took_2 < DRAIN + GRACE
    assert seen.cut == []
    assert (run.lost, run.doubled) == (0, 0), run.notes
