"""Timing the reads people wait on, the databases' sizes, the services' memory, and the plans
(auto_explain) of the slowest statements; the report."""

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from bench.procs import memory_mb
from bench.year import ADMIN, PREFIX, SERVICES, TIMEOUT, dsn
from bench.year.simulate import tracking_token

ZONE = ZoneInfo("Asia/Shanghai")  # the demo policy's calendar.timezone

# -- measuring -------------------------------------------------------------------------------


async def sizes() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in SERVICES:
        conn = await asyncpg.connect(dsn(s))
        try:
            total = await conn.fetchval("SELECT pg_database_size(current_database())")
            tables = await conn.fetch(
                "SELECT c.relname, pg_total_relation_size(c.oid) AS size, c.reltuples::bigint AS rows "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC LIMIT 6"
            )
        finally:
            await conn.close()
        out[s] = {
            "mb": round(total / 2**20, 1),
            "tables": {r["relname"]: {"mb": round(r["size"] / 2**20, 1), "rows": r["rows"]} for r in tables},
        }
    return out


@dataclass
class Read:
    name: str
    service: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    token: str = "ops"
    stream: bool = False
    varies: str | None = None  # "case": a different case each request


@dataclass
class Timed:
    name: str
    warm_ms: float | None
    times_ms: list[float]
    status: int | None
    note: str = ""

    def figures(self) -> dict[str, Any]:
        from bench.common import pct

        return {
            "name": self.name,
            "warm_ms": self.warm_ms,
            "n": len(self.times_ms),
            "p50_ms": round(pct(self.times_ms, 50), 1) if self.times_ms else None,
            "p99_ms": round(pct(self.times_ms, 99), 1) if self.times_ms else None,
            "max_ms": round(max(self.times_ms), 1) if self.times_ms else None,
            "status": self.status,
            "note": self.note,
        }


class Measure:
    def __init__(
        self,
        urls: dict[str, str],
        tokens: dict[str, str],
        cases: list[str],
        runs: int,
        pids: dict[str, int],
        cluster: Any = None,
    ) -> None:
        self.pids = pids
        self.cluster = cluster
        self.restarts: list[dict[str, Any]] = []
        self.urls = urls
        self.tokens = tokens
        self.cases = cases
        self.runs = runs
        self.client = httpx.AsyncClient(timeout=TIMEOUT)

    async def once(self, read: Read, i: int) -> tuple[float, int, Any]:
        path = read.path
        headers = {"Authorization": f"Bearer {self.tokens[read.token]}"} if read.token else {}
        if read.varies == "case":
            cid = self.cases[i % len(self.cases)]
            path = path.format(case_id=cid)
            headers["X-Tracking-Token"] = tracking_token(cid)
        url = self.urls[read.service] + path
        started = time.perf_counter()
        if read.stream:
            async with self.client.stream("GET", url, params=read.params, headers=headers) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        break
                return (time.perf_counter() - started) * 1000, r.status_code, None
        r = await self.client.get(url, params=read.params, headers=headers)
        took = (time.perf_counter() - started) * 1000
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
        return took, r.status_code, body

    async def time(self, read: Read) -> Timed:
        try:
            warm, status, _ = await self.once(read, 0)
        except httpx.TimeoutException:
            said = await self.settle(read.service)
            return Timed(read.name, None, [], None, f"timeout after {TIMEOUT:.0f} s{said}")
        if status >= 400:
            return Timed(read.name, round(warm, 1), [], status, f"answered {status}")
        runs = self.runs if warm < 1000 else 5 if warm < 10_000 else 2 if warm < 30_000 else 1
        times: list[float] = []
        for i in range(1, runs + 1):
            try:
                took, status, _ = await self.once(read, i)
            except httpx.TimeoutException:
                said = await self.settle(read.service)
                return Timed(read.name, round(warm, 1), times, status, f"timeout after {TIMEOUT:.0f} s{said}")
            if status >= 400:
                return Timed(read.name, round(warm, 1), times, status, f"answered {status} after {took:,.0f} ms")
            times.append(took)
        return Timed(read.name, round(warm, 1), times, status, "" if runs == self.runs else f"slow: {runs} runs")

    async def settle(self, service: str) -> str:
        """After a timeout the service is still working on the request (and holding what it
        loaded): its peak memory is noted, and it is restarted so the next reads start clean."""
        peak = memory_mb(self.pids[service]).get("VmHWM", 0.0)
        self.restarts.append({"service": service, "peak_rss_mb": peak})
        if self.cluster is None:
            return f"; {service} peak {peak:,.0f} MB"
        process = self.cluster[service]
        await asyncio.to_thread(process.stop)
        await asyncio.to_thread(process.start, 120)
        assert process.popen is not None
        self.pids[service] = process.popen.pid
        return f"; {service} peak RSS {peak:,.0f} MB, restarted"

    async def deep_cursor(self, read: Read, key: str, pages: int) -> tuple[Read, int]:
        """The read at the cursor of page `pages` (or the last page there is)."""
        params = dict(read.params)
        depth = 1
        for _ in range(pages - 1):
            _, status, body = await self.once(Read(read.name, read.service, read.path, params, read.token), 0)
            if status != 200 or not body or not body.get(key):
                break
            params["cursor"] = body[key]
            depth += 1
        name = read.name.replace("first page", f"page {depth} (deep cursor)")
        return Read(name, read.service, read.path, params, read.token), depth


