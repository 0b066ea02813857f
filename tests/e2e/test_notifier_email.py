"""Email end to end: every service its own process on PostgreSQL and the broker, email on
(GRIDCALL_SMTP_*), and a real SMTP server (aiosmtpd) started by the test as a process of its
own, whose JSON-lines log is what the tests count: residents are told in their language with
local times, a unit at its notify address; a notifier killed with -9 while sending and
restarted loses nothing and sends nothing twice under another Message-ID; two notifiers on one
database send each message once.

The processes run on the wall clock, which no test can move, so they run on the demo policy
without its quiet hours (tests/support/policies.py): residents' mail goes at once whatever the
hour the suite runs at. Quiet hours themselves are tested on the injected clock elsewhere."""

import asyncio
import re
import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from notifier.tables import deliveries
from services.delivery.tables import UNFINISHED, State
from services.storage.db import Database
from tests.support.adapters import district_with_notify
from tests.support.cluster import Process, base_env, distributed, gridcall_args, service_clients
from tests.support.journey import bearer, file_report, metric, open_ticket
from tests.support.policies import demo_policy_without_quiet_hours
from tests.support.servers import free_port
from tests.support.smtp import read_log, smtp_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the demo policy's calendar: where messages' times are local
PUBLIC = "https://12345.example.cn"
SENDER = "兰溪区12345 <noreply@12345.example.cn>"
IN_G32 = {"lat": 30.5151, "lon": 114.3247}  # grid G32: its grid unit, U-G32, gets the grid-tier tickets
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
BATCH = 50  # the delivery worker's claim: at most this many emails are on their way at once


def email_env(
    distributed_env: Mapping[str, str], tmp_path: Path, port: int, district: Path, **more: str
) -> dict[str, str]:
    return {
        **distributed_env,
        "GRIDCALL_JURISDICTION_FILE": str(district),
        "GRIDCALL_POLICY_FILE": str(demo_policy_without_quiet_hours(tmp_path / "policy.yaml")),
        "GRIDCALL_SMTP_HOST": "127.0.0.1",
        "GRIDCALL_SMTP_PORT": str(port),
        "GRIDCALL_SMTP_TLS": "none",
        "GRIDCALL_SMTP_FROM": SENDER,
        "GRIDCALL_PUBLIC_URL": PUBLIC,
        "GRIDCALL_DELIVERY_RETRY_SCHEDULE": "0s,1s,1s,2s,5s",
        **more,
    }


def zh_time(iso: str) -> str:
    """`12月7日 13:00` in Shanghai (a message adds the year before it when it is not this year's)."""
    t = datetime.fromisoformat(iso).astimezone(SHANGHAI)
    return f"{t.month}月{t.day}日 {t:%H:%M}"


def en_times(iso: str) -> tuple[str, str]:
    """`7 Dec 13:00`, and `7 Dec 2027 13:00` as a message words it when it is not this year's."""
    t = datetime.fromisoformat(iso).astimezone(SHANGHAI)
    return f"{t.day} {MONTHS[t.month - 1]} {t:%H:%M}", f"{t.day} {MONTHS[t.month - 1]} {t.year} {t:%H:%M}"


def mail(log: Path, recipients: Mapping[str, int] | set[str]) -> dict[str, list[dict[str, Any]]]:
    """What the SMTP server's log holds for each of `recipients`, in arrival order."""
    found: dict[str, list[dict[str, Any]]] = {r: [] for r in recipients}
    for record in read_log(log):
        if record["recipient"] in found:
            found[record["recipient"]].append(record)
    return found


async def arrived(log: Path, expected: Mapping[str, int], timeout: float = 60) -> dict[str, list[dict[str, Any]]]:
    """The mail of `expected`'s recipients once each has that many distinct messages."""

    async def probe() -> dict[str, list[dict[str, Any]]] | None:
        found = mail(log, expected)
        done = all(len({m["message_id"] for m in found[r]}) >= n for r, n in expected.items())
        return found if done else None

    return await eventually(probe, timeout=timeout, interval=0.2)


async def settled(db_url: str, tag: str, timeout: float = 60) -> None:
    """Until no email delivery to the test's addresses (they hold `tag`) is left to send."""
    db = Database(db_url)
    try:

        async def probe() -> bool | None:
            async with db.transaction() as s:
                left = await s.scalar(
                    select(func.count()).where(
                        deliveries.c.channel == "email",
                        deliveries.c.destination.contains(tag),
                        deliveries.c.state.in_(sorted(UNFINISHED)),
                    )
                )
            return left == 0 or None

        await eventually(probe, timeout=timeout, interval=0.2)
    finally:
        await db.dispose()


async def sending(db_url: str, tag: str) -> int:
    """Email deliveries to the test's addresses a worker has claimed and not recorded."""
    db = Database(db_url)
    try:
        async with db.transaction() as s:
            found = await s.scalar(
                select(func.count()).where(
                    deliveries.c.channel == "email",
                    deliveries.c.destination.contains(tag),
                    deliveries.c.state == State.SENDING,
                )
            )
        return int(found or 0)
    finally:
        await db.dispose()


