"""Embedded mode (`gridcall run`: one process, SQLite, the local bus): reports accepted per
second by `clients` connections, and routed per second (until every case has its ticket)."""

import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.loadgen import wrk
from departments.tables import tickets
from tests.support.cluster import embedded


def _tickets(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {tickets.name}").fetchone()[0])


def measure(var_dir: Path, logs: Path, *, reports: int, clients: int) -> dict[str, Any]:
    env = {"GRIDCALL_VAR_DIR": str(var_dir), "GRIDCALL_RATE_LIMIT": "1000000/minute"}
    with embedded(env, logs) as app:
        start = time.monotonic()
        load = wrk(f"{app.url}/v1/reports", connections=clients, requests=reports)
        deadline = time.monotonic() + 900
        while (routed := _tickets(var_dir / "gridcall.db")) < load.accepted:
            if time.monotonic() > deadline:
                raise SystemExit(f"embedded: {routed} of {load.accepted} reports routed within 900 s")
            time.sleep(0.2)
        routed_in = time.monotonic() - start
    if load.refused:
        raise SystemExit(f"embedded: {load.refused} reports refused")
    return {
        "clients": clients,
        "accepted_per_s": load.rate,
        "p99_ms": load.p99_ms,
        "routed_per_s": load.accepted / routed_in,
        "reports": load.accepted,
    }
