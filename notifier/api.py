"""The notifier's ops API, routes only: a case's notifications and their delivery state. What
they read is in `notifier/repository.py`, the answer's types in `notifier/schemas.py`."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from notifier.repository import notifications_of
from notifier.schemas import Notification
from services.district.text import Identifier
from services.storage.db import Database
from services.web.auth import OpsDep
from services.web.parts import bind, part

DatabaseDep = Annotated[Database, Depends(part("notifier_db"))]
api = APIRouter(prefix="/v1", tags=["ops"])


def router(db: Database) -> APIRouter:
    """The notifier's ops routes, on this deployment's database."""
    return bind(api, notifier_db=db)


@api.get("/notifications", response_model=list[Notification])
async def list_notifications(
    _: OpsDep,
    db: DatabaseDep,
    case_id: Annotated[Identifier, Query(description="the case whose notifications to list")],
) -> list[dict[str, Any]]:
    """Every notification recorded for a case, with each channel's delivery state."""
    return await notifications_of(db, case_id)