def once_each(found: Mapping[str, list[dict[str, Any]]]) -> int:
    """How many arrivals were a Message-ID its recipient already had (a resend after a crash)."""
    return sum(len(got) - len({m["message_id"] for m in got}) for got in found.values())


async def test_residents_are_told_in_their_language_with_local_times_and_the_unit_at_its_notify_address(
    distributed_env, tmp_path, tokens
):
    tag = uuid.uuid4().hex[:8]
    zh, en, unit = f"zhao.{tag}@example.cn", f"alice.{tag}@example.com", f"g32.{tag}@lanxi.example.cn"
    district = district_with_notify(tmp_path / "district.yaml", {"U-G32": {"email": unit}})
    log = tmp_path / "smtp.jsonl"
    staff = tokens("U-G32")
    with (
        smtp_process(log) as port,
        distributed(email_env(distributed_env, tmp_path, port, district), tmp_path) as cluster,
    ):
        async with service_clients(cluster, "intake", "departments") as (intake, departments):
            filed: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
            for address, language, category in ((zh, None, "noise"), (en, "en", "garbage")):
                contact = {"email": address} | ({"language": language} if language else {})
                report = {"category": category, "description": f"{category} at building 3", "location": IN_G32}
                case = await file_report(intake, {**report, "contact": contact})
                ticket = await open_ticket(departments, "U-G32", staff, case["case_id"])
                r = await departments.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=bearer(staff))
                assert r.status_code == 200, r.text
                r = await departments.post(
                    f"/v1/tickets/{ticket['ticket_id']}/resolve",
                    headers=bearer(staff),
                    json={"note": f"Cleared ({address})"},
                )
                assert r.status_code == 200, r.text
                filed[address] = (case, ticket)

            # received, assigned, claimed, resolved, visit to each resident; a new ticket per case to the unit
            found = await arrived(log, {zh: 5, en: 5, unit: 2})
            await asyncio.sleep(1)  # nothing more comes: each once
            found = mail(log, {zh, en, unit})

    assert once_each(found) == 0, "a message arrived twice"
    for address, got in found.items():
        assert all(m["from"] == SENDER for m in got)
        assert all(m["message_id"].endswith("@12345.example.cn>") for m in got)
        if address != unit:
            assert all(m["list_unsubscribe"].startswith(f"<{PUBLIC}/v1/notifications/unsubscribe?") for m in got)
            assert all(m["list_unsubscribe_post"] == "List-Unsubscribe=One-Click" for m in got)

    def one(address: str, subject: str) -> dict[str, Any]:
        [found_one] = [m for m in found[address] if re.fullmatch(subject, m["subject"])]
        return found_one

    # No language given: Chinese, with the ticket's limits in Shanghai's time.
    case, ticket = filed[zh]
    assert {m["content_language"] for m in found[zh]} == {"zh-CN"}
    received = one(zh, r"您的诉求已受理（编号 \S+）")
    assert f"{PUBLIC}/track/{case['case_id']}#{case['tracking_token']}" in received["text"]
    assigned = one(zh, r"您的诉求已交由.+办理")
    assert zh_time(ticket["response_due"]) in assigned["text"]
    assert zh_time(ticket["resolution_due"]) in assigned["text"]
    resolved = one(zh, "您的诉求已办结")
    assert f"Cleared ({zh})" in resolved["text"]
    one(zh, r".*评价.*")  # 回访: how satisfied are you

    # language: en
    case, ticket = filed[en]
    assert {m["content_language"] for m in found[en]} == {"en"}
    received = one(en, r"We have received your report \(\S+\)")
    assert f"{PUBLIC}/track/{case['case_id']}#{case['tracking_token']}" in received["text"]
    assigned = one(en, r"Your report is with .+")
    for due in (ticket["response_due"], ticket["resolution_due"]):
        assert any(t in assigned["text"] for t in en_times(due)), (en_times(due), assigned["text"])
    assert f"Cleared ({en})" in one(en, "Your report has been resolved")["text"]

    # The unit, at its notify address: a new ticket per case, in Chinese, with its response limit.
    assert {m["content_language"] for m in found[unit]} == {"zh-CN"}
    assert all(m["list_unsubscribe"] is None for m in found[unit])
    for _, ticket in filed.values():
        [new] = [m for m in found[unit] if ticket["ticket_id"] in m["text"]]
        assert new["subject"].startswith("新工单（")
        assert f"响应时限：{zh_time(ticket['response_due'])}前" in new["text"]


def kind(subject: str) -> str:
    """A resident's Chinese message by its subject: received or assigned (or the subject)."""
    if re.fullmatch(r"您的诉求已受理（编号 \S+）", subject):
        return "received"
    return "assigned" if re.fullmatch(r"您的诉求已交由.+办理", subject) else subject


