"""Reading tickets: a unit's queue (filtered, nearest due first, a page at a time), its
summary, and each ticket as its handler sees it: both clocks with the time left, who claimed
and resolved it, its notes and evidence, the case's earlier public notes, and the resident's
call-back contact (for the handling unit's own staff only)."""

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from departments.domain import TicketStatus
from departments.tables import contacts, notes, tickets
from services.storage.bulk import among
from services.web.auth import Principal
from services.web.errors import Invalid

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


def _cursor(row: Any) -> str:
    raw = json.dumps([row.due_at.isoformat(), row.ticket_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        due, ticket_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(due), str(ticket_id)
    except (ValueError, TypeError, binascii.Error):
        raise Invalid(
            "cursor is not one this API gave: pass next_cursor from the previous page, or leave it out to start again",
            loc=("query", "cursor"),
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
    return query


async def page(session: AsyncSession, unit_id: str, q: QueueQuery, now: datetime) -> tuple[list[Any], str | None]:
    """One page of the unit's queue, nearest due first (the response limit while open, the
    resolution limit once claimed), and the cursor of the next page (None on the last)."""
    query = _filtered(select(tickets).where(tickets.c.unit_id == unit_id), q, now)
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


async def views(session: AsyncSession, rows: Sequence[Any], caller: Principal, now: datetime) -> list[dict[str, Any]]:
    """The tickets as the caller sees them, with their notes, evidence and the case's public
    notes from its other tickets: three queries for the whole page."""
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
                "claimed_by": _person(r.claimed_by_id, r.claimed_by),
                "resolved_by": _person(r.resolved_by_id, r.resolved_by),
                "contact": callback.get(r.case_id) if shows_contact else None,
                "notes": [_note(n) for n in mine if n.kind != "evidence"],
                "evidence": [
                    {"url": n.url, "caption": n.text, "by": _person(n.by_id, n.by_name), "at": n.at}
                    for n in mine
                    if n.kind == "evidence"
                ],
                "case_notes": [{**_note(n), "unit_id": n.unit_id} for n in earlier],
                **clocks(r, now),
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
