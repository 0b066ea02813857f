"""make bench: gridcall's figures in one table, the same as JSON under bench/results/.

Every part runs the services as separate processes on the machine's PostgreSQL and a broker
(or embedded, on SQLite), with wrk as the load generator, and checks correctness while it
measures: every 202 has its rows, every case is assigned exactly once, every breach is
escalated exactly once, every email delivered once. `--quick` (make bench-quick) is a smaller run for checking a change.
"""

import argparse
import json
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import embedded, end_to_end, intake_only, notify, timers
from bench.common import service_env
from gridcall.migrate import upgrade
from tests.support.servers import admin_postgres, kafka_broker, scratch_database

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Size:
    seconds: float  # each intake / bare run
    rounds: int  # alternations of bare and intake
    cases: int  # end to end, as fast as intake takes them
    embedded_reports: int
    due: int
    pending: int
    messages: int  # per channel, drained by the notifier


FULL = Size(seconds=10, rounds=2, cases=10_000, embedded_reports=5_000, due=10_000, pending=1_000_000, messages=2_000)
QUICK = Size(seconds=4, rounds=1, cases=1_000, embedded_reports=600, due=1_000, pending=20_000, messages=500)


def measure(size: Size) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with admin_postgres() as admin, kafka_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        with scratch_database(admin) as db_url:
            upgrade(db_url)
            env = service_env(db_url, broker.bootstrap, f"bench{uuid.uuid4().hex[:6]}")
            (logs / "intake").mkdir()
            figures["intake"] = intake_only.measure(
                db_url, env, logs / "intake", seconds=size.seconds, rounds=size.rounds, rate=1000
            )
        with scratch_database(admin) as db_url:
            upgrade(db_url)
            env = service_env(db_url, broker.bootstrap, f"bench{uuid.uuid4().hex[:6]}")
            (logs / "e2e").mkdir()
            pid = broker.process.pid if broker.process else None
            figures["end_to_end"] = end_to_end.measure(
                db_url, env, logs / "e2e", pid, cases=size.cases, rate=500, seconds=size.seconds
            )
        (logs / "e2e-email").mkdir()
        smtp_log = logs / "e2e-email" / "smtp.jsonl"
        with scratch_database(admin) as db_url, notify.smtp_server(smtp_log) as (smtp_port, smtp_pid):
            upgrade(db_url)
            env = service_env(db_url, broker.bootstrap, f"bench{uuid.uuid4().hex[:6]}")
            env, body = notify.email_on(env, smtp_port, logs / "e2e-email")
            on = end_to_end.measure(
                db_url,
                env,
                logs / "e2e-email",
                pid,
                cases=size.cases,
                rate=500,
                seconds=size.seconds,
                body=body,
                paced=False,
                more_pids={"smtp": smtp_pid},
                settle=lambda: notify.emails_settled(db_url, smtp_log),
            )
            ratio = on["burst"]["cases_per_s"] / figures["end_to_end"]["burst"]["cases_per_s"]
            figures["email_on"] = {**on, "ratio": ratio, "goal_met": ratio >= 0.8}
        with scratch_database(admin) as db_url:
            upgrade(db_url)
            env = service_env(db_url, broker.bootstrap, f"bench{uuid.uuid4().hex[:6]}")
            (logs / "notify").mkdir()
            figures["notify"] = notify.drain(db_url, env, logs / "notify", emails=size.messages, sms=size.messages)
        (logs / "embedded").mkdir()
        figures["embedded"] = embedded.measure(
            logs / "var", logs / "embedded", reports=size.embedded_reports, clients=12
        )
        with scratch_database(admin) as db_url:
            upgrade(db_url)
            (logs / "timers").mkdir()
            figures["timers"] = timers.measure(
                db_url, broker.bootstrap, logs / "timers", due=size.due, pending=size.pending
            )
    return figures


