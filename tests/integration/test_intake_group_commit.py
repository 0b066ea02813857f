"""Intake's group commit on both databases (PostgreSQL and SQLite): a batch of reports is one
transaction of a handful of statements, and it decides each report as the reports before it
in the same batch left things."""

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from intake import tables
from intake.bootstrap import bootstrap as intake_bootstrap
from intake.domain import IdempotencyConflict, Report, check_report
from intake.usecases import ReportWriter
from services.district.events import Location, Priority
from services.messaging.envelope import Envelope
from services.runtime.context import Context, build_context
from tests.support.clock import frozen_clock
from tests.support.statements import statements

pytestmark = pytest.mark.integration

HERE = Location(lat=30.505, lon=114.305)  # grid G11
THERE = Location(lat=30.5151, lon=114.3247)  # grid G32
# Each test files its reports at a time of its own, days after the previous test's, so the
# open cases an earlier test left in the module's PostgreSQL database are too old to join.
TEST_DAYS = itertools.count()


@pytest.fixture(params=["postgresql", "sqlite"])
def settings(request):
    return request.getfixturevalue("pg_settings" if request.param == "postgresql" else "embedded_settings")


@pytest.fixture
async def ctx(settings):
    start = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=10 * next(TEST_DAYS))
    context = build_context(settings, clock=frozen_clock(start))
    yield context
    await context.db.dispose()


def writer_of(ctx: Context) -> ReportWriter:
    return intake_bootstrap(ctx).extras["reports"]


def report(description: str = "Bags in the stairwell", *, at: Location = HERE, **fields: Any) -> Report:
    return Report(category="garbage", description=description, channel="app", point=at, **fields)


def filing(ctx: Context, r: Report):
    return check_report(ctx.jurisdiction, ctx.policy, r)


async def rows(ctx: Context, table, case_ids) -> list[Any]:
    async with ctx.db.sessions() as s:
        return (await s.execute(select(table).where(table.c.case_id.in_(list(case_ids))))).all()


async def emitted(ctx: Context, case_ids) -> list[tuple[str, str]]:
    async with ctx.db.sessions() as s:
        payloads = (await s.scalars(select(tables.outbox.c.payload).order_by(tables.outbox.c.id))).all()
    envelopes = [Envelope.decode(p) for p in payloads]
    return [(e.type.rsplit(".", 1)[1], e.subject) for e in envelopes if e.subject in set(case_ids)]


async def test_a_batch_is_one_transaction_of_a_handful_of_statements(ctx):
    writer = writer_of(ctx)
    batch = [
        filing(ctx, report(f"report {n}", insist=True, idempotency_key=f"k-{n}-{ctx.clock.now()}")) for n in range(60)
    ]
    batch += [filing(ctx, report("the same again", at=THERE)) for _ in range(40)]  # one case, 40 reporters
    with statements(ctx.db.engine) as sent:
        answers = await writer.write(batch)
    case_ids = {a["case_id"] for a in answers}
    assert len(case_ids) == 61
    assert len(sent) <= 12, [s.split()[0] for s in sent]
    assert len(await rows(ctx, tables.reports, case_ids)) == 100
    views = await rows(ctx, tables.case_views, case_ids)
    assert sorted(v.reporters for v in views) == [1] * 60 + [40]
    assert len(await emitted(ctx, case_ids)) == 100


async def test_a_key_used_twice_in_a_batch_gets_one_case_and_another_body_under_it_gets_409(ctx):
    writer = writer_of(ctx)
    key = f"key-{ctx.clock.now()}"
    first = report(idempotency_key=key, request_hash="body-1", insist=True)
    outcomes = await writer.write(
        [
            filing(ctx, first),
            filing(ctx, replace(first, description="something else", request_hash="body-2")),
            filing(ctx, first),
            filing(ctx, report("another problem", at=THERE)),
        ]
    )
    answer, conflict, again, other = outcomes
    assert isinstance(conflict, IdempotencyConflict)
    assert again == answer and answer["status"] == "received"
    assert other["case_id"] != answer["case_id"]
    assert len(await rows(ctx, tables.reports, [answer["case_id"], other["case_id"]])) == 2
    assert len(await rows(ctx, tables.idempotency_keys, [answer["case_id"]])) == 1
    # the next batch answers the key as this one did
    assert await writer.write([filing(ctx, first)]) == [answer]


async def test_the_second_report_of_a_problem_in_a_batch_joins_the_first(ctx):
    writer = writer_of(ctx)
    first, second, third = await writer.write(
        [filing(ctx, report("Bags piled up")), filing(ctx, report("Smells awful")), filing(ctx, report("Still there"))]
    )
    assert not first["linked_to_existing"]
    assert second["linked_to_existing"] and third["linked_to_existing"]
    assert first["case_id"] == second["case_id"] == third["case_id"]
    assert len({first["tracking_token"], second["tracking_token"], third["tracking_token"]}) == 3
    [view] = await rows(ctx, tables.case_views, [first["case_id"]])
    assert view.reporters == 3
    case = first["case_id"]
    assert await emitted(ctx, [case]) == [
        ("reported", case),
        ("duplicate_reported", case),
        ("duplicate_reported", case),
    ]
    async with ctx.db.sessions() as s:
        kinds = (
            await s.execute(
                select(tables.timeline.c.type, tables.timeline.c.details)
                .order_by(tables.timeline.c.id)
                .where(tables.timeline.c.case_id == case)
            )
        ).all()
    assert [(k, d.get("reporters")) for k, d in kinds] == [
        ("received", None),
        ("reported_again", 2),
        ("reported_again", 3),
    ]


async def test_reports_of_a_case_from_an_earlier_batch_count_on_from_its_reporters(ctx):
    writer = writer_of(ctx)
    [opened] = await writer.write([filing(ctx, report())])
    joined = await writer.write([filing(ctx, report("me too")), filing(ctx, report("and me"))])
    assert {a["case_id"] for a in joined} == {opened["case_id"]}
    [view] = await rows(ctx, tables.case_views, [opened["case_id"]])
    assert view.reporters == 3


async def test_a_report_that_breaks_a_constraint_fails_alone_and_its_batch_mates_are_committed(ctx):
    writer = writer_of(ctx)
    good = [filing(ctx, report(f"fine {n}", insist=True)) for n in range(3)]
    bad = replace(good[0], report=replace(good[0].report, anonymous=None))  # NOT NULL: the database refuses it
    outcomes = await asyncio.gather(
        *(writer.commits.submit(f) for f in [good[0], bad, *good[1:]]), return_exceptions=True
    )
    assert isinstance(outcomes[1], IntegrityError)
    answers = [outcomes[0], *outcomes[2:]]
    assert len(await rows(ctx, tables.reports, [a["case_id"] for a in answers])) == 3


async def test_when_the_database_is_away_every_waiting_request_gets_the_error_at_once(ctx):
    away = (
        "sqlite+aiosqlite:////nonexistent/dir/gridcall.db"
        if not ctx.db.is_postgres
        else ("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    )
    broken = build_context(ctx.settings.model_copy(update={"database_url": away}), clock=ctx.clock)
    writer = writer_of(broken)
    batches: list[int] = []
    write = writer.commits.apply

    async def recorded(filings):
        batches.append(len(filings))
        return await write(filings)

    writer.commits.apply = recorded
    try:
        outcomes = await asyncio.gather(
            *(writer.commits.submit(filing(ctx, report(f"r{n}", priority=Priority.NORMAL))) for n in range(3)),
            return_exceptions=True,
        )
    finally:
        await broken.db.dispose()
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert batches == [3]
