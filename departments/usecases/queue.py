"""Reading tickets: a unit's queue (filtered, nearest due first, a page at a time), its
summary, and each ticket as its handler sees it: both clocks with the time left, who claimed
and resolved it, its notes and evidence, the case's earlier public notes, and the resident's
call-back contact (for the handling unit's own staff only). `Queues` is what the staff API
reads, each read checking first that the caller may see what it names (departments/domain.py)."""

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from departments.domain import TicketStatus, allowed_actions, check_sees, check_sees_ticket, visible_units
from departments.tables import contacts, notes, tickets
from departments.usecases.staff import Accounts
from services.district.errors import Forbidden, Invalid, NotFound
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.principal import Principal
from services.district.text import moment
from services.messaging.transaction import Store
from services.storage.bulk import among

TO_DO = (TicketStatus.OPEN, TicketStatus.CLAIMED)


@dataclass(frozen=True)
class QueueQuery:
    statuses: Sequence[TicketStatus] = TO_DO
    category: str | None = None
    priority: str | None = None
    due_before: datetime | None = None
    late: bool | None = None
    limit: int = 50
    cursor: str | None = None
    search: str | None = None  # a case or ticket id, or words of the description


def _cursor(row: Any) -> str:
    raw = json.dumps([row.due_at.isoformat(), row.ticket_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        due, ticket_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return moment(datetime.fromisoformat(due)), str(ticket_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            "cursor is not one this API gave: pass next_cursor from the previous page, or leave it out to start again",
            loc=("query", "cursor"),
            kind="bad_cursor",
        ) from None


def _filtered(query: Select[Any], q: QueueQuery, now: datetime) -> Select[Any]:
    query = query.where(tickets.c.status.in_([s.value for s in q.statuses]))
    if q.category is not None:
        query = query.where(tickets.c.category == q.category)
    if q.priority is not None:
        query = query.where(tickets.c.priority == q.priority)
    if q.due_before is not None:
        query = query.where(tickets.c.due_at < q.due_before)
    if q.late is not None:
        late = and_(tickets.c.status.in_([s.value for s in TO_DO]), tickets.c.due_at <= now)
        query = query.where(late if q.late else ~late)
    if q.search:
        said = q.search
        query = query.where(
            or_(
                tickets.c.case_id == said,
                tickets.c.ticket_id == said,
                tickets.c.description.icontains(said, autoescape=True),
            )
        )
    return query


async def page(
    session: AsyncSession, which: ColumnElement[bool], q: QueueQuery, now: datetime
) -> tuple[list[Any], str | None]:
    """One page of the tickets `which` picks (a unit's, several units', one person's), nearest due
    first (the response limit while open, the resolution limit once claimed), and the cursor of
    the next page (None on the last)."""
    query = _filtered(select(tickets).where(which), q, now)
    if q.cursor is not None:
        due, ticket_id = _after(q.cursor)
        query = query.where(or_(tickets.c.due_at > due, and_(tickets.c.due_at == due, tickets.c.ticket_id > ticket_id)))
    rows = list(await session.execute(query.order_by(tickets.c.due_at, tickets.c.ticket_id).limit(q.limit + 1)))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return rows, _cursor(rows[-1]) if more else None


async def summary(session: AsyncSession, unit_id: str, now: datetime) -> dict[str, Any]:
    counts = dict.fromkeys((s.value for s in TicketStatus), 0)
    found = await session.execute(
        select(tickets.c.status, func.count()).where(tickets.c.unit_id == unit_id).group_by(tickets.c.status)
    )
    counts.update({status: n for status, n in found})
    late = await session.scalar(
        select(func.count()).where(
            tickets.c.unit_id == unit_id,
            tickets.c.status.in_([s.value for s in TO_DO]),
            tickets.c.due_at <= now,
        )
    )
    return {"unit_id": unit_id, "counts": counts, "to_do": counts["open"] + counts["claimed"], "late": late or 0}


async def views(
    session: AsyncSession, rows: Sequence[Any], caller: Principal, now: datetime, j: Jurisdiction
) -> list[dict[str, Any]]:
    """The tickets as the caller sees them, with their notes, evidence, the case's public
    notes from its other tickets (three queries for the whole page), and what the caller may
    do to each."""
    if not rows:
        return []
    case_ids = sorted({r.case_id for r in rows})
    written = list(
        await session.execute(select(notes).where(among(session, notes.c.case_id, case_ids)).order_by(notes.c.note_id))
    )
    own = [r.case_id for r in rows if caller.role == "staff" and r.unit_id == caller.unit_id]
    callback: dict[str, dict[str, str]] = {}
    if own:
        found = await session.execute(select(contacts).where(among(session, contacts.c.case_id, sorted(set(own)))))
        callback = {c.case_id: c.contact for c in found}
    out = []
    for r in rows:
        mine = [n for n in written if n.ticket_id == r.ticket_id]
        earlier = [n for n in written if n.case_id == r.case_id and n.ticket_id != r.ticket_id and n.kind == "public"]
        shows_contact = caller.role == "staff" and r.unit_id == caller.unit_id
        out.append(
            {
                **r._mapping,
                "location": {"lat": r.lat, "lon": r.lon} if r.lat is not None and r.lon is not None else None,
                "claimed_by": _person(r.claimed_by_id, r.claimed_by),
                "resolved_by": _person(r.resolved_by_id, r.resolved_by),
                "contact": callback.get(r.case_id) if shows_contact else None,
                "notes": [_note(n) for n in mine if n.kind != "evidence"],
                "evidence": [_evidence(n) for n in mine if n.kind == "evidence"],
                "case_notes": [{**_note(n), "unit_id": n.unit_id} for n in earlier],
                **clocks(r, now),
                "allowed_actions": allowed_actions(caller, r, j),
            }
        )
    return out


def clocks(r: Any, now: datetime) -> dict[str, Any]:
    """Both limits with the time left on each, and the one running now (none once closed)."""
    running = {TicketStatus.OPEN.value: "response", TicketStatus.CLAIMED.value: "resolution"}.get(r.status)
    due = r.response_due if running == "response" else r.resolution_due
    left = (due - now).total_seconds() if running else None
    return {
        "response_left_seconds": (r.response_due - now).total_seconds(),
        "resolution_left_seconds": (r.resolution_due - now).total_seconds(),
        "clock": {"name": running, "due": due if running else None, "seconds_left": left},
        "late": left is not None and left <= 0,
    }


def _person(staff_id: str | None, name: str | None) -> dict[str, Any] | None:
    return {"staff_id": staff_id, "name": name} if name else None


def _note(n: Any) -> dict[str, Any]:
    return {"note_id": n.note_id, "visibility": n.kind, "text": n.text, "by": _person(n.by_id, n.by_name), "at": n.at}


def _evidence(n: Any) -> dict[str, Any]:
    return {"url": n.url, "caption": n.text, "by": _person(n.by_id, n.by_name), "at": n.at}


class Queues:
    """The reads of the staff API: who the caller is, a unit's or a pool's queue and summary, a
    ticket, and a pool member's record."""

    def __init__(self, store: Store, jurisdiction: Jurisdiction, accounts: Accounts) -> None:
        self.db, self.clock, self.j, self.accounts = store.db, store.clock, jurisdiction, accounts

    def known_unit(self, unit_id: str, kind: UnitKind | None = None) -> None:
        unit = self.j.unit(unit_id)
        if unit is None or (kind is not None and unit.kind is not kind):
            what = "pool" if kind is UnitKind.POOL else "unit"
            raise NotFound(f"no {what} {unit_id!r} in {self.j.district.name}")

    def me(self, who: Principal) -> dict[str, Any]:
        seen = [u.id for u in self.j.units] if who.role == "ops" else sorted(visible_units(who, self.j))
        unit = self.j.unit(who.unit_id) if who.unit_id else None
        return {
            "staff_id": who.staff_id,
            "name": who.name,
            "role": "ops" if who.role == "ops" else who.duty,
            "unit_id": who.unit_id,
            "unit_name": unit.name if unit else None,
            "unit_kind": unit.kind.value if unit else None,
            "units": [_unit_ref(self.j, u) for u in seen],
        }

    async def ticket(self, ticket_id: str, who: Principal) -> dict[str, Any]:
        async with self.db.sessions() as s:
            row = (await s.execute(select(tickets).where(tickets.c.ticket_id == ticket_id))).first()
            if row is None:
                raise NotFound(f"no ticket {ticket_id}")
            check_sees_ticket(who, row, self.j)
            return (await views(s, [row], who, self.clock.now(), self.j))[0]

    async def listing(
        self, unit_id: str, who: Principal, q: QueueQuery, kind: UnitKind | None = None
    ) -> dict[str, Any]:
        """A page of the queue of `unit_id` (which must be a unit, of `kind` if given)."""
        self.known_unit(unit_id, kind)
        check_sees(who, unit_id, self.j)
        return await self._listing(tickets.c.unit_id == unit_id, who, q)

    async def across(self, who: Principal, q: QueueQuery, mine: bool = False) -> dict[str, Any]:
        """A page of every unit's queue the caller may see (all units, for ops), or with `mine`
        of the tickets the caller holds (claimed, and by default still to do)."""
        if mine:
            if who.staff_id is None:
                raise Forbidden("an ops token holds no tickets: only a staff account has tickets of its own")
            return await self._listing(tickets.c.claimed_by_id == who.staff_id, who, q)
        seen = [u.id for u in self.j.units] if who.role == "ops" else sorted(visible_units(who, self.j))
        return await self._listing(tickets.c.unit_id.in_(seen), who, q)

    async def _listing(self, which: ColumnElement[bool], who: Principal, q: QueueQuery) -> dict[str, Any]:
        async with self.db.sessions() as s:
            rows, cursor = await page(s, which, q, self.clock.now())
            return {"tickets": await views(s, rows, who, self.clock.now(), self.j), "next_cursor": cursor}

    async def unit_summary(self, unit_id: str, who: Principal) -> dict[str, Any]:
        self.known_unit(unit_id)
        check_sees(who, unit_id, self.j)
        async with self.db.sessions() as s:
            return await summary(s, unit_id, self.clock.now())

    async def record(self, pool_id: str, staff_id: str, who: Principal) -> dict[str, Any]:
        """The tickets a pool member resolved, latest first: theirs, their supervisors' and ops' to see."""
        self.known_unit(pool_id, UnitKind.POOL)
        if who.staff_id != staff_id:
            check_sees(who, pool_id, self.j)
            if who.role == "staff" and not who.supervisor:
                raise Forbidden("a member's record is theirs and their supervisors' to see")
        member = await self.accounts.get(staff_id)
        if member.unit_id != pool_id:
            raise NotFound(f"{staff_id} is not a member of {pool_id}")
        async with self.db.sessions() as s:
            rows = list(
                await s.execute(
                    select(tickets)
                    .where(tickets.c.unit_id == pool_id, tickets.c.resolved_by_id == staff_id)
                    .order_by(tickets.c.resolved_at.desc())
                )
            )
            done = await views(s, rows, who, self.clock.now(), self.j)
        return {"pool_id": pool_id, "staff_id": staff_id, "name": member.name, "completed": len(done), "tickets": done}


def _unit_ref(j: Jurisdiction, unit_id: str) -> dict[str, str]:
    unit = j.unit(unit_id)
    assert unit is not None
    return {"unit_id": unit.id, "name": unit.name, "kind": unit.kind.value}
