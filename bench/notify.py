"""The notifier's figures. `drain`: how many messages per second the kernel's delivery worker,
in a notifier process of its own on PostgreSQL, delivers to a local SMTP server and to the fake
SMS gateway (tests/support/: each as a process of its own). A batch of deliveries is written in
one transaction while the notifier runs; the time is from that commit to the last one
delivered, which for SMS is when the gateway's receipt came back (the gateway posts receipts
to the notifier's endpoint). Checked: every message delivered, and taken by the server once.

`email_on`: the settings and report body that switch email on for the end-to-end run (every
report has a contact email, every unit a notify email, the SMTP server running), to set
against the same run with it off."""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import BODY
from bench.procs import cpu_seconds
from notifier.channels.bodies import EmailBody, SmsBody
from notifier.messages import SMS_KINDS
from notifier.tables import deliveries
from services.delivery.signing import new_secret
from services.delivery.tables import State
from services.runtime.settings import DATA_DIR
from tests.support.cluster import Process, base_env, gridcall_args
from tests.support.servers import free_port
from tests.support.smsgateway import ACCESS_KEY, ACCESS_SECRET, SIGN_NAME, gateway_process, sent_log
from tests.support.smtp import ROOT, read_log, wait_for_port

FROM = "兰溪区12345 <noreply@lanxi.gov.cn>"
TEMPLATE = "SMS_CASE_RECEIVED"  # one the fake gateway knows, with parameters case and link
TEXT = (
    "您好！您于 12月6日 09:15 提交的诉求（垃圾堆放，青河街道）已受理，编号 {n}。"
    "我们会在 2 个工作日内派单处理，进展会通过本邮箱告诉您。查看进度：https://12345.lanxi.gov.cn/track/{n}\n"
)


@contextlib.contextmanager
def smtp_server(log: Path) -> Iterator[tuple[int, int]]:
    """tests/support/smtp.py's server as a process of its own; yields its port and its pid (the
    end-to-end run counts its CPU with the others')."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "tests.support.smtp", "--port", str(port), "--log", str(log)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)


def email_settings(port: int) -> dict[str, str]:
    return {
        "GRIDCALL_SMTP_HOST": "127.0.0.1",
        "GRIDCALL_SMTP_PORT": str(port),
        "GRIDCALL_SMTP_TLS": "none",
        "GRIDCALL_SMTP_FROM": FROM,
    }


def _rows(channel: str, n: int, tag: str, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        case = f"{tag}-{i:06d}"
        body: EmailBody | SmsBody
        if channel == "email":
            destination = f"resident{i}@example.cn"
            text = TEXT.format(n=case)
            body = EmailBody(
                to=destination,
                subject=f"您的诉求 {case} 已受理",
                text=text,
                html=f"<p>{text}</p>",
                unsubscribe_url=f"https://12345.lanxi.gov.cn/v1/notifications/unsubscribe?r={case}&s=0",
            )
        else:
            destination = f"138{i:08d}"
            body = SmsBody(phone=destination, template_code=TEMPLATE, params={"case": case, "link": f"lx.cn/t/{i}"})
        rows.append(
            {
                "msg_id": f"n{tag}{channel}{i:06d}",
                "channel": channel,
                "destination": destination,
                "case_id": case,
                "sequence": f"{case}/follower:{case}/{channel}",
                "kind": "case.received",
                "body": body.model_dump_json(exclude_none=True),
                "state": State.CREATED.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    return rows


async def _prefill(db_url: str, rows: list[dict[str, Any]]) -> datetime:
    """The rows written in one transaction; the time it committed."""
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(deliveries), rows)
        return datetime.now(UTC)
    finally:
        await engine.dispose()


async def _states(db_url: str, channel: str) -> tuple[Counter[str], datetime | None]:
    """The channel's deliveries by state, and when the last was delivered."""
    engine = create_async_engine(db_url)
    t = deliveries
    try:
        async with engine.connect() as conn:
            counts = (
                await conn.execute(
                    select(t.c.state, func.count(), func.max(t.c.delivered_at))
                    .where(t.c.channel == channel)
                    .group_by(t.c.state)
                )
            ).all()
    finally:
        await engine.dispose()
    last = next((at for state, _, at in counts if state == State.DELIVERED), None)
    return Counter({state: n for state, n, _ in counts}), last


class Progress:
    """Gives up when the count of delivered rows has not moved for `stall` seconds: a slow
    machine makes a run long, a stuck worker makes it fail."""

    def __init__(self, what: str, stall: float) -> None:
        self.what = what
        self.stall = stall
        self.delivered = -1
        self.moved = time.monotonic()

    def check(self, counts: Counter[str]) -> None:
        if counts[State.DELIVERED] != self.delivered:
            self.delivered, self.moved = counts[State.DELIVERED], time.monotonic()
        elif time.monotonic() - self.moved > self.stall:
            raise SystemExit(f"{self.what}: none delivered for {self.stall:.0f} s: {dict(counts)}")


def _drained(db_url: str, channel: str, n: int, stall: float) -> datetime:
    """Wait until the channel's `n` deliveries are all delivered; when the last was."""
    progress = Progress(f"{channel} deliveries", stall)
    while True:
        counts, last = asyncio.run(_states(db_url, channel))
        if counts[State.DELIVERED] >= n and last is not None:
            return last
        if set(counts) - {State.CREATED, State.SENDING, State.DELIVERED}:
            raise SystemExit(f"{channel} deliveries failed: {dict(counts)} (see the notifier's log)")
        progress.check(counts)
        time.sleep(0.1)


