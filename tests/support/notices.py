"""The notifier in a test's process, driven by hand: its consumer fed lifecycle events as the
bus would deliver them, its delivery worker and digests run one round at a time on a frozen
clock, its routes (ops, unsubscribing, SMS receipts) on an app of their own that is not started
(no background loop sends behind the test's back)."""

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI
from sqlalchemy import select

from notifier.bootstrap import bootstrap
from notifier.messages import SMS_KINDS
from notifier.tables import deliveries, notifications
from notifier.workers import Digests
from services.delivery.worker import Lane, Worker
from services.district.clock import FrozenClock
from services.district.events import (
    CaseAssigned,
    CaseFollowed,
    CaseReported,
    CaseResolved,
    Event,
    Location,
    Priority,
    Role,
    Tier,
)
from services.messaging.bus import Record
from services.messaging.consumer import Consumer
from services.messaging.envelope import Envelope
from services.runtime.app import create_app
from services.runtime.context import Context, ServiceParts, build_context
from services.runtime.settings import DATA_DIR, Settings
from tests.support.clock import frozen_clock

_PARAM = re.compile(r"\$\{(\w+)\}")


def sms_codes() -> dict[str, str]:
    """A template code for every kind gridcall sends by SMS (GRIDCALL_SMS_TEMPLATES)."""
    return {k.value: "SMS_" + k.value.upper().replace(".", "_") for k in SMS_KINDS}


def gateway_templates() -> dict[str, tuple[str, ...]]:
    """What the fake gateway has registered: each code with the parameters its text names."""
    codes = sms_codes()
    root = Path(__file__).resolve().parents[2] / "notifier" / "templates" / "sms" / "zh-CN"
    return {codes[kind]: tuple(_PARAM.findall((root / f"{kind}.txt").read_text(encoding="utf-8"))) for kind in codes}


def district_with_notify(path: Path, notify: dict[str, dict[str, Any]]) -> Path:
    """The demo district written to `path`, with `notify` blocks ({unit id: block}) on those units."""
    district = yaml.safe_load((DATA_DIR / "district.yaml").read_text(encoding="utf-8"))
    units = {u["id"]: u for u in district["units"]}
    for unit_id, block in notify.items():
        units[unit_id]["notify"] = block
    path.write_text(yaml.safe_dump(district, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Notifier:
    ctx: Context
    parts: ServiceParts
    app: FastAPI
    clock: FrozenClock

    @property
    def consumer(self) -> Consumer:
        return self.parts.consumers[0]

    @property
    def worker(self) -> Worker:
        return self.parts.extras["deliveries"]  # type: ignore[no-any-return]

    @property
    def digests(self) -> Digests:
        return self.parts.extras["digests"]  # type: ignore[no-any-return]

    def records(self, events: list[Event]) -> list[Record]:
        topic = self.ctx.settings.topic(CaseAssigned.stream)
        now = self.clock.now()
        return [
            Record(topic, 0, n, e.case_id, Envelope.wrap(e, source="/test", time=now).encode())
            for n, e in enumerate(events)
        ]

    async def feed(self, *events: Event) -> list[Record]:
        batch = self.records(list(events))
        assert await self.consumer.handle_batch(batch)
        return batch

    async def deliver(self, channel: str, rounds: int = 1) -> int:
        """`rounds` rounds of the channel's lane; how many rows they sent or settled."""
        done = 0
        for _ in range(rounds):
            done += await self.worker.deliver_due(Lane(channel))
        return done

    async def deliveries(self, case_id: str | None = None, **where: Any) -> list[Any]:
        d = deliveries.c
        query = select(deliveries).order_by(d.id)
        if case_id is not None:
            query = query.where(d.case_id == case_id)
        for name, value in where.items():
            query = query.where(d[name] == value)
        async with self.ctx.db.sessions() as s:
            return list((await s.execute(query)).all())

    async def notifications(self, case_id: str) -> list[Any]:
        n = notifications.c
        async with self.ctx.db.sessions() as s:
            return list((await s.execute(select(notifications).where(n.case_id == case_id).order_by(n.id))).all())

    def ops(self) -> dict[str, str]:
        token = self.ctx.authenticator.issue("ops", ttl=timedelta(hours=1))
        return {"Authorization": f"Bearer {token}"}

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gridcall")


@asynccontextmanager
async def notifier(settings: Settings, clock: FrozenClock | None = None, **overrides: Any) -> AsyncIterator[Notifier]:
    """The notifier built on `settings` with `overrides` (Settings fields), not started."""
    settings = Settings.model_validate({**settings.model_dump(), **overrides})
    clock = clock or frozen_clock()
    ctx = build_context(settings, clock=clock, name="gridcall-notifier")
    parts = bootstrap(ctx)
    app = create_app(ctx, [parts], title="gridcall notifier")
    found = Notifier(ctx, parts, app, clock)
    try:
        yield found
    finally:
        await found.worker.close()
        await ctx.db.dispose()


# --- events ------------------------------------------------------------------------------------


def case_id() -> str:
    return f"C{uuid.uuid4().hex[:12]}"


def reported(case: str, priority: Priority = Priority.NORMAL) -> CaseReported:
    return CaseReported(
        case_id=case,
        category="garbage",
        description="bags in the stairwell",
        location=Location(lat=30.5, lon=114.3),
        grid_id="G11",
        priority=priority,
    )


def followed(
    case: str, *, email: str | None = None, phone: str | None = None, language: str = "zh-CN", token: str = "tok"
) -> CaseFollowed:
    return CaseFollowed(
        case_id=case,
        report_id=str(uuid.uuid4()),
        email=email,
        phone=phone,
        language=language,
        tracking_token=token,
    )


def assigned(
    case: str, now: datetime, *, unit: str = "U-G11", priority: Priority = Priority.NORMAL, ticket: str | None = None
) -> CaseAssigned:
    return CaseAssigned(
        case_id=case,
        assignment_id=ticket or f"T{uuid.uuid4().hex[:10]}",
        unit_id=unit,
        unit_name=f"unit {unit}",
        tier=Tier.GRID,
        role=Role.LEAD,
        priority=priority,
        category="garbage",
        description="bags in the stairwell",
        grid_id="G11",
        response_due=now + timedelta(hours=1),
        resolution_due=now + timedelta(hours=24),
    )


def resolved(case: str, assignment: str = "T1", unit: str = "U-G11") -> CaseResolved:
    return CaseResolved(case_id=case, assignment_id=assignment, unit_id=unit, note="cleared")