def chosen(now: datetime, only: Sequence[str]) -> list[Read]:
    """The reads whose names hold one of `only` (every read if it is empty)."""
    return [r for r in reads(now) if not only or any(o.lower() in r.name.lower() for o in only)]


def reads(now: datetime) -> list[Read]:
    today = now.astimezone(ZONE).replace(hour=0, minute=0, second=0, microsecond=0)

    def window(days: int) -> dict[str, str]:
        """Whole days up to now, as the board asks: from local midnight `days` days back (today's
        from its midnight)."""
        return {"since": (today - timedelta(days=days - 1)).isoformat(), "until": now.isoformat()}

    def rolling(days: int) -> dict[str, str]:
        """`days` × 24 hours up to now, to the minute: a ragged hour at either end."""
        return {"since": (now - timedelta(days=days)).isoformat(), "until": now.isoformat()}

    return [
        Read("handler queue U-G11, first page", "departments", "/v1/units/U-G11/tickets", token="handler"),
        Read(
            "U-G11 resolved tickets, first page",
            "departments",
            "/v1/units/U-G11/tickets",
            {"status": "resolved"},
            token="handler",
        ),
        Read("queue D-URBAN (largest), first page", "departments", "/v1/units/D-URBAN/tickets", token="D-URBAN"),
        Read("supervisor subtree queue U-C1", "departments", "/v1/tickets", token="supervisor:U-C1"),
        Read("supervisor subtree queue U-S1", "departments", "/v1/tickets", token="supervisor:U-S1"),
        Read("GET /v1/cases/{id}", "intake", "/v1/cases/{case_id}", token="", varies="case"),
        Read("GET /v1/ops/cases/{id}", "dispatcher", "/v1/ops/cases/{case_id}", varies="case"),
        Read("ops/breaches state=all, month", "dispatcher", "/v1/ops/breaches", {"state": "all", **window(30)}),
        Read("ops/watch (board rows)", "dispatcher", "/v1/ops/watch"),
        Read("board snapshot (SSE)", "dispatcher", "/v1/ops/breaches/stream", stream=True),
        Read("public/results, first page", "intake", "/v1/public/results", token=""),
        Read("Open311 GET requests (90 days)", "intake", "/open311/v2/requests.json", token=""),
        Read("Open311 servicerequestupdates (90 d)", "intake", "/open311/v2/servicerequestupdates.json", token=""),
        Read("ops/stats, day", "dispatcher", "/v1/ops/stats", window(1)),
        Read("ops/stats, day, street S1", "dispatcher", "/v1/ops/stats", {**window(1), "street": "S1"}),
        Read("ops/stats, month", "dispatcher", "/v1/ops/stats", window(30)),
        Read("ops/stats, month, street S1", "dispatcher", "/v1/ops/stats", {**window(30), "street": "S1"}),
        Read("ops/stats, year", "dispatcher", "/v1/ops/stats", window(365)),
        Read("ops/stats, year, street S1", "dispatcher", "/v1/ops/stats", {**window(365), "street": "S1"}),
        Read("ops/stats, rolling 30 d (ragged ends)", "dispatcher", "/v1/ops/stats", rolling(30)),
        Read("ops/stats, rolling 365 d (ragged ends)", "dispatcher", "/v1/ops/stats", rolling(365)),
        Read("ops/stats/daily, year", "dispatcher", "/v1/ops/stats/daily", window(365)),
        Read("scorecards grids, quarter", "dispatcher", "/v1/ops/scorecards", {"kind": "grid", **window(91)}),
        Read("scorecards grids, year", "dispatcher", "/v1/ops/scorecards", {"kind": "grid", **window(365)}),
    ]


