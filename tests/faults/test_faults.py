"""gridcall under faults: each scenario runs the distributed system (tests/faults/harness.py)
under a steady stream of reports with seconds-long SLA limits, injects its fault at a random
moment, and counts what was accepted, lost and doubled, and how long the system took to catch
up. Every scenario must lose nothing and double nothing.

`make test` runs each scenario once; `make faults` runs GRIDCALL_FAULT_RUNS (20) of each and
writes the table (printed, and as JSON under bench/results/)."""

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from tests.faults.harness import Fault, Run, System, one_run, table, write
from tests.support.servers import PrivatePostgres, private_postgres
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

RUNS = int(os.environ.get("GRIDCALL_FAULT_RUNS", "1"))
PAUSE = float(os.environ.get("GRIDCALL_FAULT_BROKER_PAUSE", "10"))  # seconds; `make faults`: 30
RESULTS: list[Run] = []


async def kill_a_dispatcher(s: System) -> None:
    """kill -9 of one of two dispatchers, mid-batch; it comes back two seconds later."""
    s.cluster["dispatcher"].kill()
    await asyncio.sleep(2)
    await asyncio.to_thread(s.restart, "dispatcher")


async def kill_intake(s: System) -> None:
    """kill -9 of intake while reports stream in; its clients send again what went unanswered."""
    s.cluster["intake"].kill()
    await asyncio.sleep(1)
    await asyncio.to_thread(s.restart, "intake")


async def kill_intake_between_publish_and_delete(s: System) -> None:
    """kill -9 of intake whose relay has put its outbox rows on the bus and not yet committed
    their delete: intake is restarted with a failpoint that pauses its relay there
    (services/runtime/failpoints.py), killed when its log says it paused, and started again as
    it was. The rows go out a second time; the consumers' inboxes drop the repeats."""
    intake = s.cluster["intake"]
    plain = intake.env
    await asyncio.to_thread(intake.stop)
    intake.env = {**plain, "GRIDCALL_FAILPOINTS": "relay.published=5"}
    logged = intake.log.stat().st_size
    try:
        await asyncio.to_thread(s.restart, "intake")

        async def paused() -> bool:
            with intake.log.open("rb") as log:
                log.seek(logged)
                return b"failpoint relay.published" in log.read()

        await eventually(paused, timeout=30)
        intake.kill()
    finally:
        intake.env = plain
    await asyncio.to_thread(s.restart, "intake")


async def kill_the_notifier(s: System) -> None:
    """kill -9 of the notifier with deliveries in flight."""
    s.cluster["notifier"].kill()
    await asyncio.sleep(1)
    await asyncio.to_thread(s.restart, "notifier")


async def pause_the_broker(s: System) -> None:
    """The broker frozen (SIGSTOP: Tansu keeps its log in memory, so it is paused, never restarted)."""
    s.broker.pause()
    try:
        await asyncio.sleep(PAUSE)
    finally:
        s.broker.resume()


async def terminate_backends(s: System) -> None:
    """Every service's PostgreSQL connections terminated, twice a second for five seconds."""
    admin = await asyncpg.connect(s.db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for _ in range(10):
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def rolling_restart(s: System) -> None:
    """SIGTERM to every service in turn, each started again before the next goes."""
    for name in ("dispatcher", "departments", "notifier", "dispatcher-2", "intake"):
        process = s.cluster[name]
        assert process.popen is not None
        process.popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.popen.wait, 30)
        await asyncio.to_thread(s.restart, name)


async def restart_postgres(s: System) -> None:
    """PostgreSQL itself restarted in immediate mode: every connection gone, crash recovery."""
    assert s.postgres is not None
    await asyncio.to_thread(s.postgres.restart_immediately)


async def kill_postgres(s: System) -> None:
    """PostgreSQL's postmaster killed with -9, then started again."""
    assert s.postgres is not None
    await asyncio.to_thread(s.postgres.kill_9)


SCENARIOS: dict[str, Fault] = {
    "dispatcher kill -9 (one of two)": kill_a_dispatcher,
    "intake kill -9 mid-stream": kill_intake,
    "intake kill -9 between publish and delete": kill_intake_between_publish_and_delete,
    "notifier kill -9": kill_the_notifier,
    "broker paused": pause_the_broker,
    "database backends terminated": terminate_backends,
    "SIGTERM rolling restart": rolling_restart,
    "PostgreSQL restarted (immediate)": restart_postgres,
    "PostgreSQL killed -9": kill_postgres,
}
ON_A_PRIVATE_CLUSTER = {"PostgreSQL restarted (immediate)", "PostgreSQL killed -9"}


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of the suite's own on a free port, for the faults that restart or kill it."""
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="module", autouse=True)
def the_table():
    """After the scenarios: the table, printed and written as JSON."""
    yield
    if RESULTS:
        print("\n" + table(RESULTS))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = os.environ.get("GRIDCALL_FAULT_TABLE")
        if target:
            write(RESULTS, Path(target) / f"faults-{stamp}.json")


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_nothing_accepted_is_lost_or_doubled(scenario, pg_admin, broker, tmp_path, request):
    postgres = request.getfixturevalue("own_postgres") if scenario in ON_A_PRIVATE_CLUSTER else None
    runs = []
    for n in range(RUNS):
        started = time.monotonic()
        run = await one_run(pg_admin, broker, tmp_path / f"run{n}", scenario, SCENARIOS[scenario], postgres)
        run.notes.append(f"took {time.monotonic() - started:.0f} s")
        runs.append(run)
        RESULTS.append(run)
    assert all(r.accepted > 0 for r in runs)
    assert [(r.lost, r.doubled) for r in runs] == [(0, 0)] * RUNS, [r.notes for r in runs]
