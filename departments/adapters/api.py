"""The adapters' HTTP routes: a department's system reporting on its unit's tickets (the
signed inbound webhook), and the ops endpoints over webhook deliveries and adapters. Routes
only: the work is departments/adapters/usecases.py."""

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from departments.adapters.messages import Update
from departments.adapters.schemas import AdapterState, Deliveries, Delivery, State
from departments.adapters.signing import SignatureError, verify
from departments.adapters.usecases import AdapterOps, actor, apply, parse, view
from departments.schemas import Ticket
from departments.usecases.tickets import Desk
from services.district.errors import Unauthorized
from services.district.text import ROW_ID_MAX, Identifier
from services.web.auth import OpsDep
from services.web.openapi import problem
from services.web.parts import bind, part

ANSWERS: dict[int | str, dict[str, Any]] = {
    401: problem(
        "no valid Standard Webhooks signature with the unit's secret (missing header, wrong secret, body "
        "changed, timestamp more than 5 minutes away), or the unit has no webhook adapter; the detail says which"
    ),
    404: problem("no ticket with this id in this unit's queue"),
    409: problem("the ticket's state does not allow this (claimed by someone else, closed, withdrawn)"),
}


def router(desk: Desk, keys: Mapping[str, bytes], ops: AdapterOps) -> APIRouter:
    """The adapters' routes, with the desk, `keys` (each unit's signing key: signing.adapter_keys,
    read once at start-up) and the ops use cases."""
    routes = APIRouter()
    routes.include_router(inbound)
    routes.include_router(operations)
    return bind(routes, desk=desk, adapter_keys=keys, adapter_ops=ops)


DeskDep = Annotated[Desk, Depends(part("desk"))]
KeysDep = Annotated[Mapping[str, bytes], Depends(part("adapter_keys"))]
AdapterOpsDep = Annotated[AdapterOps, Depends(part("adapter_ops"))]
UnitQuery = Annotated[Identifier | None, Query(description="only this unit's deliveries")]


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema with its `$defs` put in place of their references (the request body is
    read raw, for its signature, so it is described by hand; Update's types are not recursive)."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline({**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return dict(inline(schema))


inbound = APIRouter(prefix="/v1/adapters", tags=["adapters"])
operations = APIRouter(prefix="/v1/ops", tags=["ops"])


@inbound.post(
    "/{unit_id}/events",
    response_model=Ticket,
    responses=ANSWERS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(Update.model_json_schema())}},
        }
    },
)
async def event(unit_id: str, request: Request, desk: DeskDep, keys: KeysDep) -> dict[str, Any]:
    """A department's system reports on one of its unit's tickets: accepted (claims it),
    progress (a public note), resolved (needs a note) or rejected (退单: needs a
    reason_code and the note as reason). Signed as Standard Webhooks say, with the unit's
    secret. The same webhook-id again answers 200 and changes nothing."""
    key = keys.get(unit_id)
    if key is None:
        raise Unauthorized(f"unit {unit_id!r} has no webhook adapter with a secret: nothing can be signed for it")
    body = await request.body()
    now = desk.store.clock.now()
    try:
        message_id = verify(key, request.headers, body, now)
    except SignatureError as exc:
        raise Unauthorized(f"signature refused: {exc}") from None
    update = parse(body)
    await apply(desk, unit_id, update, message_id)
    return await view(desk, unit_id, update.ticket_id, actor(unit_id, update), now)


@operations.get("/deliveries", response_model=Deliveries)
async def list_deliveries(
    _: OpsDep,
    ops: AdapterOpsDep,
    state: Annotated[State | None, Query(description="pending, delivered or dead")] = None,
    unit: UnitQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Deliveries:
    """Webhook deliveries to units' own systems, oldest first, each with its attempts, its
    last status and error and (pending) its next attempt."""
    return await ops.deliveries(state, unit, limit)


@operations.post(
    "/deliveries/{delivery_id}/redrive",
    response_model=Delivery,
    responses={404: problem("no such delivery"), 409: problem("the delivery is not dead")},
)
async def redrive(_: OpsDep, ops: AdapterOpsDep, delivery_id: Annotated[int, Path(ge=1, le=ROW_ID_MAX)]) -> Delivery:
    """Put a dead delivery back: pending again, attempts reset, sent once more (after any
    earlier pending delivery of its case)."""
    return await ops.redrive(delivery_id)


@operations.get("/adapters", response_model=list[AdapterState])
async def list_adapters(_: OpsDep, ops: AdapterOpsDep) -> list[AdapterState]:
    """Every unit's adapter: on or switched off by its system (410), with its pending and dead deliveries."""
    return await ops.adapters()


@operations.post(
    "/adapters/{unit_id}/enable",
    response_model=AdapterState,
    responses={404: problem("the unit has no adapter")},
)
async def enable(_: OpsDep, ops: AdapterOpsDep, unit_id: Identifier) -> AdapterState:
    """Switch on again an adapter its system switched off (410 Gone): its waiting deliveries go out."""
    return await ops.enable(unit_id)
