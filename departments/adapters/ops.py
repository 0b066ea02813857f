"""Ops over adapters: the deliveries (pending, delivered, dead) with their last error, putting
dead ones back, and switching on again an adapter its system switched off (410). The same
functions serve the ops endpoints and `gridcall adapter`."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from departments.tables import adapters, deliveries
from services.district.clock import Clock
from services.district.jurisdiction import Jurisdiction
from services.district.text import Identifier
from services.storage.db import Database
from services.web.auth import OpsDep
from services.web.errors import Conflict, NotFound
from services.web.openapi import problem

State = Literal["pending", "delivered", "dead"]


class Delivery(BaseModel):
    id: int
    msg_id: str = Field(description="the CloudEvent id and webhook-id: the same on every attempt")
    unit_id: str
    case_id: str
    event_type: str
    state: State
    attempts: int
    next_attempt_at: datetime | None = Field(description="when it is tried next (pending only)")
    last_status: int | None = Field(description="the HTTP status of the last answer; none if there was no answer")
    last_error: str | None = Field(description="what went wrong last (no answer, HTTP 503…)")
    created_at: datetime
    delivered_at: datetime | None


class Deliveries(BaseModel):
    count: int
    deliveries: list[Delivery]


class AdapterState(BaseModel):
    unit_id: str
    webhook: bool = Field(description="assignments are POSTed to the unit's url")
    kafka: bool = Field(description="assignments are published on the unit's topic")
    enabled: bool = Field(description="false once the unit's system answered 410 Gone; its deliveries wait")
    disabled_at: datetime | None
    disabled_because: str | None
    pending: int
    dead: int


class Redriven(BaseModel):
    redriven: int = Field(description="dead deliveries put back to pending")


def _delivery(row: Any) -> Delivery:
    found = Delivery.model_validate(row, from_attributes=True)
    return found if found.state == "pending" else found.model_copy(update={"next_attempt_at": None})


class AdapterOps:
    def __init__(self, db: Database, clock: Clock, jurisdiction: Jurisdiction) -> None:
        self.db = db
        self.clock = clock
        self.units = {u.id: u.adapter for u in jurisdiction.units if u.adapter is not None}

    async def deliveries(self, state: State | None = None, unit: str | None = None, limit: int = 500) -> Deliveries:
        query = select(deliveries).order_by(deliveries.c.id).limit(limit)
        if state is not None:
            query = query.where(deliveries.c.state == state)
        if unit is not None:
            query = query.where(deliveries.c.unit_id == unit)
        async with self.db.sessions() as s:
            found = [_delivery(r) for r in (await s.execute(query)).all()]
        return Deliveries(count=len(found), deliveries=found)

    async def redrive(self, delivery_id: int) -> Delivery:
        """A dead delivery goes back to pending with its attempts reset; it is sent once more,
        after any earlier pending delivery of its case."""
        async with self.db.transaction() as s:
            row = (
                await s.execute(select(deliveries).where(deliveries.c.id == delivery_id).with_for_update())
            ).one_or_none()
            if row is None:
                raise NotFound("no such delivery")
            if row.state != "dead":
                raise Conflict(f"the delivery is {row.state}; only a dead one can be re-driven")
            await s.execute(self._back_to_pending().where(deliveries.c.id == delivery_id))
            row = (await s.execute(select(deliveries).where(deliveries.c.id == delivery_id))).one()
        return _delivery(row)

    async def redrive_unit(self, unit: str | None) -> int:
        """Every dead delivery of a unit (of every unit: None) back to pending."""
        statement = self._back_to_pending().where(deliveries.c.state == "dead")
        if unit is not None:
            self._known(unit)
            statement = statement.where(deliveries.c.unit_id == unit)
        async with self.db.transaction() as s:
            return len((await s.execute(statement.returning(deliveries.c.id))).all())

    def _back_to_pending(self) -> Any:
        return update(deliveries).values(state="pending", attempts=0, next_attempt_at=self.clock.now())

    def _known(self, unit: str) -> None:
        if unit not in self.units:
            raise NotFound(f"unit {unit} has no adapter")

    async def enable(self, unit: str) -> AdapterState:
        self._known(unit)
        async with self.db.transaction() as s:
            await s.execute(adapters.delete().where(adapters.c.unit_id == unit))
        return next(a for a in await self.adapters() if a.unit_id == unit)

    async def adapters(self) -> list[AdapterState]:
        async with self.db.sessions() as s:
            off = {r.unit_id: r for r in (await s.execute(select(adapters))).all()}
            counts = (
                await s.execute(
                    select(deliveries.c.unit_id, deliveries.c.state, func.count())
                    .where(deliveries.c.state != "delivered")
                    .group_by(deliveries.c.unit_id, deliveries.c.state)
                )
            ).all()
        count = {(u, state): n for u, state, n in counts}
        return [
            AdapterState(
                unit_id=u,
                webhook=a.url is not None,
                kafka=a.kafka,
                enabled=u not in off,
                disabled_at=off[u].disabled_at if u in off else None,
                disabled_because=off[u].disabled_because if u in off else None,
                pending=count.get((u, "pending"), 0),
                dead=count.get((u, "dead"), 0),
            )
            for u, a in sorted(self.units.items())
        ]


def router(ops: AdapterOps) -> APIRouter:
    api = APIRouter(prefix="/v1/ops", tags=["ops"])
    UnitQuery = Annotated[Identifier | None, Query(description="only this unit's deliveries")]

    @api.get("/deliveries", response_model=Deliveries)
    async def list_deliveries(
        _: OpsDep,
        state: Annotated[State | None, Query(description="pending, delivered or dead")] = None,
        unit: UnitQuery = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> Deliveries:
        """Webhook deliveries to units' own systems, oldest first, each with its attempts, its
        last status and error and (pending) its next attempt."""
        return await ops.deliveries(state, unit, limit)

    @api.post(
        "/deliveries/{delivery_id}/redrive",
        response_model=Delivery,
        responses={404: problem("no such delivery"), 409: problem("the delivery is not dead")},
    )
    async def redrive(_: OpsDep, delivery_id: Annotated[int, Path(ge=1)]) -> Delivery:
        """Put a dead delivery back: pending again, attempts reset, sent once more (after any
        earlier pending delivery of its case)."""
        return await ops.redrive(delivery_id)

    @api.get("/adapters", response_model=list[AdapterState])
    async def list_adapters(_: OpsDep) -> list[AdapterState]:
        """Every unit's adapter: on or switched off by its system (410), with its pending and dead deliveries."""
        return await ops.adapters()

    @api.post(
        "/adapters/{unit_id}/enable",
        response_model=AdapterState,
        responses={404: problem("the unit has no adapter")},
    )
    async def enable(_: OpsDep, unit_id: Identifier) -> AdapterState:
        """Switch on again an adapter its system switched off (410 Gone): its waiting deliveries go out."""
        return await ops.enable(unit_id)

    return api
