"""Report → first assignment through the four services as separate processes on PostgreSQL
and the broker. Two runs: as fast as intake takes reports (cases/s from the first POST to
the last assignment, with the CPU every process used per case), then paced at a steady rate
(latency from the report's acceptance to its assignment, both read from the services' own
tables afterwards, so measuring adds no load). Checked: every case assigned exactly once.
The notifier's figures (bench/notify.py) run the burst again with email on: a report body of
their own, processes of theirs to meter, and what to wait for and check before the services stop."""

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import pct
from bench.loadgen import wrk
from bench.procs import CpuMeter, peak_rss_mb
from dispatcher.tables import assignments
from intake.tables import reports
from tests.support.cluster import distributed

CONNECTIONS = 32


async def _routed(db_url: str, since: datetime | None = None) -> list[tuple[str, datetime, datetime, int]]:
    """(case id, accepted at, first assigned at, assignments at seq 0) for reports since `since`."""
    engine = create_async_engine(db_url)
    first = (
        select(assignments.c.case_id, func.min(assignments.c.assigned_at).label("at"), func.count().label("n"))
        .where(assignments.c.seq == 0)
        .group_by(assignments.c.case_id)
        .subquery()
    )
    query = select(reports.c.case_id, reports.c.created_at, first.c.at, first.c.n).join(
        first, first.c.case_id == reports.c.case_id
    )
    if since is not None:
        query = query.where(reports.c.created_at >= since)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(query)).all()]  # type: ignore[misc]
    finally:
        await engine.dispose()


def _wait_routed(
    db_url: str, n: int, since: datetime | None, timeout: float
) -> list[tuple[str, datetime, datetime, int]]:
    deadline = time.monotonic() + timeout
    while len(rows := asyncio.run(_routed(db_url, since))) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(rows)} of {n} cases assigned within {timeout:.0f} s")
        time.sleep(0.5)
    return rows


def measure(
    db_url: str,
    env: dict[str, str],
    logs: Path,
    broker_pid: int | None,
    *,
    cases: int,
    rate: float,
    seconds: float,
    body: dict[str, Any] | None = None,
    paced: bool = True,
    more_pids: Mapping[str, int] | None = None,
    settle: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The burst of `cases` reports (each `body`, bench/common.py's by default), then unless
    `paced` is False the paced run; `more_pids` are metered with the services, and `settle`
    is called before they stop, its figures returned as `settled`."""
    steady: list[tuple[str, datetime, datetime, int]] = []
    figures: dict[str, Any] = {}
    with distributed(env, logs) as cluster:
        pids = {name: p.popen.pid for name, p in cluster.processes.items() if p.popen}
        meter = CpuMeter({**pids, **(more_pids or {}), **({"broker": broker_pid} if broker_pid else {})})
        url = f"{cluster['intake'].url}/v1/reports"
        wrk(url, connections=4, requests=40, body=body)  # warm-up: every service has handled a case
        warm = len(_wait_routed(db_url, 40, None, 120))
        meter.start()
        burst = wrk(url, connections=CONNECTIONS, requests=cases, body=body)
        rows = _wait_routed(db_url, warm + burst.accepted, None, 900)
        cpu = meter.stop()
        if paced:
            since = datetime.now().astimezone()
            load = wrk(url, connections=int(rate // 5), seconds=seconds, rate=rate, body=body)  # 200 ms apart
            steady = _wait_routed(db_url, load.accepted, since, 900)
            if load.refused:
                raise SystemExit(f"refused {load.refused} paced reports")
            latency = [(r[2] - r[1]).total_seconds() * 1000 for r in steady]
            figures["paced"] = {
                "target": rate,
                "rate": load.rate,
                "cases": len(steady),
                "assigned_p50_ms": pct(latency, 50),
                "assigned_p99_ms": pct(latency, 99),
            }
        if settle is not None:
            figures["settled"] = settle()
        rss = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    burst_rows = sorted(rows, key=lambda r: r[1])[warm:]
    span = (max(r[2] for r in burst_rows) - min(r[1] for r in burst_rows)).total_seconds()
    doubled = [r for r in rows + steady if r[3] != 1]
    if doubled or burst.refused:
        raise SystemExit(f"{len(doubled)} cases assigned more than once; refused {burst.refused}")
    return {
        "burst": {
            "cases": len(burst_rows),
            "cases_per_s": len(burst_rows) / span,
            "post_rate": burst.rate,
        },
        **figures,
        "cpu_ms_per_case": {k: 1000 * v / len(burst_rows) for k, v in cpu.items()}
        | {"total": 1000 * sum(cpu.values()) / len(burst_rows)},
        "peak_rss_mb": rss,
        "assigned_exactly_once": True,
    }


def main() -> None:
    """`python -m bench.end_to_end --cases 3000`: this part of `make bench` alone, at a size of
    your choosing, on a scratch database and a broker of its own; prints its figures as JSON."""
    import argparse
    import json
    import tempfile
    import uuid

    from bench.common import service_env
    from gridcall.migrate import upgrade
    from tests.support.servers import admin_postgres, kafka_broker, scratch_database

    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300)
    args = parser.parse_args()
    with admin_postgres() as admin, kafka_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        with scratch_database(admin) as db_url:
            upgrade(db_url)
            env = service_env(db_url, broker.bootstrap, f"bench{uuid.uuid4().hex[:6]}")
            pid = broker.process.pid if broker.process else None
            figures = measure(db_url, env, Path(tmp), pid, cases=args.cases, rate=args.rate, seconds=5)
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
