"""What the dispatcher notes as stale after a change (dispatcher/rollup.py `contributions`, in
Python) says an assignment's facts exactly as the figures' SQL counts them (dispatcher/figures.py,
here on SQLite): for assignments claimed, resolved and ended before, at or after their limits,
or not at all, the same facts in the same hours. A fact the Python missed would leave an hour
rolled up with a change it never saw."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dispatcher.domain import Assignment, AssignmentStatus, Role, Tier
from dispatcher.figures import ASSIGNMENT_FIGURES, DIMS, Scope, Window, facts, grouped, kept
from dispatcher.rollup import contributions, stale_hours
from dispatcher.tables import assignments, cases, metadata
from services.storage.bulk import insert_rows
from services.storage.clocksql import hour_of
from services.storage.db import Database

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


def some(rng: random.Random, n: int) -> Assignment:
    at = T0 + timedelta(minutes=rng.randrange(0, 600))
    response, resolution = at + timedelta(hours=rng.choice((1, 2, 4))), at + timedelta(hours=rng.choice((8, 24)))

    def around(limit: datetime) -> datetime | None:  # before, at or after a limit, or never
        return rng.choice((None, limit - timedelta(minutes=rng.randrange(1, 50)), limit, limit + timedelta(minutes=7)))

    claimed = around(response)
    resolved = around(resolution) if claimed else None
    ended = rng.choice((None, around(response), around(resolution)))
    return Assignment(
        assignment_id=f"A{n}",
        unit_id="U-G11",
        tier=Tier.GRID,
        role=Role.LEAD,
        status=AssignmentStatus.ENDED if ended else AssignmentStatus.OPEN,
        assigned_at=at,
        response_due=response,
        resolution_due=resolution,
        response_warn_at=response,
        resolution_warn_at=resolution,
        claimed_at=claimed,
        resolved_at=resolved,
        ended_at=ended,
    )


async def test_the_python_facts_of_an_assignment_are_the_sqls(tmp_path: Path):
    rng = random.Random(7)
    given = [some(rng, n) for n in range(400)]
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'facts.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    place = {"street_id": "S1", "community_id": "C1", "category": "garbage", "priority": "normal"}
    case: dict[str, object] = {
        **place,
        "description": "",
        "details": {},
        "grid_id": "G11",
        "status": "open",
        "tier": "grid",
    }
    case |= {"unit_id": "U-G11", "returns": 0, "supervised": False, "resolved": False, "closed": False}
    async with db.transaction() as s:
        await insert_rows(s, cases, [{**case, "case_id": "C", "created_at": T0, "updated_at": T0}])
        rows = [
            {**{f: getattr(a, f) for f in Assignment.__dataclass_fields__}, "case_id": "C", "seq": i}
            for i, a in enumerate(given)
        ]
        await insert_rows(s, assignments, [{k: getattr(v, "value", v) for k, v in r.items()} for r in rows])
    window = Window(T0 - timedelta(days=1), T0 + timedelta(days=3), T0 + timedelta(days=3))
    async with db.reading() as s:
        found = await s.execute(grouped(facts(window, kept(window, {}, Scope()), Scope()), ("hour", *DIMS)))
        sql = Counter({(r.figure, r.hour): r.n for r in found if r.figure in ASSIGNMENT_FIGURES})
    await db.dispose()
    python = Counter(c for a in given for c in contributions(a))
    assert sql == python
    assert {f for f, _ in sql} == set(ASSIGNMENT_FIGURES)  # every kind of fact came up


def test_a_claim_taken_back_hours_later_makes_its_hours_stale_and_a_claim_now_makes_none():
    a = some(random.Random(3), 0)
    a = Assignment(**{**a.__dict__, "claimed_at": None, "resolved_at": None, "ended_at": None})
    claimed = Assignment(**{**a.__dict__, "claimed_at": a.response_due - timedelta(minutes=30)})
    now = a.response_due + timedelta(hours=3)
    # claimed before its limit, taken back after it: its claim's hour, and its limit's (now missed)
    assert stale_hours(claimed, a, now) == {hour_of(claimed.claimed_at), hour_of(a.response_due)}
    # claimed within the current hour, before its limit: nothing rolled up can have changed
    assert stale_hours(a, claimed, claimed.claimed_at) == set()