DEEP = {  # reads timed again at the cursor of a later page: (the answer's cursor, the page)
    "handler queue U-G11, first page": ("next_cursor", 20),
    "U-G11 resolved tickets, first page": ("next_cursor", 50),
    "queue D-URBAN (largest), first page": ("next_cursor", 20),
    "public/results, first page": ("next_cursor", 50),
}


async def sample_cases(n: int) -> list[str]:
    conn = await asyncpg.connect(dsn("intake"))
    try:
        rows = await conn.fetch("SELECT case_id FROM intake_case_views ORDER BY random() LIMIT $1", n)
    finally:
        await conn.close()
    return [r["case_id"] for r in rows]


async def measure_all(
    urls: dict[str, str], tokens: dict[str, str], cluster: Any, now: datetime, runs: int, only: Sequence[str]
) -> dict[str, Any]:
    cases = await sample_cases(max(60, runs + 5))
    pids = {s: p.popen.pid for s, p in cluster.processes.items() if p.popen}
    m = Measure(urls, tokens, cases, runs, pids, cluster)
    rss_before = {s: memory_mb(p) for s, p in pids.items()}
    results = []
    try:
        for read in chosen(now, only):
            timed = await m.time(read)
            results.append(timed)
            print(_line(timed.figures()), flush=True)
            if read.name in DEEP and timed.status == 200:
                key, pages = DEEP[read.name]
                deep, depth = await m.deep_cursor(read, key, pages)
                timed = await m.time(deep)
                results.append(timed)
                print(_line(timed.figures()), flush=True)
    finally:
        await m.client.aclose()
    rss_after = {s: memory_mb(p) for s, p in m.pids.items()}
    return {
        "reads": [t.figures() for t in results],
        "rss_before": rss_before,
        "rss_after": rss_after,
        "restarts_after_timeouts": m.restarts,
    }


def _line(f: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:,.1f}"

    return (
        f"  {f['name']:<44} {ms(f['p50_ms']):>10} {ms(f['p99_ms']):>10} {ms(f['warm_ms']):>10} "
        f"{f['n']:>4}  {f['status'] or '-'} {f['note']}"
    )


# -- EXPLAIN, through auto_explain on the bench's own databases --------------------------------

LOG = Path("/var/log/postgresql/postgresql-15-main.log")
EXPLAIN_SETTINGS = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_nested_statements": "off",
}


async def explaining(on: bool) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        for s in SERVICES:
            for k, v in EXPLAIN_SETTINGS.items():
                if on:
                    await conn.execute(f"ALTER DATABASE \"{PREFIX}_{s}\" SET {k} = '{v}'")
                else:
                    await conn.execute(f'ALTER DATABASE "{PREFIX}_{s}" RESET {k}')
    finally:
        await conn.close()


