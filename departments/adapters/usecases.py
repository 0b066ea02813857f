"""The adapters' use cases: a department's system answering about its unit's tickets
(inbound, docs/adapters.md), and ops over the deliveries to those systems.

Inbound, two ways in, one code path: `POST /v1/adapters/{unit_id}/events`, signed as Standard
Webhooks say with the unit's secret (departments/adapters/api.py), and the unit's updates topic
(`<prefix>.dept.<unit_id>.updates`, for units with `adapter: {kafka: true}`;
departments/adapters/handlers.py). Each update becomes the desk actions a person's clicks are
(accepted: claim; progress: a public note; resolved: resolve; rejected: return, 退单), acted by
the department's system on behalf of the person it names, and applied at most once per message
id: the webhook-id (or the record's `ce_id` header) goes into the departments inbox in the same
transaction as the actions, under one consumer name per unit for both ways in. An update's steps
(its evidence, then the resolution) are one transaction: a retry after a crash finds all of it
applied or none.

Ops: the deliveries (the kernel's, services/delivery/ops.py, shown as pending, delivered or
dead) with their last error, putting dead ones back, and switching on again an adapter its
system switched off (410). The same `AdapterOps` serves the ops endpoints and `gridcall adapter`."""

import hashlib
from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from departments.adapters.messages import Update, UpdateType
from departments.adapters.schemas import AdapterState, Deliveries, Delivery, State
from departments.adapters.workers import CHANNEL
from departments.domain import NotYourTicket, TicketConflict, TicketNotFound
from departments.tables import adapters, deliveries, tickets
from departments.usecases import queue
from departments.usecases.tickets import Desk, Step
from services.delivery.ops import DeliveryOps, Filters, NotRedrivable
from services.delivery.tables import State as DeliveryState
from services.district.clock import Clock
from services.district.errors import Conflict, Invalid, NotFound
from services.district.events import NoteVisibility
from services.district.jurisdiction import Jurisdiction
from services.district.principal import Principal
from services.messaging.transaction import Tx
from services.storage.db import Database

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
        return (await queue.views(s, [row], who, now, desk.j))[0]


# The adapters' ops speak of pending, delivered and dead (docs/adapters.md): the kernel's states in those words.
SHOWN: dict[str, State] = {
    DeliveryState.CREATED: "pending",
    DeliveryState.SENDING: "pending",
    DeliveryState.TEMPORARY_FAILURE: "pending",
    DeliveryState.DELIVERED: "delivered",
    DeliveryState.DEAD: "dead",
    DeliveryState.PERMANENT_FAILURE: "dead",
}
STATES = {shown: {DeliveryState(s) for s, w in SHOWN.items() if w == shown} for shown in set(SHOWN.values())}


def _delivery(row: Any) -> Delivery:
    state = SHOWN[row.state]
    return Delivery(
        id=row.id,
        msg_id=row.msg_id,
        unit_id=row.destination,
        case_id=row.case_id,
        event_type=row.kind,
        state=state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if state == "pending" else None,
        last_status=row.last_status,
        last_error=row.reason,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


class AdapterOps:
    def __init__(self, db: Database, clock: Clock, jurisdiction: Jurisdiction) -> None:
        self.db = db
        self.ops = DeliveryOps(db, clock, deliveries)
        self.units = {u.id: u.adapter for u in jurisdiction.units if u.adapter is not None}

    async def deliveries(self, state: State | None = None, unit: str | None = None, limit: int = 500) -> Deliveries:
        chosen = Filters(STATES[state] if state is not None else None, channel=CHANNEL, destination=unit)
        found = [_delivery(r) for r in (await self.ops.listing(chosen, limit=limit)).rows]
        return Deliveries(count=len(found), deliveries=found)

    async def redrive(self, delivery_id: int) -> Delivery:
        """A dead delivery goes back to pending with its attempts reset; it is sent once more,
        after any earlier pending delivery of its case."""
        try:
            return _delivery(await self.ops.redrive(delivery_id))
        except NotRedrivable as exc:
            raise Conflict(f"the delivery is {SHOWN[exc.state]}; only a dead one can be re-driven") from None

    async def redrive_unit(self, unit: str | None) -> int:
        """Every dead delivery of a unit (of every unit: None) back to pending."""
        if unit is not None:
            self._known(unit)
        return await self.ops.redrive_all(Filters(channel=CHANNEL, destination=unit))

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
        waiting = Filters(STATES["pending"] | STATES["dead"], channel=CHANNEL)
        count: Counter[tuple[str, State]] = Counter()
        for (unit, state), n in (await self.ops.counts(waiting, per=("destination", "state"))).items():
            count[unit, SHOWN[state]] += n
        return [
            AdapterState(
                unit_id=u,
                webhook=a.url is not None,
                kafka=a.kafka,
                enabled=u not in off,
                disabled_at=off[u].disabled_at if u in off else None,
                disabled_because=off[u].disabled_because if u in off else None,
                pending=count[u, "pending"],
                dead=count[u, "dead"],
            )
            for u, a in sorted(self.units.items())
        ]
