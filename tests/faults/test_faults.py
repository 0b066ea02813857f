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
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.delivery.signing import new_secret
from tests.faults.harness import Fault, Run, Scenario, System, one_run, outbox_rows, table, write
from tests.faults.proxied import BROKER_STALLS, THROUGH_THE_BROKER_PROXY, THROUGH_THE_DATABASE_PROXY
from tests.faults.receivers import Deliveries, Department, FailingHalf, served
from tests.support.adapters import district_with_adapters, secret_env
from tests.support.servers import PrivatePostgres, private_postgres
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

RUNS = int(os.environ.get("GRIDCALL_FAULT_RUNS", "1"))
PAUSE = float(os.environ.get("GRIDCALL_FAULT_BROKER_PAUSE", "10"))  # seconds; `make faults`: 30
# The broker black-holed and half-open take minutes a run (tests/faults/proxied.py): `make faults`.
WITH_BROKER_STALLS = os.environ.get("GRIDCALL_FAULT_BROKER_STALLS") == "1"
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
    # The kill rolled the delete back: the published rows are in the outbox still, to go again.
    assert await outbox_rows(s, "intake") > 0
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


UNIT = "U-G11"  # the grid unit every report of the load is assigned to first
FOR = 10.0  # seconds the unit's system hangs, or the webhook receiver fails half its calls
ADAPTER_TIMEOUT = 2.0  # seconds the unit's system may take (10 by default): deliveries time out while it hangs
# Each delivery tried up to 40 times a quarter second apart (5 s, 5 min... by default): a run's
# backlog drains within seconds, and a receiver failing half its calls fails one 40 times in a row
# once in 10^12.
RETRIES = ",".join(["0s", *["250ms"] * 39])


@dataclass
class Receivers:
    """The systems a run's deliveries go to, each a server of the test's own
    (tests/faults/receivers.py): UNIT's own behind a webhook adapter, and the apps' webhook
    receiver if the notifier's webhook is on; and the checks of what each received against the
    deliveries tables."""

    department: Department
    webhook: FailingHalf | None
    settings: dict[str, str]

    async def check(self, system: System, conn: asyncpg.Connection, run: Run) -> None:
        await Deliveries(
            "adapter",
            self.department,
            "departments_deliveries",
            f"destination = '{UNIT}'",
            # every ticket of the unit was told to its system
            missing=f"SELECT count(*) FROM departments_tickets t WHERE unit_id = '{UNIT}' AND NOT EXISTS "
            "(SELECT 1 FROM departments_deliveries d WHERE d.destination = t.unit_id "
            "AND d.kind = 'gridcall.case.assigned' AND d.body::jsonb #>> '{data,ticket_id}' = t.ticket_id)",
        ).check(system, conn, run)
        if self.webhook is not None:
            await Deliveries(
                "webhook",
                self.webhook,
                "notifier_deliveries",
                "channel = 'webhook'",
                # every notification goes to the webhook, whoever it is for
                missing="SELECT count(*) FROM notifier_notifications n WHERE NOT EXISTS "
                "(SELECT 1 FROM notifier_deliveries d WHERE d.ref = n.key AND d.channel = 'webhook')",
            ).check(system, conn, run)
        d = self.department
        if d.held:
            run.notes.append(f"adapter: {d.held} requests held while its system hung")
        if d.overdue:
            run.notes.append(f"adapter: {d.overdue} held requests still waiting 5 s past the sender's time-out")


@asynccontextmanager
async def receivers(log_dir: Path, webhook: bool = False) -> AsyncIterator[Receivers]:
    """UNIT's system served and its adapter in the run's district; with `webhook`, the apps'
    webhook receiver too, and the notifier's webhook on (it has every notification: some
    seventeen a case under this load, so only the scenario about it has it)."""
    keys = {"unit": new_secret(), "webhook": new_secret()}
    department = Department(keys["unit"], ADAPTER_TIMEOUT)
    receiver = FailingHalf(keys["webhook"]) if webhook else None
    async with AsyncExitStack() as stack:
        unit_url = await stack.enter_async_context(served(department))
        adapter = {"url": unit_url, "secret_env": secret_env(UNIT)}
        district = await asyncio.to_thread(district_with_adapters, log_dir / "district.yaml", {UNIT: adapter})
        settings = {
            "GRIDCALL_JURISDICTION_FILE": str(district),
            secret_env(UNIT): keys["unit"],
            "GRIDCALL_ADAPTER_TIMEOUT": str(ADAPTER_TIMEOUT),
            "GRIDCALL_DELIVERY_RETRY_SCHEDULE": RETRIES,
        }
        if receiver is not None:
            settings["GRIDCALL_NOTIFIER_WEBHOOK_URL"] = await stack.enter_async_context(served(receiver))
            settings["GRIDCALL_NOTIFIER_WEBHOOK_SECRET"] = keys["webhook"]
        yield Receivers(department, receiver, settings)


async def hang_the_adapter(s: System, r: Receivers) -> None:
    """UNIT's system holds every delivery unanswered for FOR seconds (each times out after
    ADAPTER_TIMEOUT and is tried again), then answers again, the held ones first."""
    await r.department.hang(FOR)
    assert r.department.held, "the unit's system hung while nothing was sent to it: the scenario tested nothing"


async def fail_half_the_webhooks(s: System, r: Receivers) -> None:
    """The apps' webhook receiver answers every other call 500 for FOR seconds."""
    assert r.webhook is not None
    await r.webhook.fail_half(FOR)
    assert r.webhook.count(500), "the webhook receiver failed no call: the scenario tested nothing"


SCENARIOS: dict[str, Fault | Scenario[Any]] = {
    "dispatcher kill -9 (one of two)": kill_a_dispatcher,
    "intake kill -9 mid-stream": kill_intake,
    "intake kill -9 between publish and delete": kill_intake_between_publish_and_delete,
    "notifier kill -9": kill_the_notifier,
    "broker paused": pause_the_broker,
    "database backends terminated": terminate_backends,
    "SIGTERM rolling restart": rolling_restart,
    "PostgreSQL restarted (immediate)": restart_postgres,
    "PostgreSQL killed -9": kill_postgres,
    f"department adapter hangs {FOR:.0f} s": Scenario(hang_the_adapter, receivers),
    f"webhook fails half its calls {FOR:.0f} s": Scenario(fail_half_the_webhooks, partial(receivers, webhook=True)),
    **THROUGH_THE_DATABASE_PROXY,
    **THROUGH_THE_BROKER_PROXY,
    **(BROKER_STALLS if WITH_BROKER_STALLS else {}),
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
        run = await one_run(
            pg_admin,
            broker,
            tmp_path / f"run{n}",
            scenario,
            SCENARIOS[scenario],
            postgres,
            db_proxy=scenario in THROUGH_THE_DATABASE_PROXY,
        )
        run.notes.append(f"took {time.monotonic() - started:.0f} s")
        runs.append(run)
        RESULTS.append(run)
    assert all(r.accepted > 0 for r in runs)
    assert [(r.lost, r.doubled) for r in runs] == [(0, 0)] * RUNS, [r.notes for r in runs]
