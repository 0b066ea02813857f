"""The fault suite's machinery: a distributed gridcall (intake, two dispatchers, departments,
the notifier, each a process) on a database and topics of each run's own, a steady stream of
reports under seconds-long SLA limits, one fault injected at a random moment, and the checker
that counts, from the databases, what was accepted, lost and doubled, and how long the system
took to catch up once the fault ended."""

import asyncio
import json
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import httpx

from gridcall.migrate import upgrade
from tests.support.cluster import Cluster, Process, base_env, distributed_settings, gridcall_args
from tests.support.faultproxy import FaultProxy
from tests.support.journey import STREETLIGHT_G11
from tests.support.policies import demo_policy_with
from tests.support.servers import Broker, PrivatePostgres, free_port, scratch_database
from tests.support.waiting import eventually

# Limits of seconds: reports breach and escalate while the fault is on.
QUICK = {"garbage": {tier: {"response": "3s", "resolution": "1h"} for tier in ("grid", "community", "street")}}
RATE = 15.0  # reports a second
SECONDS = 12.0  # of load; the fault starts between 3 s and 6 s into it
CATCH_UP = 90.0  # seconds the system gets, after the load, to bring every accepted case to a handler


@dataclass
class Run:
    scenario: str
    accepted: int = 0
    lost: int = 0
    doubled: int = 0
    recovery: float = 0.0  # seconds from the fault's end until every case accepted by then had a handler
    notes: list[str] = field(default_factory=list)


@dataclass
class System:
    """A run's processes, database and broker, and when its fault ended."""

    cluster: Cluster
    db_url: str
    broker: Broker
    env: dict[str, str]
    log_dir: Path
    postgres: PrivatePostgres | None = None  # the run's own cluster, for the faults that restart or kill it
    db_proxy: FaultProxy | None = None  # between the services and the database, for the network's faults
    fault_ended: float = 0.0

    def restart(self, name: str) -> None:
        self.cluster[name].start()


Fault = Callable[[System], Awaitable[None]]


class Extra(Protocol):
    """What a scenario brings to a run beside the system (servers the system delivers to, say):
    settings for every process (GRIDCALL_ names), and checks of its own on the run's database,
    after the common ones, that add to the run's counts and notes."""

    settings: dict[str, str]

    async def check(self, system: System, conn: asyncpg.Connection, run: Run) -> None: ...


E = TypeVar("E", bound=Extra)


@dataclass(frozen=True)
class Scenario(Generic[E]):
    """A fault that needs more than the system: `extra(log_dir)` gives, for one run, what it
    brings (an async context: started before the processes, stopped after them), and `fault`
    acts on the system and on it."""

    fault: Callable[[System, E], Awaitable[None]]
    extra: Callable[[Path], AbstractAsyncContextManager[E]]


@asynccontextmanager
async def system(
    pg_admin: str,
    broker: Broker,
    log_dir: Path,
    postgres: PrivatePostgres | None = None,
    db_proxy: bool = False,
    **settings: str,
) -> AsyncIterator[System]:
    """The run's database (made, migrated and dropped in a thread: each step runs an event loop
    of its own) and processes; `settings` adds or overrides (GRIDCALL_ names). With `db_proxy`
    the services reach the database through a FaultProxy (System.db_proxy); the migrations and
    the checker reach it directly."""
    database = scratch_database(pg_admin)
    db_url = await asyncio.to_thread(database.__enter__)
    cluster = Cluster()
    proxy: FaultProxy | None = None
    try:
        if db_proxy:
            proxy = FaultProxy.in_front_of(db_url)
        await asyncio.to_thread(upgrade, db_url)
        policy = demo_policy_with(log_dir / "policy.yaml", QUICK)
        env = distributed_settings(
            proxy.route(db_url) if proxy else db_url,
            broker.bootstrap,
            f"f{uuid.uuid4().hex[:10]}",
            **{
                "GRIDCALL_TIMER_INTERVAL": "0.1",
                "GRIDCALL_POLICY_FILE": str(policy),
                "GRIDCALL_SHUTDOWN_GRACE": "10",
                "GRIDCALL_SHUTDOWN_DRAIN": "1",  # a SIGTERM drains, as under an orchestrator
                **settings,
            },
        )
        for name, service in (
            ("intake", "intake"),
            ("dispatcher", "dispatcher"),
            ("dispatcher-2", "dispatcher"),
            ("departments", "departments"),
            ("notifier", "notifier"),
        ):
            port = free_port()
            args = gridcall_args("serve", service, "--port", str(port))
            cluster.processes[name] = p = Process(name, port, args, base_env(env), log_dir / f"{name}.log")
            await asyncio.to_thread(p.start)
        yield System(cluster, db_url, broker, env, log_dir, postgres, proxy)
    finally:
        await asyncio.to_thread(cluster.stop)
        if proxy is not None:
            await asyncio.to_thread(proxy.close)
        await asyncio.to_thread(database.__exit__, None, None, None)