def drain(db_url: str, env: Mapping[str, str], logs: Path, *, emails: int, sms: int) -> dict[str, Any]:
    """Each channel's batch drained in turn by one notifier process (its default settings: one
    lane per channel, 50 rows a round, 4 SMTP connections)."""
    secret = new_secret()
    port = free_port()  # the notifier's, named to the gateway for its receipts before either starts
    receipts = f"http://127.0.0.1:{port}/v1/notifications/sms/receipts"
    figures: dict[str, Any] = {}
    with (
        smtp_server(logs / "smtp.jsonl") as (smtp_port, _),
        gateway_process(logs / "sms.jsonl", None, "--receipt-url", receipts, "--receipt-secret", secret) as sms_url,
    ):
        settings = {
            **env,
            **email_settings(smtp_port),
            "GRIDCALL_SMS_URL": sms_url,
            "GRIDCALL_SMS_ACCESS_KEY": ACCESS_KEY,
            "GRIDCALL_SMS_ACCESS_SECRET": ACCESS_SECRET,
            "GRIDCALL_SMS_SIGN_NAME": SIGN_NAME,
            "GRIDCALL_SMS_RECEIPT_SECRET": secret,
            "GRIDCALL_SMS_TEMPLATES": json.dumps({kind.value: TEMPLATE for kind in SMS_KINDS}),
        }
        args = gridcall_args("serve", "notifier", "--port", str(port))
        notifier = Process("notifier", port, args, base_env(settings), logs / "notifier.log")
        notifier.start()
        try:
            for channel, n in (("email", emails), ("sms", sms)):
                cpu = cpu_seconds(notifier.popen.pid) if notifier.popen else 0.0
                committed = asyncio.run(_prefill(db_url, _rows(channel, n, "bench", datetime.now(UTC))))
                last = _drained(db_url, channel, n, stall=60)
                span = (last - committed).total_seconds()
                used = (cpu_seconds(notifier.popen.pid) if notifier.popen else 0.0) - cpu
                figures[channel] = {"messages": n, "seconds": span, "per_s": n / span}
                figures[channel]["notifier_cpu_ms"] = 1000 * used / n
        finally:
            notifier.stop()
        took = Counter(r["recipient"] for r in read_log(logs / "smtp.jsonl"))
        sent = Counter(s["out_id"] for s in sent_log(logs / "sms.jsonl"))
    if len(took) != emails or set(took.values()) != {1}:
        raise SystemExit(f"the SMTP server took {sum(took.values())} messages for {len(took)} of {emails} recipients")
    if len(sent) != sms or set(sent.values()) != {1}:
        raise SystemExit(f"the SMS gateway sent {sum(sent.values())} messages for {len(sent)} of {sms} deliveries")
    figures["sms"]["receipts"] = True
    return figures


def email_on(env: Mapping[str, str], smtp_port: int, directory: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The end-to-end run's settings and report body with email on: the demo district with a
    notify email on every unit (a message per new ticket), the policy without quiet hours (the
    figure must not depend on the hour it is taken at), and a contact email on every report."""
    district = yaml.safe_load((DATA_DIR / "district.yaml").read_text(encoding="utf-8"))
    for unit in district["units"]:
        unit["notify"] = {"email": f"duty-{unit['id'].lower()}@lanxi.gov.cn"}
    policy = yaml.safe_load((DATA_DIR / "policy.yaml").read_text(encoding="utf-8"))
    policy.pop("quiet_hours", None)
    (directory / "district.yaml").write_text(yaml.safe_dump(district, allow_unicode=True), encoding="utf-8")
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    settings = {
        **env,
        **email_settings(smtp_port),
        "GRIDCALL_JURISDICTION_FILE": str(directory / "district.yaml"),
        "GRIDCALL_POLICY_FILE": str(directory / "policy.yaml"),
    }
    body = {**BODY, "contact": {"email": "resident@example.cn", "language": "zh-CN"}}
    return settings, body


def emails_settled(db_url: str, smtp_log: Path, stall: float = 60) -> dict[str, Any]:
    """After an end-to-end run with email on: wait until no email delivery is waiting, then
    check every one was delivered and the SMTP server took exactly those. `after_s`: how
    long the last ones took after the call (the last case's assignment)."""
    start = time.monotonic()
    progress = Progress("email deliveries", stall)
    while True:
        counts, _ = asyncio.run(_states(db_url, "email"))
        waiting = counts[State.CREATED] + counts[State.SENDING] + counts[State.TEMPORARY_FAILURE]
        if not waiting:
            break
        progress.check(counts)
        time.sleep(0.5)
    delivered = counts[State.DELIVERED]
    took = len(read_log(smtp_log))
    if set(counts) != {State.DELIVERED} or took != delivered:
        raise SystemExit(f"email deliveries {dict(counts)}, the SMTP server took {took}")
    return {"emails": delivered, "after_s": time.monotonic() - start}


def main() -> None:
    """`python -m bench.notify --messages 2000`: the drain alone, on a scratch database and a
    broker of its own; prints its figures as JSON."""
    import argparse
    import tempfile
    import uuid

    from bench.common import service_env
    from gridcall.migrate import upgrade
    from tests.support.servers import admin_postgres, kafka_broker, scratch_database

    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000, help="per channel")
    args = parser.parse_args()
    with admin_postgres() as admin, kafka_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        with scratch_database(admin) as db_url:
            upgrade(db_url)
            env = service_env(db_url, broker.bootstrap, f"bench{uuid.uuid4().hex[:6]}")
            figures = drain(db_url, env, Path(tmp), emails=args.messages, sms=args.messages)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
