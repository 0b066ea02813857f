"""Bulk-seed the dispatcher's tables with cases whose SLA timers are already due, using the
dispatcher's own routing rules: the state is exactly what the dispatcher would have saved."""

import uuid
from dataclasses import asdict
from datetime import datetime

from dispatcher.domain import Router
from dispatcher.tables import assignments, cases
from dispatcher.tables import timers as timer_rows
from services.district.events import CaseReported, Location
from services.storage.db import Database


def _plain(d: dict) -> dict:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in d.items()}


async def seed_cases(db: Database, router: Router, n: int, at: datetime, *, grid_id: str = "G11") -> list[str]:
    grid = router.j.grid(grid_id)
    community = router.j.community(grid.community_id)
    c = grid.shape.centroid
    case_rows, assignment_rows, timer_list, ids = [], [], [], []
    for _ in range(n):
        case_id = str(uuid.uuid4())
        event = CaseReported(
            case_id=case_id,
            category="garbage",
            description="seeded",
            location=Location(lat=c.y, lon=c.x),
            grid_id=grid_id,
        )
        case = router.report(None, event, at, lambda: str(uuid.uuid4())).case
        lead = case.lead
        ids.append(case_id)
        case_rows.append(
            {
                "case_id": case_id,
                "category": case.category,
                "description": case.description,
                "details": {},
                "grid_id": grid_id,
                "community_id": community.id,
                "street_id": community.street_id,
                "priority": case.priority.value,
                "status": case.status.value,
                "tier": lead.tier.value,
                "unit_id": lead.unit_id,
                "returns": 0,
                "supervised": False,
                "resolved": False,
                "closed": False,
                "created_at": at,
                "updated_at": at,
            }
        )
        assignment_rows.append({"case_id": case_id, "seq": 0, **_plain(asdict(lead))})
        timer_list += [
            {"case_id": case_id, "assignment_id": t.assignment_id, "kind": t.kind.value, "due_at": t.due_at}
            for t in router.timers(case)
        ]
    async with db.transaction() as s:
        await s.execute(cases.insert(), case_rows)
        await s.execute(assignments.insert(), assignment_rows)
        await s.execute(timer_rows.insert(), timer_list)
    return ids