async def load(url: str, tag: str, answered: dict[str, str]) -> None:
    """RATE reports a second for SECONDS, each its own case; a report whose answer did not come
    (the server went away) is sent again with the same Idempotency-Key until it is answered,
    as a careful client would: `answered` maps each report's key to its case."""
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def one(n: int) -> None:
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            key = f"{tag}-{n}"
            body = {**STREETLIGHT_G11, "description": key, "insist": True}
            for _ in range(600):
                try:
                    r = await client.post("/v1/reports", json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
                    continue
                if r.status_code == 202:
                    answered[key] = r.json()["case_id"]
                    return
                await asyncio.sleep(0.2)  # 503 while the database is away, 429 never (no limit here)

        await asyncio.gather(*(one(n) for n in range(int(RATE * SECONDS))))


async def outbox_rows(s: System, service: str) -> int:
    """The rows waiting in `service`'s outbox."""
    conn = await asyncpg.connect(s.db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {service}_outbox"))
    finally:
        await conn.close()


async def scalar(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    return int(await conn.fetchval(sql, *args) or 0)


async def check(
    system: System, scenario: str, answered: dict[str, str], accepted_by_end: set[str], extra: Extra | None = None
) -> Run:
    """Wait until every accepted case has a ticket (recovery), then count what is wrong (and
    what `extra` finds wrong)."""
    run = Run(scenario, accepted=len(answered))
    conn = await asyncpg.connect(system.db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        ids = list(answered.values())
        handled = "SELECT count(DISTINCT case_id) FROM departments_tickets WHERE case_id = ANY($1)"
        deadline = time.monotonic() + CATCH_UP

        def all_handled(cases: list[str]) -> Callable[[], Awaitable[bool]]:
            async def probe() -> bool:
                return await scalar(conn, handled, cases) >= len(cases)

            return probe

        await waited(all_handled(list(accepted_by_end)), deadline)
        run.recovery = max(0.0, time.monotonic() - system.fault_ended)
        await waited(all_handled(ids), deadline)
        reported = await scalar(conn, "SELECT count(DISTINCT case_id) FROM intake_reports WHERE case_id = ANY($1)", ids)
        run.lost = (len(ids) - reported) + (len(ids) - await scalar(conn, handled, ids))
        doubles = {
            "reports for one key": "SELECT count(*) FROM (SELECT description FROM intake_reports "
            "WHERE description LIKE $1 GROUP BY description HAVING count(*) > 1) d",
            "open lead assignments of a case": "SELECT count(*) FROM (SELECT case_id FROM dispatcher_assignments "
            "WHERE role = 'lead' AND status IN ('open', 'claimed') GROUP BY case_id HAVING count(*) > 1) d",
            "active tickets of a case and unit": "SELECT count(*) FROM (SELECT case_id, unit_id "
            "FROM departments_tickets WHERE status IN ('open', 'claimed') GROUP BY 1, 2 HAVING count(*) > 1) d",
            "breaches of one clock": "SELECT count(*) FROM (SELECT details->>'assignment_id', details->>'clock' "
            "FROM dispatcher_history WHERE type = 'case.sla_breached' AND coalesce((details->>'repeat')::int, 0) = 0 "
            "GROUP BY 1, 2 HAVING count(*) > 1) d",
            "escalations from one tier of a case": "SELECT count(*) FROM (SELECT case_id, details->>'from_tier' "
            "FROM dispatcher_history WHERE type = 'case.escalated' GROUP BY 1, 2 HAVING count(*) > 1) d",
        }
        tag = f"{scenario_tag(scenario)}-%"
        for what, sql in doubles.items():
            n = await scalar(conn, sql, tag) if "$1" in sql else await scalar(conn, sql)
            if n:
                run.doubled += n
                run.notes.append(f"{n} doubled: {what}")
        if run.lost:
            run.notes.append(f"{run.lost} lost: accepted without a report row or a ticket after {CATCH_UP:.0f} s")
        for table in ("intake", "dispatcher", "departments", "notifier"):
            waiting = await scalar(conn, f"SELECT count(*) FROM {table}_outbox")
            parked = await scalar(conn, f"SELECT count(*) FROM {table}_deadletters")
            if parked:
                run.notes.append(f"{parked} parked in {table}_deadletters")
                run.lost += parked
            if waiting:
                run.notes.append(f"{waiting} rows still in {table}_outbox")
        if run.lost or any("still in" in n for n in run.notes):
            run.notes += await long_transactions(conn)
        if extra is not None:
            await extra.check(system, conn, run)
    finally:
        await conn.close()
    return run


async def long_transactions(conn: asyncpg.Connection) -> list[str]:
    """The sessions whose transaction has been open 10 s or more (what a stuck run looks for first:
    a session the services gave up on may still hold its locks on the server)."""
    rows = await conn.fetch(
        "SELECT application_name, state, wait_event, extract(epoch FROM now() - xact_start)::int AS age, "
        "left(query, 60) AS query FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND xact_start < now() - interval '10 seconds'"
    )
    return [
        f"session {r['application_name']!r} {r['state']} {r['age']} s ({r['wait_event']}): {r['query']}" for r in rows
    ]


async def waited(probe: Callable[[], Awaitable[bool]], deadline: float) -> None:
    """Until `probe` holds, or the deadline passes (the checker then counts what is missing)."""
    try:
        await eventually(probe, timeout=max(0.1, deadline - time.monotonic()), interval=0.2)
    except AssertionError:
        pass


def scenario_tag(scenario: str) -> str:
    return "".join(c for c in scenario if c.isalnum())[:24]


async def one_run(
    pg_admin: str,
    broker: Broker,
    log_dir: Path,
    scenario: str,
    fault: Fault | Scenario[Any],
    postgres: PrivatePostgres | None = None,
    db_proxy: bool = False,
) -> Run:
    """One run of `scenario`, on `postgres` (a private cluster) when given, else on `pg_admin`'s;
    with `db_proxy`, the services reach the database through a FaultProxy."""
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        extra = await stack.enter_async_context(fault.extra(log_dir)) if isinstance(fault, Scenario) else None
        settings = extra.settings if extra is not None else {}
        admin = postgres.admin if postgres else pg_admin
        s = await stack.enter_async_context(system(admin, broker, log_dir, postgres, db_proxy, **settings))
        answered: dict[str, str] = {}
        streaming = asyncio.create_task(load(s.cluster["intake"].url, scenario_tag(scenario), answered))
        await asyncio.sleep(random.uniform(3.0, 6.0))
        await (fault.fault(s, extra) if isinstance(fault, Scenario) else fault(s))
        s.fault_ended = time.monotonic()
        accepted_by_end = set(answered.values())
        await streaming
        return await check(s, scenario, answered, accepted_by_end, extra)


def table(runs: list[Run]) -> str:
    """scenario × runs × accepted × lost × doubled × recovery p50/max, as text."""
    lines = [f"{'scenario':<38} {'runs':>4} {'accepted':>8} {'lost':>4} {'doubled':>7} {'recovery p50':>12} {'max':>6}"]
    for scenario in dict.fromkeys(r.scenario for r in runs):
        mine = [r for r in runs if r.scenario == scenario]
        rec = [r.recovery for r in mine]
        lines.append(
            f"{scenario:<38} {len(mine):>4} {sum(r.accepted for r in mine):>8} {sum(r.lost for r in mine):>4} "
            f"{sum(r.doubled for r in mine):>7} {statistics.median(rec):>11.1f}s {max(rec):>5.1f}s"
        )
    return "\n".join(lines)


def write(runs: list[Run], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in runs], indent=2, ensure_ascii=False))
