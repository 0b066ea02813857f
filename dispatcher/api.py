from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from dispatcher.tables import assignments, cases
from services.auth import OpsDep
from services.db import Database


def router(db: Database) -> APIRouter:
    api = APIRouter(prefix="/v1/ops", tags=["ops"])

    @api.get("/cases/{case_id}")
    async def case_history(case_id: str, _: OpsDep) -> dict[str, Any]:
        """The case as the dispatcher routes it, with every assignment it has had."""
        async with db.sessions() as s:
            case = (await s.execute(select(cases).where(cases.c.case_id == case_id))).first()
            if case is None:
                raise HTTPException(404, f"no case {case_id} in the dispatcher")
            history = await s.execute(
                select(assignments).where(assignments.c.case_id == case_id).order_by(assignments.c.assigned_at)
            )
            return {**case._asdict(), "assignments": [a._asdict() for a in history]}

    return api
