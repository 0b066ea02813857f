"""`python -m bench.year`: seed (or reuse) a year, start the services, measure, report."""

import argparse
import asyncio
import hashlib
import json
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.year import PREFIX, RESULTS, SERVICES
from bench.year.measure import explain_all, explaining, measure_all, report, sizes
from bench.year.seed import enrolled, fresh_databases, migrate, record_seed, seed, seeded
from bench.year.serve import ShiftedClock, serve, start_services


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="measure the seed already there (if it has --cases)")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per read, after one warm-up")
    parser.add_argument("--workers", type=int, default=2, help="processes simulating cases")
    parser.add_argument("--explain", action="store_true", help="then log each read's SQL plans (auto_explain)")
    parser.add_argument(
        "--only", action="append", default=[], help="only the reads whose names hold this (repeatable; e.g. queue)"
    )
    args = parser.parse_args()
    only = [o.strip() for o in args.only if o.strip()]

    from tests.support.servers import kafka_broker

    record = asyncio.run(seeded(args.cases)) if args.reuse else None
    secret = secrets.token_urlsafe(32)
    if record is None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        print(f"seeding {args.cases:,} cases, the year up to {now:%Y-%m-%d %H:%M} UTC, into {PREFIX}_*", flush=True)
        asyncio.run(fresh_databases())
        migrate()
        clock = ShiftedClock(now - datetime.now(UTC))
        _, _, handlers = asyncio.run(enrolled(clock, secret))
        figures = seed(args.cases, now, handlers, args.workers)
        asyncio.run(record_seed(args.cases, now, figures))
        print(f"seeded in {figures['seconds_total']:.0f} s: {figures['how']}", flush=True)
    else:
        now = record["now"]
        figures = json.loads(record["figures"])
        print(f"reusing the seed of {args.cases:,} cases up to {now:%Y-%m-%d %H:%M} UTC: {figures['how']}")
        started = time.monotonic()
        migrate()  # as a deployment would: migrations written since the seed run on the year's rows
        figures["migrated_on_reuse_s"] = round(time.monotonic() - started, 1)
        print(f"  schema brought up to date in {figures['migrated_on_reuse_s']:.0f} s", flush=True)
    offset = now - datetime.now(UTC)
    clock = ShiftedClock(offset)
    handler, supervisor, _ = asyncio.run(enrolled(clock, secret))
    tokens = {
        "ops": handler(),
        "handler": handler("U-G11"),
        "D-URBAN": handler("D-URBAN"),
        "supervisor:U-C1": supervisor("U-C1"),
        "supervisor:U-S1": supervisor("U-S1"),
    }
    db_sizes = asyncio.run(sizes())
    out: dict[str, Any] = {"now": now.isoformat(), "seed": figures, "db_sizes": db_sizes, "code": fingerprints()}
    with kafka_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        cluster = start_services(offset.total_seconds(), secret, broker.bootstrap, Path(tmp))
        try:
            urls = {s: cluster[s].url for s in SERVICES}
            print(f"  {'read':<44} {'p50 ms':>10} {'p99 ms':>10} {'warm ms':>10} {'n':>4}  status")
            out |= asyncio.run(measure_all(urls, tokens, cluster, now, args.runs, only))
        finally:
            cluster.stop()
        path = write_results(out)  # the measurements, whatever becomes of the plans
        if args.explain:
            asyncio.run(explaining(True))
            try:
                cluster = start_services(offset.total_seconds(), secret, broker.bootstrap, Path(tmp))
                try:
                    urls = {s: cluster[s].url for s in SERVICES}
                    skip = {r["name"] for r in out["reads"] if "timeout" in r["note"]}
                    out["plans"] = asyncio.run(explain_all(urls, tokens, cluster, now, skip, only))
                finally:
                    cluster.stop()
            finally:
                asyncio.run(explaining(False))
    report(out)
    write_results(out, path)
    print(f"JSON: {path}")


def write_results(out: dict[str, Any], path: Path | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = path or RESULTS / f"year-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    return path


def fingerprints() -> dict[str, str]:
    """The files another engineer rewrites meanwhile, as the services read them at start-up."""
    root = Path(__file__).parents[2]
    files = (
        "dispatcher/figures.py",
        "dispatcher/scorecards.py",
        "dispatcher/usecases.py",
        "dispatcher/board/watch.py",
        "dispatcher/api.py",
        "intake/open311/queries.py",
    )
    return {f: hashlib.sha1((root / f).read_bytes()).hexdigest()[:12] for f in files}


if __name__ == "__main__":
    main()