# The statements the services' loops run on their own (outbox relays, timers, deliveries, the
# pruner, rate windows, locks), not those of the read.
BACKGROUND = re.compile(
    r"Query Text: (WITH RECURSIVE typeinfo_tree|SELECT pg_try_advisory|DELETE FROM \w+_(outbox|rate_windows)"
    r"|UPDATE \w+_deliveries|SELECT min\(dispatcher_timers|SELECT max\(dispatcher_history)"
    r"|SKIP LOCKED"
)


def plans_logged(since: int, service: str) -> list[str]:
    """The plans auto_explain logged since byte `since` of the log for `service`'s database."""
    with LOG.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    entries = re.split(r"\n(?=\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+ \w+ \[)", text)
    mine = f"@{PREFIX}_{service} "
    return [
        e
        for e in entries
        if mine in e.split("\n", 1)[0] and "duration:" in e and "Query Text" in e and not BACKGROUND.search(e)
    ]


def _duration(entry: str) -> float:
    found = re.search(r"duration: ([\d.]+) ms", entry)
    return float(found.group(1)) if found else 0.0


async def explain_all(
    urls: dict[str, str], tokens: dict[str, str], cluster: Any, now: datetime, skip: set[str], only: Sequence[str]
) -> dict[str, list[str]]:
    """One request per read (not those that timed out when measured), every statement's plan
    logged by auto_explain; the three slowest statements' plans per read."""
    cases = await sample_cases(5)
    pids = {s: p.popen.pid for s, p in cluster.processes.items() if p.popen}
    m = Measure(urls, tokens, cases, 1, pids, cluster)
    out: dict[str, list[str]] = {}
    try:
        for read in chosen(now, only):
            if read.name in skip:
                out[read.name] = ["timed out when measured: not explained"]
                continue
            start = LOG.stat().st_size  # noqa: ASYNC240 - a stat between requests
            try:
                _, status, _ = await m.once(read, 1)
            except httpx.TimeoutException:
                out[read.name] = ["timeout" + await m.settle(read.service)]
                continue
            await asyncio.sleep(0.3)
            found = plans_logged(start, read.service)
            if status != 200:
                found.insert(0, f"answered {status}")
            found.sort(key=lambda e: -_duration(e))
            out[read.name] = found[:3]
    finally:
        await m.client.aclose()
    return out


def report(out: dict[str, Any]) -> None:
    seed = out["seed"]
    print(f"\nA year up to {out['now']}: {seed['cases']:,} cases; seeded in {seed['seconds_total']:.0f} s")
    print("  code: " + ", ".join(f"{f} {h}" for f, h in out["code"].items()))
    print(f"  seeding: {seed['how']}")
    print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in seed["rows"].items()))
    print(f"\n  {'read':<44} {'p50 ms':>10} {'p99 ms':>10} {'warm ms':>10} {'n':>4}  status")
    for f in out["reads"]:
        print(_line(f))
    print("\n  database sizes:")
    for s, d in out["db_sizes"].items():
        top = ", ".join(f"{t} {v['mb']:,.0f} MB" for t, v in list(d["tables"].items())[:4])
        print(f"    {s:<12} {d['mb']:>10,.0f} MB   ({top})")
    print("\n  service RSS (MB): before reads -> after reads (peak)")
    for s in out["rss_before"]:
        b, a = out["rss_before"][s], out["rss_after"][s]
        print(f"    {s:<12} {b.get('VmRSS', 0):>8,.0f} -> {a.get('VmRSS', 0):>8,.0f}   (peak {a.get('VmHWM', 0):,.0f})")
    for name, plans in out.get("plans", {}).items():
        print(f"\n  plans for {name}:")
        for p in plans:
            print("    " + p.replace("\n", "\n    "))
