"""Inbound: a department's system answers about its unit's tickets (docs/adapters.md).

Two ways in, one code path: `POST /v1/adapters/{unit_id}/events`, signed as Standard Webhooks
say with the unit's secret, and the unit's updates topic (`<prefix>.dept.<unit_id>.updates`,
for units with `adapter: {kafka: true}`). Each update becomes the desk actions a person's
clicks are (accepted: claim; progress: a public note; resolved: resolve; rejected: return,
退单), acted by the department's system on behalf of the person it names, and applied at most
once per message id: the webhook-id (or the record's `ce_id` header) goes into the
departments inbox in the same transaction as the actions, under one consumer name per unit
for both ways in. An update's steps (its evidence, then the resolution) are one transaction:
a retry after a crash finds all of it applied or none."""

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import select

from departments.adapters.messages import Update, UpdateType
from departments.adapters.signing import SignatureError, verify
from departments.domain import NotYourTicket, TicketConflict, TicketNotFound
from departments.schemas import Ticket
from departments.tables import tickets
from departments.usecases import queue
from departments.usecases.tickets import Desk, Step
from services.district.events import NoteVisibility
from services.messaging.bus import ID_HEADER, Record
from services.messaging.consumer import Decode, Work
from services.messaging.transaction import Tx
from services.web.auth import Principal
from services.web.errors import Invalid, Unauthorized
from services.web.openapi import problem

UPDATE_TYPE = "gridcall.adapter.update"  # how an update shows in the logs and the dead letters
KEY_LIMIT = 64  # the inbox's event_id column


def inbox_name(unit_id: str) -> str:
    """The consumer the unit's updates are recorded under in the inbox, whichever way they came."""
    return f"adapter:{unit_id}"


def updates_topic(prefix: str, unit_id: str) -> str:
    return f"{prefix}.dept.{unit_id}.updates"


def once_key(message_id: str) -> str:
    """The inbox key of a message id: the id itself, or its SHA-256 if the column cannot hold
    it as it is (longer than 64 characters, or not printable ASCII)."""
    if len(message_id) <= KEY_LIMIT and message_id.isascii() and message_id.isprintable():
        return message_id
    return hashlib.sha256(message_id.encode(errors="surrogatepass")).hexdigest()


def actor(unit_id: str, update: Update) -> Principal:
    """The department's system, acting for the person it names: ticket events carry `by` as a
    person's would, with the system's account id."""
    return Principal(role="staff", unit_id=unit_id, name=update.handler, staff_id=inbound_id(unit_id), duty="handler")


def inbound_id(unit_id: str) -> str:
    return f"adapter:{unit_id}"


def parse(body: bytes) -> Update:
    """The update a body holds, or a 422 naming each field that is wrong or missing."""
    try:
        update = Update.model_validate_json(body)
    except ValidationError as exc:
        errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise Invalid(f"not a valid update: {summary}", errors=errors) from None
    missing = update.missing()
    if missing is not None:
        raise Invalid(f"{missing} is required for a {update.type.value} update", loc=("body", missing))
    return update


def steps(desk: Desk, unit_id: str, update: Update) -> list[Step]:
    """What the update does to the ticket, in order: the ticket must be the unit's, and its
    evidence goes in before the resolution or return that closes it (after the claim)."""
    who = actor(unit_id, update)
    caption = update.note or f"evidence from {unit_id}'s system"
    evidence = [desk.noting(caption, NoteVisibility.INTERNAL, who, url=str(u)) for u in update.evidence_urls]
    note = update.note or ""
    match update.type:
        case UpdateType.ACCEPTED:
            act = [desk.claiming(who), *evidence]
        case UpdateType.PROGRESS:
            act = [desk.noting(note, NoteVisibility.PUBLIC, who), *evidence]
        case UpdateType.RESOLVED:
            act = [*evidence, desk.resolving(note, who)]
        case UpdateType.REJECTED:
            assert update.reason_code is not None
            act = [*evidence, desk.returning(update.reason_code, note, None, who)]
    return [_the_units(unit_id), *act]


def _the_units(unit_id: str) -> Step:
    async def step(tx: Tx, row: Any) -> None:
        if row.unit_id != unit_id:  # the same answer as for no ticket at all: no hint it exists elsewhere
            raise TicketNotFound(f"no ticket {row.ticket_id}")

    return step


async def apply(desk: Desk, unit_id: str, update: Update, message_id: str, tx: Tx | None = None) -> bool:
    """Apply the update once per message id: in a transaction of its own, or in `tx` (whose
    inbox row the caller has written). False if the message was applied before."""
    try:
        if tx is not None:
            await desk.apply(tx, update.ticket_id, steps(desk, unit_id, update))
            return True
        once = (inbox_name(unit_id), once_key(message_id))
        return await desk.run(update.ticket_id, steps(desk, unit_id, update), once=once)
    except NotYourTicket as exc:  # a person of the unit holds the claim: the ticket's state, for the system
        raise TicketConflict(exc.message) from None


async def view(desk: Desk, unit_id: str, ticket_id: str, who: Principal, now: datetime) -> dict[str, Any]:
    async with desk.store.db.sessions() as s:
        row = (await s.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))).first()
        if row is None or row.unit_id != unit_id:
            raise TicketNotFound(f"no ticket {ticket_id}")
        return (await queue.views(s, [row], who, now))[0]


def decoder(desk: Desk, unit_id: str) -> Decode:
    """A record of the unit's updates topic as a consumer's work: the `ce_id` header (the
    CloudEvents Kafka binding's id, required) is its key in the inbox, shared with the
    webhook-ids of the unit's inbound requests; a record without it, or whose body is not a
    valid update, is parked with the reason."""

    def decode(record: Record) -> Work | Exception:
        message_id = record.headers.get(ID_HEADER)
        if not message_id:
            return Invalid(f"an update needs a {ID_HEADER} header: its unique id, the same on every resend")
        try:
            update = parse(record.value)
        except Invalid as exc:
            return exc

        async def effect(tx: Tx) -> None:
            await apply(desk, unit_id, update, message_id, tx)

        return Work(record, once_key(message_id), record.key, UPDATE_TYPE, effect)

    return decode


ANSWERS: dict[int | str, dict[str, Any]] = {
    401: problem(
        "no valid Standard Webhooks signature with the unit's secret (missing header, wrong secret, body "
        "changed, timestamp more than 5 minutes away), or the unit has no webhook adapter; the detail says which"
    ),
    404: problem("no ticket with this id in this unit's queue"),
    409: problem("the ticket's state does not allow this (claimed by someone else, closed, withdrawn)"),
}


def router(desk: Desk, keys: Mapping[str, bytes]) -> APIRouter:
    """`keys`: each unit's signing key (signing.adapter_keys, read once at start-up)."""
    api = APIRouter(prefix="/v1/adapters", tags=["adapters"])
    body_schema = _inlined(Update.model_json_schema())

    @api.post(
        "/{unit_id}/events",
        response_model=Ticket,
        responses=ANSWERS,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
    )
    async def event(unit_id: str, request: Request) -> dict[str, Any]:
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

    return api


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
