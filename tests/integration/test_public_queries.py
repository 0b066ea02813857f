"""The feed's and Open311 updates' queries on PostgreSQL as on SQLite, and migration
intake_0004 filling the new view columns from the timeline of cases resolved before it."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from gridcall.migrate import alembic_config, upgrade
from intake.open311.queries import steps
from intake.public import feed
from intake.tables import case_views, reports, timeline
from services.district.policy import load_policy
from services.runtime.settings import Settings
from services.storage.db import Database
from tests.support.staff import demo_jurisdiction

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    url = f"sqlite+aiosqlite:///{tmp_path / 'feed.db'}"
    upgrade(url)
    return url


def case(i: int, *, category="garbage", channel="app", grid="G11", resolved=True) -> tuple[dict, dict, list[dict]]:
    case_id = f"c-{uuid.uuid4().hex[:8]}-{i:03d}"
    at = T0 + timedelta(minutes=i)
    view = {
        "case_id": case_id, "status": "resolved" if resolved else "claimed", "category": category, "lat": 30.5,
        "lon": 114.3, "reporters": 1, "created_at": T0, "updated_at": at, "unit_name": "Grid 1",
        "resolved_at": at if resolved else None, "resolved_unit_id": "U-G11" if resolved else None,
        "result_note": f"done {i}" if resolved else None,
    }  # fmt: skip
    report = {
        "report_id": f"r-{case_id}", "case_id": case_id, "linked": False, "category": category, "description": "x",
        "lat": 30.5, "lon": 114.3, "grid_id": grid, "details": {}, "anonymous": False, "priority": "normal",
        "channel": channel, "tracking_hash": uuid.uuid4().hex, "created_at": T0,
    }  # fmt: skip
    steps = [{"case_id": case_id, "at": T0, "type": "received", "details": {"grid_id": grid}}]
    if resolved:
        steps.append(
            {"case_id": case_id, "at": at, "type": "resolved", "details": {"unit_id": "U-G11", "result": "ok"}}
        )
    return view, report, steps


async def test_pages_filters_and_updates_read_the_same_on_both_databases(url):
    j, policy = demo_jurisdiction(), load_policy(Settings().policy_file)
    made = [case(i, grid="G11" if i % 2 else "G21") for i in range(7)]
    made += [case(7, category="noise"), case(8, channel="one_key"), case(9, resolved=False)]
    db = Database(url)
    try:
        async with db.transaction() as s:
            await s.execute(case_views.insert(), [m[0] for m in made])
            await s.execute(reports.insert(), [m[1] for m in made])
            await s.execute(timeline.insert(), [step for m in made for step in m[2]])
        public = [m[0]["case_id"] for m in made[:7]]
        seen, cursor = [], None
        async with db.sessions() as s:
            while True:
                rows, cursor = await feed.page(s, feed.FeedQuery(limit=3, cursor=cursor), j, policy)
                seen += [r.case_id for r in rows]
                if cursor is None:
                    break
            assert seen == public[::-1]
            rows, _ = await feed.page(s, feed.FeedQuery(community="C2", limit=100), j, policy)
            assert [r.case_id for r in rows] == public[::-2]
            shown = feed.result(rows[0], j, policy)
            assert shown["community"]["id"] == "C2" and shown["result_note"] == "done 6"

            found = await steps(s, T0 + timedelta(seconds=30), T0 + timedelta(hours=1), ["garbage"], 1000)
        assert [(row.case_id, status) for row, status in found] == [(c, "closed") for c in public[1:]]
    finally:
        await db.dispose()


async def test_an_update_has_the_status_its_case_had_after_it_even_when_set_before_the_window(url):
    view, report, _ = case(0)
    other, other_report, _ = case(1)
    kinds = ["received", "assigned", "resolved", "satisfaction", "reopened", "note", "resolved", "note"]
    trail = [
        {"case_id": view["case_id"], "at": T0 + timedelta(hours=n), "type": k, "details": {}}
        for n, k in enumerate(kinds)
    ]
    trail.append(
        {"case_id": other["case_id"], "at": T0 + timedelta(hours=4, minutes=30), "type": "note", "details": {}}
    )
    db = Database(url)
    try:
        async with db.transaction() as s:
            await s.execute(case_views.insert(), [view, other])
            await s.execute(reports.insert(), [report, other_report])
            await s.execute(timeline.insert(), trail)
        window = T0 + timedelta(hours=2, minutes=30), T0 + timedelta(hours=10)
        async with db.sessions() as s:
            found = await steps(s, *window, ["garbage"], 1000)
            first_three = await steps(s, *window, ["garbage"], 3)
        assert [(row.case_id, row.type, status) for row, status in found] == [
            (view["case_id"], "satisfaction", "closed"),  # set by the resolution before the window
            (view["case_id"], "reopened", "open"),
            (other["case_id"], "note", "open"),  # a case whose steps before the window set nothing
            (view["case_id"], "note", "open"),
            (view["case_id"], "resolved", "closed"),
            (view["case_id"], "note", "closed"),
        ]
        assert [row.id for row, _ in first_three] == [row.id for row, _ in found[:3]]
    finally:
        await db.dispose()


async def test_the_migration_fills_the_view_of_cases_resolved_before_it(pg_url):
    config = alembic_config(pg_url)
    await asyncio.to_thread(command.downgrade, config, "intake_0003")
    view, report, _ = case(0)
    old = {k: v for k, v in view.items() if k not in ("resolved_at", "resolved_unit_id", "result_note")}
    history = [
        ("resolved", {"unit_id": "U-G11", "result": "first try"}),
        ("satisfaction", {"satisfied": False}),
        ("reopened", {"unit_id": "U-G11"}),
        ("resolved", {"unit_id": "U-C1", "result": "done properly"}),
        ("closed", {"reason": "no_answer"}),
    ]
    db = Database(pg_url)
    try:
        async with db.transaction() as s:
            await s.execute(case_views.insert().values(**{**old, "status": "closed"}))
            await s.execute(reports.insert().values(**report))
            for n, (kind, details) in enumerate(history, start=1):
                at = T0 + timedelta(hours=n)
                await s.execute(timeline.insert().values(case_id=view["case_id"], at=at, type=kind, details=details))
        await asyncio.to_thread(upgrade, pg_url)
        async with db.sessions() as s:
            filled = (await s.execute(select(case_views).where(case_views.c.case_id == view["case_id"]))).one()
        assert (filled.resolved_at, filled.closed_at) == (T0 + timedelta(hours=4), T0 + timedelta(hours=5))
        assert (filled.resolved_unit_id, filled.result_note, filled.satisfaction) == (
            "U-C1",
            "done properly",
            "no_answer",
        )
    finally:
        await db.dispose()
