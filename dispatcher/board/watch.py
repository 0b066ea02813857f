"""The board's cases (`/v1/ops/watch`): every case that breached since a time or is late now, one
row each with where it is, the path it took, what it waits on and how late it is; and ops taking
up a case under supervision (督办, `/v1/ops/cases/{id}/acknowledge`)."""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.domain import AssignmentStatus, Case
from dispatcher.figures import FIRST_BREACH
from dispatcher.repository import load
from dispatcher.tables import assignments, cases, history
from dispatcher.usecases import by_case, late_now
from services.district.errors import Conflict, NotFound
from services.storage.bulk import among
from services.storage.db import Database

ACKNOWLEDGED = "case.supervision_acknowledged"
WATCHED = or_(history.c.type == ACKNOWLEDGED, FIRST_BREACH)  # what a case's row is made of
EXCERPT = 60  # characters of a case's description on the board


async def watch(db: Database, now: datetime, since: datetime, limit: int, **only: str | None) -> dict[str, Any]:
    """The board's cases, one row each: every case that breached a limit since `since`, or is
    late now, with where it is, the path it took, what it waits on and how late it is.

    A case is `live` while it needs ops' eye: it is late now, or it breached and the unit now
    holding it has not yet taken it up. It is `done` (into the history, with when and how) once
    it is resolved or closed, or once the unit holding it claimed it after its last breach and
    is within its limits; a later breach makes it live again."""
    breached = (
        select(history.c.case_id)
        .join(cases, cases.c.case_id == history.c.case_id)
        .where(FIRST_BREACH, history.c.at >= since)
    )
    late = select(assignments.c.case_id).join(cases, cases.c.case_id == assignments.c.case_id).where(late_now(now))
    kept = {"street": cases.c.street_id, "community": cases.c.community_id, "category": cases.c.category}
    for name, column in kept.items():
        if only.get(name) is not None:
            breached, late = breached.where(column == only[name]), late.where(column == only[name])
    async with db.sessions() as s:
        ids = {r[0] for r in await s.execute(breached.distinct())} | {r[0] for r in await s.execute(late.distinct())}
        if not ids:
            return {"now": now, "since": since, "live": [], "done": []}
        places = {
            r.case_id: r
            for r in await s.execute(
                select(cases.c.case_id, cases.c.street_id, cases.c.community_id, cases.c.created_at)
                .add_columns(cases.c.updated_at, cases.c.closed, cases.c.resolved, cases.c.resolved_at)
                .where(among(s, cases.c.case_id, sorted(ids)))
            )
        }
        # A resolved or closed case is done, and only the `limit` most recently finished can be
        # shown (ties as the rows below sort them: by case id): the rest are not loaded.
        finished = sorted((p for p in places.values() if p.closed or p.resolved), key=_newest_finished)
        shown = sorted(
            {p.case_id for p in places.values() if not (p.closed or p.resolved)} | {p.case_id for p in finished[:limit]}
        )
        loaded = await load_cases(s, shown)
        trail = (
            await s.execute(select(history).where(among(s, history.c.case_id, shown), WATCHED).order_by(history.c.id))
        ).all()
    trails = by_case(trail)
    rows = [_watched(c, places[c.case_id], trails.get(c.case_id, []), now) for c in loaded]
    live = sorted((r for r in rows if r["state"] == "live"), key=_urgency)
    done = sorted((r for r in rows if r["state"] == "done"), key=lambda r: r["met_at"], reverse=True)
    return {"now": now, "since": since, "live": live[:limit], "done": done[:limit]}


def _finished_at(place: Any) -> datetime:
    """When a resolved or closed case was done: its resolution, or its last change."""
    return place.resolved_at or place.updated_at


def _newest_finished(place: Any) -> tuple[float, str]:
    return (-_finished_at(place).timestamp(), place.case_id)


async def load_cases(s: AsyncSession, ids: Collection[str]) -> list[Case]:
    """The cases as the routing reads them (with their assignments), without their locks."""
    return list((await load(s, ids, lock=False)).cases.values())


def _late_now(case: Case, now: datetime) -> dict[str, Any] | None:
    """The limit the case is most late on right now, among its unfinished assignments."""
    found = []
    for a in case.assignments:
        if a.status is AssignmentStatus.OPEN and a.response_due <= now:
            found.append(("response", a.response_due, a))
        if a.status in (AssignmentStatus.OPEN, AssignmentStatus.CLAIMED) and a.resolution_due <= now:
            found.append(("resolution", a.resolution_due, a))
    if not found:
        return None
    clock, due, a = min(found, key=lambda f: f[1])
    return {
        "clock": clock,
        "due_at": due,
        "late_seconds": (now - due).total_seconds(),
        "unit_id": a.unit_id,
        "tier": a.tier.value,
        "ticket_id": a.assignment_id,
    }