def bus_stop(i: int, address: str) -> dict[str, Any]:
    """A request of its own (insisted on: never joined to the others) from one resident."""
    return {
        "category": "bus_stop",
        "description": f"Please add a stop near building {i}",
        "location": IN_G32,
        "insist": True,
        "contact": {"email": address},
    }


async def test_a_notifier_killed_while_sending_and_restarted_loses_nothing_and_resends_only_the_same_message_id(
    distributed_env, tmp_path, tokens, pg_url
):
    tag = uuid.uuid4().hex[:8]
    residents = [f"r{i:02d}.{tag}@example.cn" for i in range(60)]
    unit = f"bus.{tag}@lanxi.example.cn"
    district = district_with_notify(tmp_path / "district.yaml", {"D-BUS": {"email": unit}})
    log = tmp_path / "smtp.jsonl"
    # A slow server (50 ms a message, over the sender's 4 connections): a kill finds mail on its way.
    with smtp_process(log, None, "--delay", "0.05") as port:
        env = email_env(distributed_env, tmp_path, port, district, GRIDCALL_NOTIFIER_LEASE="8")
        with distributed(env, tmp_path) as cluster:
            notifier = cluster["notifier"]
            async with service_clients(cluster, "intake") as (intake,):
                filing = asyncio.gather(*(file_report(intake, bus_stop(i, a)) for i, a in enumerate(residents)))
                # killed once mail is going and much more is due
                await eventually(lambda: asyncio.sleep(0, result=len(read_log(log)) >= 40 or None), timeout=60)
                notifier.kill()
                at_kill = len(read_log(log))
                in_flight = await sending(pg_url, tag)
                cases = await filing
                notifier.start()
                expected = {r: 2 for r in residents} | {unit: len(residents)}  # received, assigned; new tickets
                await arrived(log, expected, timeout=60)
                await settled(pg_url, tag)
    found = mail(log, set(expected))

    assert at_kill < sum(expected.values()), "the notifier was killed after it had sent everything"
    for address in residents:
        distinct = {m["message_id"]: m["subject"] for m in found[address]}
        assert sorted(map(kind, distinct.values())) == ["assigned", "received"], distinct
    new_tickets = {m["message_id"]: m for m in found[unit]}
    assert len(new_tickets) == len(residents)
    told = {c["case_id"] for c in cases}
    assert {re.search(r"诉求：(\S+)", m["text"])[1] for m in new_tickets.values()} == told  # type: ignore[index]
    # A resend: an email the server took before the process recorded it, under the same Message-ID
    # (mail clients fold it); never more than were on their way when it died.
    again = once_each(found)
    per_id: dict[str, set[str]] = defaultdict(set)
    for got in found.values():
        for m in got:
            per_id[m["message_id"]].add(m["recipient"])
    assert all(len(to) == 1 for to in per_id.values())
    assert again <= in_flight <= BATCH, (again, in_flight)
    print(f"\nkilled after {at_kill} of {sum(expected.values())} emails, {in_flight} on their way; {again} resent")


async def test_two_notifiers_on_one_database_send_each_message_once(distributed_env, tmp_path, tokens, pg_url):
    tag = uuid.uuid4().hex[:8]
    residents = [f"two{i:02d}.{tag}@example.cn" for i in range(30)]
    unit = f"bus2.{tag}@lanxi.example.cn"
    district = district_with_notify(tmp_path / "district.yaml", {"D-BUS": {"email": unit}})
    log = tmp_path / "smtp.jsonl"
    with smtp_process(log, None, "--delay", "0.02") as port:
        env = email_env(distributed_env, tmp_path, port, district)
        with distributed(env, tmp_path) as cluster:
            port2 = free_port()
            second = Process(
                "notifier-2",
                port2,
                gridcall_args("serve", "notifier", "--port", str(port2)),
                base_env(env),
                tmp_path / "notifier-2.log",
            )
            cluster.processes["notifier-2"] = second
            second.start()
            async with service_clients(cluster, "intake", "notifier", "notifier-2") as (intake, one, two):
                await asyncio.gather(*(file_report(intake, bus_stop(i, a)) for i, a in enumerate(residents)))
                expected = {r: 2 for r in residents} | {unit: len(residents)}
                await arrived(log, expected, timeout=60)
                await settled(pg_url, tag)
                delivered = {"service": "notifier", "channel": "email", "outcome": "delivered"}
                sent = [await metric(c, "gridcall_deliveries_total", **delivered) for c in (one, two)]
    found = mail(log, set(expected))

    assert once_each(found) == 0, "a message arrived twice"
    assert {r: len(got) for r, got in found.items()} == expected
    assert sum(sent) >= sum(expected.values())
    assert all(n > 0 for n in sent), f"one notifier sent everything: {sent}"
    print(f"\nemails sent by each notifier: {sent}")