def table(f: dict[str, Any]) -> str:
    i, e, m, t = f["intake"], f["end_to_end"], f["embedded"], f["timers"]
    on, n = f["email_on"], f["notify"]
    rss = "  ".join(f"{k} {v:.0f}" for k, v in e["peak_rss_mb"].items())
    cpu = "  ".join(f"{k} {v:.2f}" for k, v in e["cpu_ms_per_case"].items() if k != "total")
    rows = [
        (
            "bare FastAPI, POST /v1/reports",
            f"{i['bare']['rate']:,.0f}/s",
            f"p50 {i['bare']['p50_ms']:.1f} ms  p99 {i['bare']['p99_ms']:.1f} ms",
        ),
        (
            "intake, 202 durable",
            f"{i['intake']['rate']:,.0f}/s",
            f"p50 {i['intake']['p50_ms']:.1f} ms  p99 {i['intake']['p99_ms']:.1f} ms",
        ),
        ("intake / bare", f"{i['ratio']:.2f}", "goal >= 0.5"),
        (
            f"intake paced at {i['paced']['target']:.0f}/s",
            f"{i['paced']['rate']:,.0f}/s",
            f"p99 {i['paced']['p99_ms']:.1f} ms (goal <= 50)",
        ),
        (
            "report -> assigned, burst",
            f"{e['burst']['cases_per_s']:,.0f} cases/s",
            f"{e['burst']['cases']:,} cases; goal >= 1,500/s",
        ),
        (
            f"report -> assigned, paced {e['paced']['target']:.0f}/s",
            f"{e['paced']['rate']:,.0f}/s",
            f"p50 {e['paced']['assigned_p50_ms']:.0f} ms  p99 {e['paced']['assigned_p99_ms']:.0f} ms (goal <= 250)",
        ),
        ("CPU per case, all processes", f"{e['cpu_ms_per_case']['total']:.2f} ms", f"goal <= 1.2 ms; {cpu}"),
        ("peak RSS per service (MB)", "", rss),
        (
            "report -> assigned, burst, email on",
            f"{on['burst']['cases_per_s']:,.0f} cases/s",
            f"{on['settled']['emails']:,} emails, all delivered {on['settled']['after_s']:.1f} s after; "
            f"CPU {on['cpu_ms_per_case']['total']:.2f} ms/case (smtp {on['cpu_ms_per_case']['smtp']:.2f})",
        ),
        ("email on / off", f"{on['ratio']:.2f}", f"goal >= 0.8: {'met' if on['goal_met'] else 'NOT MET'}"),
        (
            "notifier -> local SMTP server",
            f"{n['email']['per_s']:,.0f} msgs/s",
            f"{n['email']['messages']:,} emails in {n['email']['seconds']:.1f} s; "
            f"notifier CPU {n['email']['notifier_cpu_ms']:.1f} ms/msg",
        ),
        (
            "notifier -> SMS gateway, receipts",
            f"{n['sms']['per_s']:,.0f} msgs/s",
            f"{n['sms']['messages']:,} SMS in {n['sms']['seconds']:.1f} s, each settled by its receipt; "
            f"notifier CPU {n['sms']['notifier_cpu_ms']:.1f} ms/msg",
        ),
        ("timers", f"{t['pending']:,} pending", f"{t['due_together']:,} due together, {t['dispatchers']} dispatchers"),
        ("  lateness", f"p50 {t['lateness_p50_s']:.2f} s", f"p99 {t['lateness_p99_s']:.2f} s (goal <= 1)"),
        ("  all escalated after", f"{t['all_escalated_after_s']:.1f} s", "goal <= 2 s"),
        (
            f"embedded, {m['clients']} clients",
            f"{m['accepted_per_s']:,.0f}/s accepted",
            f"{m['routed_per_s']:,.0f}/s routed; goal >= 1,000/s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>18}  {c}" for a, b, c in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run, under two minutes")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    started = time.monotonic()
    figures = measure(size)
    print(table(figures))
    RESULTS.mkdir(exist_ok=True)
    now = datetime.now(UTC)
    out = RESULTS / f"{now:%Y%m%dT%H%M%S}{'-quick' if args.quick else ''}.json"
    meta = {"at": now.isoformat(), "quick": args.quick, "size": size.__dict__, "host": platform.node()}
    out.write_text(json.dumps({**meta, "seconds": time.monotonic() - started, **figures}, indent=2) + "\n")
    print(f"\n{out} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
