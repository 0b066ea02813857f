"""Seeding: the template's copies and the tail written by COPY into each service's database, the
databases made and migrated, the seed's record."""

import asyncio
import json
import math
import multiprocessing
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from bench.year import (
    ADMIN,
    COPIES,
    DATE,
    PREFIX,
    SERVICES,
    TAIL_DAYS,
    TEMPLATE_DAYS,
    TEMPLATE_HORIZON,
    dsn,
    sqlalchemy_url,
)
from bench.year.simulate import (
    DATABASE_OF,
    SHAPES,
    TAIL_COPY,
    Batch,
    Job,
    Rows,
    Shape,
    simulate,
    token_hash,
    tracking_token,
)

# -- copies of the template ------------------------------------------------------------------


class Copier:
    """The template's rows for copy `copy`: times moved by `copy` fortnights, ids renamed."""

    def __init__(self, template: Rows, template_ids: Sequence[str]) -> None:
        self.rows = template
        self.ids = template_ids
        self.plan = {name: self._plan(SHAPES[name], rows) for name, rows in template.items()}

    @staticmethod
    def _plan(shape: Shape, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Each row with its text columns split at their dates, so a copy only swaps dates."""
        texts = shape.index(shape.texts)
        if not texts:
            return rows
        out = []
        for row in rows:
            r = list(row)
            for i in texts:
                if isinstance(r[i], str) and DATE.search(r[i]):
                    r[i] = tuple(DATE.split(r[i]))
            out.append(tuple(r))
        return out

    def copy(self, name: str, copy: int) -> Iterator[tuple[Any, ...]]:
        shape = SHAPES[name]
        delta = timedelta(days=TEMPLATE_DAYS * copy)
        shift, ids, texts = shape.index(shape.shift), shape.index(shape.ids), shape.index(shape.texts)
        hashed = shape.columns.index(shape.hashed) if shape.hashed else None
        dates: dict[str, str] = {}
        old, new = f"{0:08x}-", f"{copy:08x}-"

        def moved(d: str) -> str:
            if d not in dates:
                dates[d] = (date.fromisoformat(d) + delta).isoformat()
            return dates[d]

        for row in self.plan[name]:
            r = list(row)
            for i in shift:
                if r[i] is not None:
                    r[i] = r[i] + delta
            for i in ids:
                r[i] = r[i].replace(old, new, 1)
            for i in texts:
                v = r[i]
                if isinstance(v, tuple):
                    r[i] = "".join([p if j % 2 == 0 else moved(p) for j, p in enumerate(v)]).replace(old, new)
                elif isinstance(v, str):
                    r[i] = v.replace(old, new)
            if hashed is not None:
                r[hashed] = token_hash(tracking_token(r[shape.columns.index("case_id")]))
            yield tuple(r)


# -- databases -------------------------------------------------------------------------------


async def seeded(cases: int) -> dict[str, Any] | None:
    """The seed's record, if the databases hold a seed of `cases` cases."""
    try:
        conn = await asyncpg.connect(dsn("dispatcher"))
    except (asyncpg.InvalidCatalogNameError, OSError):
        return None
    try:
        row = await conn.fetchrow("SELECT * FROM bench_year_seed WHERE cases = $1", cases)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return dict(row) if row else None


async def fresh_databases() -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        for s in SERVICES:
            await conn.execute(f'DROP DATABASE IF EXISTS "{PREFIX}_{s}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{PREFIX}_{s}"')
    finally:
        await conn.close()


def migrate() -> None:
    from gridcall.migrate import upgrade

    for s in SERVICES:
        upgrade(sqlalchemy_url(s), s)


async def enrolled(clock: Any, secret: str) -> tuple[Any, Any, dict[str, tuple[str, str]]]:
    """A handler in every unit, supervisors of C1 and S1 (made if missing, dated by the
    shifted clock); the token factories, and each unit's handler (staff id, name)."""
    from departments.usecases.staff import StaffRole
    from tests.support.staff import enrol

    url = sqlalchemy_url("departments")
    handler = await enrol(url, secret, clock=clock)
    supervisor = await enrol(url, secret, ["U-C1", "U-S1"], StaffRole.SUPERVISOR, clock=clock)
    conn = await asyncpg.connect(dsn("departments"))
    try:
        rows = await conn.fetch("SELECT unit_id, staff_id, name FROM departments_staff WHERE role = 'handler'")
    finally:
        await conn.close()
    return handler, supervisor, {r["unit_id"]: (r["staff_id"], r["name"]) for r in rows}


class Loader:
    """COPY into each service's database, one connection each."""

    def __init__(self) -> None:
        self.conns: dict[str, asyncpg.Connection] = {}
        self.counts: dict[str, int] = dict.fromkeys(SHAPES, 0)

    async def open(self) -> None:
        for s in SERVICES:
            self.conns[s] = await asyncpg.connect(dsn(s))
            await self.conns[s].execute("SET synchronous_commit = off")

    async def write(self, name: str, rows: Iterable[tuple[Any, ...]]) -> None:
        rows = list(rows)
        if rows:
            conn = self.conns[DATABASE_OF[name]]
            await conn.copy_records_to_table(name, records=rows, columns=list(SHAPES[name].columns))
            self.counts[name] += len(rows)

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()


async def _load(tables: Iterable[tuple[str, Iterable[tuple[Any, ...]]]]) -> dict[str, int]:
    loader = Loader()
    await loader.open()
    try:
        for name, rows in tables:
            await loader.write(name, rows)
    finally:
        await loader.close()
    return loader.counts


def simulate_and_write(job: Job) -> tuple[int, dict[str, int]]:
    """A worker's tail job: simulate its cases, COPY their rows itself."""
    batch = simulate(job)
    return len(batch.cases), asyncio.run(_load(batch.rows.items()))


COPIER: "Copier | None" = None  # the template, inherited by the forked workers that write its copies


def write_copy(copy: int) -> dict[str, int]:
    assert COPIER is not None
    copier = COPIER
    return asyncio.run(_load((name, copier.copy(name, copy)) for name in SHAPES))


def plan_of(cases: int, now: datetime, seed: int = 21) -> tuple[list[tuple[int, float]], list[tuple[int, float]], int]:
    """(template cases, tail cases, template size): when each is reported."""
    rng = random.Random(seed)
    template_n = math.ceil(cases * (COPIES * TEMPLATE_DAYS / 365) / COPIES)
    tail_n = max(0, cases - template_n * COPIES)
    start = now - timedelta(days=365)
    tail_start = now - timedelta(days=TAIL_DAYS)
    span, tail_span = TEMPLATE_DAYS * 86400, TAIL_DAYS * 86400
    # a few more template cases than needed: those still open at their horizon are dropped
    template = sorted((n, start.timestamp() + rng.uniform(0, span)) for n in range(int(template_n * 1.08) + 20))
    tail = [(n, tail_start.timestamp() + rng.uniform(0, tail_span)) for n in range(tail_n)]
    tail.sort(key=lambda t: t[1])
    return template, tail, template_n


def _jobs(
    todo: list[tuple[int, float]], copy: int, now: datetime, template: bool, handlers: dict[str, tuple[str, str]]
) -> list[Job]:
    size = 1000
    return [
        ((copy * 7919 + i) & 0xFFFFFFF, copy, todo[i : i + size], now.timestamp(), template, handlers)
        for i in range(0, len(todo), size)
    ]


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def seed(cases: int, now: datetime, handlers: dict[str, tuple[str, str]], workers: int) -> dict[str, Any]:
    global COPIER
    started = time.monotonic()
    template_plan, tail_plan, template_n = plan_of(cases, now)
    counts: dict[str, int] = dict.fromkeys(SHAPES, 0)
    template = Batch()
    simulated = dropped = 0
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for b in pool.imap(simulate, _jobs(template_plan, 0, now, True, handlers)):
            dropped += b.dropped
            simulated += len(b.cases) + b.dropped
            for name in SHAPES:
                template.rows[name] += b.rows[name]
            template.cases += b.cases
            if len(template.cases) >= template_n:
                pool.terminate()
                break
    keep = template.cases[:template_n]
    if len(keep) < template_n:
        raise SystemExit(f"only {len(keep)} of {template_n} template cases closed within their horizon")
    cut = set(keep)
    for name, rows in template.rows.items():
        template.rows[name] = [r for r in rows if _case_of(name, r) in cut]
    print(
        f"  template: {template_n} cases ({simulated} simulated, {dropped} still open after "
        f"{TEMPLATE_HORIZON.days} days dropped) in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    COPIER = Copier(template.rows, keep)
    del template
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for i, written in enumerate(pool.imap_unordered(write_copy, range(COPIES)), 1):
            _add(counts, written)
            if i % 5 == 0 or i == COPIES:
                print(f"  {i}/{COPIES} copies written ({time.monotonic() - started:.0f} s)", flush=True)
    COPIER = None
    tail_cases = 0
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for n, written in pool.imap_unordered(simulate_and_write, _jobs(tail_plan, TAIL_COPY, now, False, handlers)):
            tail_cases += n
            _add(counts, written)
    print(f"  tail: {tail_cases} cases of the last {TAIL_DAYS} days ({time.monotonic() - started:.0f} s)", flush=True)
    written_s = time.monotonic() - started
    asyncio.run(vacuum())
    total = time.monotonic() - started
    how = (
        f"{template_n} template cases (figures-test generator, acted on until closed; {dropped} of {simulated} "
        f"dropped as still open after {TEMPLATE_HORIZON.days} days) reported over {TEMPLATE_DAYS} days, copied "
        f"{COPIES} times at {TEMPLATE_DAYS}-day steps over the first {COPIES * TEMPLATE_DAYS} days with new ids; "
        f"{tail_cases} distinct simulated cases over the last {TAIL_DAYS} days; COPY per table, 2 processes"
    )
    return {
        "cases": template_n * COPIES + tail_cases,
        "template_cases": template_n,
        "tail_cases": tail_cases,
        "rows": counts,
        "seconds_written": round(written_s, 1),
        "seconds_total": round(total, 1),
        "how": how,
    }


def _case_of(name: str, row: tuple[Any, ...]) -> str:
    return str(row[SHAPES[name].columns.index("case_id")])


# Tables a running district fills in time order, which the seed writes case by case; put back in
# time order (a BRIN index over rows out of order reads several times the rows a window holds).
IN_TIME_ORDER = {"dispatcher": ("dispatcher_history", "at")}


async def vacuum() -> None:
    for service, (table, column) in IN_TIME_ORDER.items():
        conn = await asyncpg.connect(dsn(service))
        try:
            await conn.execute(f"CREATE INDEX bench_in_time_order ON {table} ({column})")
            await conn.execute(f"CLUSTER {table} USING bench_in_time_order")
            await conn.execute("DROP INDEX bench_in_time_order")
        finally:
            await conn.close()
    for s in SERVICES:
        conn = await asyncpg.connect(dsn(s))
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()


async def record_seed(cases: int, now: datetime, figures: dict[str, Any]) -> None:
    conn = await asyncpg.connect(dsn("dispatcher"))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_year_seed (cases integer PRIMARY KEY, now timestamptz NOT NULL, "
            "seeded_at timestamptz NOT NULL, figures jsonb NOT NULL)"
        )
        await conn.execute("DELETE FROM bench_year_seed")
        await conn.execute("INSERT INTO bench_year_seed VALUES ($1, $2, now(), $3)", cases, now, json.dumps(figures))
    finally:
        await conn.close()
