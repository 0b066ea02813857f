"""Intake alone beside a bare FastAPI endpoint (bench/bare_app.py), one uvicorn process each,
driven by wrk in the same run, alternating: POST /v1/reports answered 202 means the report,
its case view, timeline and outbox row are committed to PostgreSQL. The ratio shows what
intake's own work costs. A paced run at `rate` per second gives the latency under a steady
load. Checked while measuring: every 202 has its row."""

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import count_rows
from bench.loadgen import Load, wrk
from intake.tables import reports
from tests.support.cluster import Process, base_env, distributed
from tests.support.servers import free_port

CONNECTIONS = 32


@contextmanager
def bare_app(log_dir: Path) -> Iterator[Process]:
    port = free_port()
    args = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    p = Process("bare", port, args, base_env({}), log_dir / "bare.log")
    try:
        p.start()
        yield p
    finally:
        p.stop()


def _best(loads: list[Load]) -> Load:
    return max(loads, key=lambda load: load.rate)


def measure(
    db_url: str, env: dict[str, str], logs: Path, *, seconds: float, rounds: int, rate: float
) -> dict[str, Any]:
    with distributed(env, logs, services=("intake",)) as cluster, bare_app(logs) as bare_process:
        intake_url = f"{cluster['intake'].url}/v1/reports"
        wrk(f"{bare_process.url}/v1/reports", connections=CONNECTIONS, seconds=2)  # warm-up
        answered = wrk(intake_url, connections=CONNECTIONS, seconds=2).accepted
        bare_runs, intake_runs = [], []
        for _ in range(rounds):
            bare_runs.append(wrk(f"{bare_process.url}/v1/reports", connections=CONNECTIONS, seconds=seconds))
            intake_runs.append(wrk(intake_url, connections=CONNECTIONS, seconds=seconds))
        paced = wrk(intake_url, connections=int(rate // 5), seconds=seconds, rate=rate)  # 200 ms between requests
        answered += sum(r.accepted for r in intake_runs) + paced.accepted
        stored = asyncio.run(count_rows(db_url, reports))
    # wrk stops with requests in flight: those may be stored without their 202 being counted.
    if stored < answered:
        raise SystemExit(f"not durable: {answered} reports answered 202, {stored} rows in {reports.name}")
    if any(r.refused or r.socket_errors for r in [*intake_runs, paced]):
        raise SystemExit(f"intake refused reports or dropped connections: {intake_runs} {paced}")
    bare, intake = _best(bare_runs), _best(intake_runs)
    return {
        "bare": {"rate": bare.rate, "p50_ms": bare.p50_ms, "p99_ms": bare.p99_ms},
        "intake": {"rate": intake.rate, "p50_ms": intake.p50_ms, "p99_ms": intake.p99_ms},
        "ratio": intake.rate / bare.rate,
        "paced": {"target": rate, "rate": paced.rate, "p50_ms": paced.p50_ms, "p99_ms": paced.p99_ms},
        "durable": {"answered_202": answered, "rows": stored},
    }