def _urgency(row: dict[str, Any]) -> tuple[float, float]:
    """Most late first; then those waiting, newest breach first."""
    late = row["late"]["late_seconds"] if row["late"] else -1.0
    return (-late, -row["breached_at"].timestamp())


def _watched(case: Case, place: Any, trail: list[Any], now: datetime) -> dict[str, Any]:
    """A case's row on the board, from its first breaches and acknowledgements (`trail`)."""
    firsts = [h for h in trail if h.type != ACKNOWLEDGED]
    last = firsts[-1] if firsts else None
    supervision = next((h for h in reversed(firsts) if h.details.get("supervised")), None)
    ack = next((h for h in reversed(trail) if h.type == ACKNOWLEDGED), None)
    acknowledged = case.supervised and ack is not None and supervision is not None and ack.id > supervision.id
    lead = case.lead
    late = _late_now(case, now)
    met, met_at = None, None
    if case.closed or case.resolved:
        met, met_at = ("resolved" if case.resolved_at else "closed"), _finished_at(place)
    elif late is None and lead.status is AssignmentStatus.CLAIMED and last is not None and lead.claimed_at >= last.at:
        met, met_at = "claimed", lead.claimed_at
    waiting = None
    if not (case.closed or case.resolved):
        response = lead.status is AssignmentStatus.OPEN
        waiting = {
            "ticket_id": lead.assignment_id,
            "unit_id": lead.unit_id,
            "tier": lead.tier.value,
            "status": lead.status.value,
            "clock": "response" if response else "resolution",
            "due_at": lead.response_due if response else lead.resolution_due,
        }
    excerpt = case.description if len(case.description) <= EXCERPT else case.description[: EXCERPT - 1] + "…"
    return {
        "case_id": case.case_id,
        "category": case.category,
        "priority": case.priority.value,
        "status": case.status.value,
        "street_id": place.street_id,
        "community_id": place.community_id,
        "grid_id": case.grid_id,
        "address": case.details.get("address"),
        "excerpt": excerpt,
        "created_at": place.created_at,
        "path": [
            {
                "ticket_id": a.assignment_id,
                "unit_id": a.unit_id,
                "tier": a.tier.value,
                "role": a.role.value,
                "status": a.status.value,
                "end_reason": a.end_reason,
                "breached": a.response_breached or a.resolution_breached,
            }
            for a in case.assignments
        ],
        "waiting": waiting,
        "late": late,
        "breaches": len(firsts),
        "breached_at": last.at if last is not None else (late["due_at"] if late else now),
        "last_breach": None
        if last is None
        else {k: last.details.get(k) for k in ("unit_id", "tier", "clock", "late_seconds", "supervised")},
        "supervised": case.supervised,
        "acknowledged": {"by": ack.details.get("by"), "at": ack.at, "note": ack.details.get("note")}
        if acknowledged and ack is not None
        else None,
        "state": "done" if met else "live",
        "met": met,
        "met_at": met_at,
    }


async def acknowledge(db: Database, case_id: str, by: str, note: str | None, now: datetime) -> dict[str, Any]:
    """Ops take up a case under supervision (督办): recorded in its history with who and when,
    once per supervision (the case's row lock serialises two officers pressing at once; the
    second is told who was first). The routing is unchanged: the unit holding the case is
    still the one to act, and the repeat alerts go on until it does."""
    async with db.transaction() as s:
        row = (await s.execute(select(cases.c.supervised).where(cases.c.case_id == case_id).with_for_update())).first()
        if row is None:
            raise NotFound(f"no case {case_id!r} in the dispatcher")
        if not row.supervised:
            raise Conflict(f"case {case_id} is not under supervision: nothing to take up", code="case_conflict")
        trail = (
            await s.execute(select(history).where(history.c.case_id == case_id, WATCHED).order_by(history.c.id))
        ).all()
        firsts = [h for h in trail if h.type != ACKNOWLEDGED]
        started = max((h.id for h in firsts if h.details.get("supervised")), default=0)  # repeat alerts start nothing
        earlier = next((h for h in trail if h.type == ACKNOWLEDGED and h.id > started), None)
        if earlier is not None:
            who = (earlier.details.get("by") or {}).get("name")
            raise Conflict(
                f"case {case_id} was already taken up by {who} at {earlier.at.isoformat()}",
                code="already_acknowledged",
            )
        lead = (await load_cases(s, [case_id]))[0].lead
        details = {"by": {"name": by, "role": "ops"}, "note": note, "assignment_id": lead.assignment_id}
        await s.execute(history.insert().values(case_id=case_id, at=now, type=ACKNOWLEDGED, details=details))
    return {"case_id": case_id, "at": now, **details}
