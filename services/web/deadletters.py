"""The dead-letter endpoints of every app: ops list what the process's consumers parked and put
it back through them (services/messaging/deadletters.py does the work)."""

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.district.errors import NotFound
from services.messaging.consumer import Consumer
from services.messaging.deadletters import DeadLetters, Redrive, UnknownConsumer, list_parked, redrive
from services.web.auth import OpsDep
from services.web.openapi import problem

ConsumerQuery = Annotated[
    str | None,
    Query(pattern=r"^[A-Za-z0-9._-]{1,100}$", description="a consumer's name, or its service's (default: every one)"),
]
EventQuery = Annotated[str | None, Query(pattern=r"^[^\x00-\x1f\x7f]{1,200}$", description="only this event")]


def router(consumers: Sequence[Consumer]) -> APIRouter:
    api = APIRouter(prefix="/v1/ops/deadletters", tags=["ops"])
    no_such: dict[int | str, dict[str, Any]] = {404: problem("no consumer of that name in this process")}

    @api.get("", response_model=DeadLetters, responses=no_such)
    async def parked(_: OpsDep, consumer: ConsumerQuery = None) -> DeadLetters:
        """Records this process's consumers could not handle, oldest first, with the error."""
        try:
            return await list_parked(consumers, consumer)
        except UnknownConsumer as exc:
            raise NotFound(str(exc)) from None

    @api.post("/redrive", response_model=Redrive, responses=no_such)
    async def redrive_parked(_: OpsDep, consumer: ConsumerQuery = None, event_id: EventQuery = None) -> Redrive:
        """Put parked records back through their consumer's handling (after the fault is fixed):
        a handled record is removed, one that fails again stays with the new error. The inbox
        keeps a record that was handled before from having its effect twice."""
        try:
            return await redrive(consumers, consumer, event_id)
        except UnknownConsumer as exc:
            raise NotFound(str(exc)) from None

    return api
