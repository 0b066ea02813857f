"""Intake's use cases, the work its HTTP calls (and the CLI) drive: filing reports, and the
resident's commands on a case (the satisfaction visit's answer, withdrawing it).

Filing is a group commit (services/storage/batching.py) with intake's rules.

Each report is checked in its own request (category, answers, place: no I/O), then queued for
the process's one writer, which writes whatever is waiting in one transaction and answers each
request once that transaction is committed. A batch is decided in memory, report by report in
the order they came, from two reads: the earlier answers to the batch's idempotency keys, and
the open cases near the batch's reports (locked in case-id order, the order intake's view
consumer locks them, so the two never deadlock). So the rules that read what an earlier report
wrote hold inside a batch as they do between batches: a key used twice gets one case, and a
report of a problem opened a moment earlier in the batch joins that case. A handful of
multi-row statements then write the batch, SQLAlchemy Core on the session's connection."""

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from intake.domain import (
    OPEN_STATUSES,
    CaseConflict,
    CaseStatus,
    Filing,
    IdempotencyConflict,
    Report,
    Satisfaction,
    check_report,
    degrees_around,
    distance_m,
    new_tracking_token,
    token_hash,
    token_matches,
)
from intake.tables import case_views, idempotency_keys, reports, revoked_staff, timeline
from services.district.errors import Forbidden, NotFound
from services.district.events import (
    CaseCancelRequested,
    CaseContactGiven,
    CaseDuplicateReported,
    CaseFollowed,
    CaseReported,
    CaseSatisfactionAnswered,
    Event,
    Location,
)
from services.district.jurisdiction import Jurisdiction, UnitKind
from services.district.policy import DuplicatePolicy, Policy
from services.messaging.transaction import Store, Tx
from services.storage.batching import GroupCommit
from services.web.auth import Authenticator, bearer_token

Answer = dict[str, Any]

IDEMPOTENCY_TTL = timedelta(hours=24)
KEY_REUSED = "this Idempotency-Key was already used with a different request body; use a new key for a new report"

ADD_REPORTERS = (
    update(case_views).where(case_views.c.case_id == bindparam("view_id")).values(reporters=bindparam("reporters_now"))
)


class ReportWriter:
    """Files the reports of one process: each is checked in its request, and the reports
    waiting together are written in one transaction (a group commit)."""

    def __init__(
        self, store: Store, j: Jurisdiction, policy: Policy, *, max_batch: int = 256, linger: float = 0.0
    ) -> None:
        self.store = store
        self.j = j
        self.policy = policy
        self.commits: GroupCommit[Filing, Answer] = GroupCommit(
            "intake.reports", self.write, max_batch=max_batch, linger=linger
        )

    async def file(self, report: Report) -> Answer:
        """Accept a report; once this returns it is durable. Raises ReportRejected for a
        report that cannot be filed as sent, IdempotencyConflict for a key reused with
        another body."""
        return await self.commits.submit(check_report(self.j, self.policy, report))

    async def write(self, filings: Sequence[Filing]) -> list[Answer | Exception]:
        """Write a batch of reports in one transaction: each one's answer, or its own error."""
        try:
            return await self._write(filings)
        except IntegrityError:
            if len(filings) > 1 or filings[0].report.idempotency_key is None:
                raise  # the group commit takes the batch again one report at a time
            # A concurrent request with this key (another intake process) committed first: answer as it did.
            return await self._write(filings)

    async def _write(self, filings: Sequence[Filing]) -> list[Answer | Exception]:
        now = self.store.clock.now()
        rule = self.policy.duplicates
        async with self.store.transaction() as tx:
            conn = await tx.session.connection()
            keys = sorted({k for f in filings if (k := f.report.idempotency_key)})
            earlier = await _earlier_answers(conn, keys, now)
            unanswered = [f for f in filings if not f.report.insist and f.report.idempotency_key not in earlier]
            batch = _Batch(now, rule, earlier, await _open_cases_near(conn, rule, unanswered, now))
            outcomes = [batch.file(f) for f in filings]
            await batch.write(conn, tx)
        return outcomes


@dataclass
class OpenCase:
    """An open case a report may join: read from the database, or opened earlier in the batch."""

    case_id: str
    category: str
    point: Location
    status: str
    reporters: int


@dataclass
class _Batch:
    """What a batch writes, decided one report at a time, in the order they came."""

    now: datetime
    rule: DuplicatePolicy
    answered: dict[str, tuple[str, Answer]]  # idempotency key -> (request hash, answer)
    open_cases: list[OpenCase]
    report_rows: list[dict[str, Any]] = field(default_factory=list)
    new_views: dict[str, dict[str, Any]] = field(default_factory=dict)
    joined_views: dict[str, int] = field(default_factory=dict)  # case id -> reporters
    timeline_rows: list[dict[str, Any]] = field(default_factory=list)
    key_rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def file(self, filing: Filing) -> Answer | Exception:
        report = filing.report
        key = report.idempotency_key
        if key and key in self.answered:
            request_hash, answer = self.answered[key]
            return dict(answer) if request_hash == report.request_hash else IdempotencyConflict(KEY_REUSED)
        token = new_tracking_token()
        same = None if report.insist else self._nearest(filing)
        case_id, status = self._join(filing, same, token) if same else self._open(filing, token)
        answer = {"case_id": case_id, "tracking_token": token, "status": status, "linked_to_existing": same is not None}
        if key:
            self.answered[key] = (report.request_hash, answer)
            self.key_rows.append(
                {
                    "key": key,
                    "request_hash": report.request_hash,
                    "case_id": case_id,
                    "response": answer,
                    "created_at": self.now,
                }
            )
        return answer

    def _nearest(self, filing: Filing) -> OpenCase | None:
        """The nearest open case of the report's category within the policy's distance (of
        equally near ones, the first by case id)."""
        here = filing.place.point
        near = [(distance_m(here, c.point), c.case_id, c) for c in self.open_cases if c.category == filing.category]
        near = [n for n in near if n[0] <= self.rule.distance_m]
        return min(near, key=lambda n: n[:2])[2] if near else None

    def _open(self, filing: Filing, token: str) -> tuple[str, str]:
        case_id = str(uuid.uuid4())
        report, place = filing.report, filing.place
        report_id = self._report_row(filing, case_id, token, linked=False)
        self.new_views[case_id] = {
            "case_id": case_id,
            "status": CaseStatus.RECEIVED.value,
            "category": filing.category,
            "lat": place.point.lat,
            "lon": place.point.lon,
            "reporters": 1,
            "created_at": self.now,
            "updated_at": self.now,
        }
        self.open_cases.append(OpenCase(case_id, filing.category, place.point, CaseStatus.RECEIVED.value, 1))
        self._timeline(case_id, "received", {"grid_id": place.grid.id})
        self.events.append(
            CaseReported(
                case_id=case_id,
                category=filing.category,
                description=report.description,
                location=place.point,
                grid_id=place.grid.id,
                details=filing.details,
                priority=report.priority,
                channel=report.channel,
                household_flag=report.household_flag,
            )
        )
        if contact := call_back(report.contact):
            self.events.append(CaseContactGiven(case_id=case_id, contact=contact))
        self._follow(case_id, report_id, report.contact, token, joined=False)
        return case_id, CaseStatus.RECEIVED.value

    def _join(self, filing: Filing, same: OpenCase, token: str) -> tuple[str, str]:
        """Another resident reported the same problem: they follow the open case."""
        same.reporters += 1
        if same.case_id in self.new_views:
            self.new_views[same.case_id]["reporters"] = same.reporters
        else:
            self.joined_views[same.case_id] = same.reporters
        report_id = self._report_row(filing, same.case_id, token, linked=True)
        self._timeline(same.case_id, "reported_again", {"reporters": same.reporters})
        self.events.append(CaseDuplicateReported(case_id=same.case_id, reporters=same.reporters))
        self._follow(same.case_id, report_id, filing.report.contact, token, joined=True)
        return same.case_id, same.status

    def _follow(self, case_id: str, report_id: str, contact: dict[str, Any] | None, token: str, joined: bool) -> None:
        """A resident who can be reached follows the case (the notifier tells them what happens)."""
        if contact and (contact.get("email") or contact.get("phone")):
            self.events.append(
                CaseFollowed(
                    case_id=case_id,
                    report_id=report_id,
                    email=contact.get("email"),
                    phone=contact.get("phone"),
                    language=contact.get("language") or "zh-CN",
                    tracking_token=token,
                    joined=joined,
                )
            )

    def _report_row(self, filing: Filing, case_id: str, token: str, *, linked: bool) -> str:
        report, place = filing.report, filing.place
        report_id = str(uuid.uuid4())
        self.report_rows.append(
            {
                "report_id": report_id,
                "case_id": case_id,
                "linked": linked,
                "category": filing.category,
                "description": report.description,
                "lat": place.point.lat,
                "lon": place.point.lon,
                "details": filing.details,
                "anonymous": report.anonymous,
                "grid_id": place.grid.id,
                "priority": report.priority.value,
                "channel": report.channel,
                "household_flag": report.household_flag,
                "contact": report.contact,
                "tracking_hash": token_hash(token),
                "created_at": self.now,
            }
        )
        return report_id

    def _timeline(self, case_id: str, kind: str, details: dict[str, Any]) -> None:
        self.timeline_rows.append({"case_id": case_id, "at": self.now, "type": kind, "details": details})

    async def write(self, conn: AsyncConnection, tx: Tx) -> None:
        """The batch in a few multi-row statements. Keys are inserted in key order, so two
        intake processes inserting the same keys wait for each other instead of deadlocking."""
        if self.report_rows:
            await conn.execute(reports.insert(), self.report_rows)
        if self.new_views:
            await conn.execute(case_views.insert(), list(self.new_views.values()))
        if self.joined_views:
            changes = [{"view_id": c, "reporters_now": n} for c, n in sorted(self.joined_views.items())]
            await conn.execute(ADD_REPORTERS, changes)
        if self.timeline_rows:
            await conn.execute(timeline.insert(), self.timeline_rows)
        if self.key_rows:
            await conn.execute(idempotency_keys.insert(), sorted(self.key_rows, key=lambda r: r["key"]))
        for event in self.events:
            tx.emit(event)


async def _earlier_answers(conn: AsyncConnection, keys: list[str], now: datetime) -> dict[str, tuple[str, Answer]]:
    """The answers given to earlier requests with these keys, for 24 hours; after that a key
    is free again (its row is deleted here, and written anew)."""
    if not keys:
        return {}
    rows = (await conn.execute(select(idempotency_keys).where(idempotency_keys.c.key.in_(keys)))).all()
    expired = [r.key for r in rows if r.created_at <= now - IDEMPOTENCY_TTL]
    if expired:
        await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.key.in_(expired)))
    return {r.key: (r.request_hash, dict(r.response)) for r in rows if r.key not in expired}


async def _open_cases_near(
    conn: AsyncConnection, rule: DuplicatePolicy, filings: Sequence[Filing], now: datetime
) -> list[OpenCase]:
    """The open cases of the policy's time window near any of these reports (a box around
    each), in one query that locks them in case-id order."""
    boxes = set()
    for f in filings:
        here = f.place.point
        dlat, dlon = degrees_around(here, rule.distance_m)
        boxes.add((f.category, here.lat - dlat, here.lat + dlat, here.lon - dlon, here.lon + dlon))
    if not boxes:
        return []
    v = case_views.c
    near_any = or_(
        *(and_(v.category == c, v.lat.between(s, n), v.lon.between(w, e)) for c, s, n, w, e in sorted(boxes))
    )
    rows = await conn.execute(
        select(v.case_id, v.category, v.lat, v.lon, v.status, v.reporters)
        .where(v.status.in_(OPEN_STATUSES), v.created_at >= now - rule.window.duration, near_any)
        .order_by(v.case_id)
        .with_for_update()
    )
    return [OpenCase(r.case_id, r.category, Location(lat=r.lat, lon=r.lon), r.status, r.reporters) for r in rows]


def call_back(contact: dict[str, Any] | None) -> dict[str, str] | None:
    """What the handling unit may use to call the resident back: name and phone, nothing else."""
    kept = {k: str(contact[k]) for k in ("name", "phone") if contact and contact.get(k)}
    return kept or None


CASE_NOT_FOUND = "no case with this id and tracking token"


async def tracked(store: Store, case_id: str, token: str | None, *, first_reporter: bool = False) -> Any:
    """The case's view if `token` is the tracking token of one of its reports. A wrong token
    looks exactly like a missing case. `first_reporter`: only the token of the report that
    opened the case will do (it cancels the case and answers its satisfaction visit); a
    resident whose later report joined the case follows it, and is told so."""
    async with store.db.sessions() as s:
        found = await s.execute(select(reports.c.tracking_hash, reports.c.linked).where(reports.c.case_id == case_id))
        mine = next((r for r in found if token_matches(token, r.tracking_hash)), None)
        if mine is None:
            raise NotFound(CASE_NOT_FOUND)
        if first_reporter and mine.linked:
            raise Forbidden(
                "your report joined a case another resident opened first: you follow it and are told what "
                "happens, but only that resident can cancel it or answer its satisfaction visit",
                code="not_first_reporter",
            )
        return (await s.execute(select(case_views).where(case_views.c.case_id == case_id))).one()


async def tracked_case(store: Store, case_id: str, token: str | None) -> dict[str, Any]:
    """The resident's view of a case, with its public timeline."""
    view = await tracked(store, case_id, token)
    async with store.db.sessions() as s:
        entries = await s.execute(select(timeline).where(timeline.c.case_id == case_id).order_by(timeline.c.id))
        return {**view._mapping, "timeline": [{"at": e.at, "type": e.type, **e.details} for e in entries]}


def scoped_key(client: str, key: str) -> str:
    """An Idempotency-Key as it is stored: the client's own (a hash of who sent it and the key),
    so that one client's key never answers another's request."""
    return hashlib.sha256(f"{client}\n{key}".encode()).hexdigest()


def body_hash(canonical_json: str) -> str:
    return hashlib.sha256(canonical_json.encode()).hexdigest()


async def answer_satisfaction(store: Store, case_id: str, satisfied: bool, comment: str) -> None:
    """回访: the resident's answer, once per resolution; it closes or reopens the case."""
    async with store.transaction() as tx:
        view = (
            await tx.session.execute(select(case_views).where(case_views.c.case_id == case_id).with_for_update())
        ).one()
        if view.status != CaseStatus.RESOLVED.value:
            raise CaseConflict(f"the case is {view.status}; the satisfaction visit opens once it is resolved")
        if view.satisfaction_answered_at is not None:
            raise CaseConflict("this resolution has been answered already")
        now = store.clock.now()
        outcome = Satisfaction.SATISFIED if satisfied else Satisfaction.UNSATISFIED
        await tx.session.execute(
            update(case_views)
            .where(case_views.c.case_id == case_id)
            .values(satisfaction_answered_at=now, satisfaction=outcome.value)
        )
        await tx.session.execute(
            timeline.insert().values(case_id=case_id, at=now, type="satisfaction", details={"satisfied": satisfied})
        )
        tx.emit(CaseSatisfactionAnswered(case_id=case_id, satisfied=satisfied, comment=comment))


async def request_cancel(store: Store, case_id: str, reason: str) -> None:
    """Withdraw a case nobody has claimed. The dispatcher has the last word: if a unit claimed
    it meanwhile, the cancellation is refused and the timeline says so."""
    async with store.transaction() as tx:
        view = (
            await tx.session.execute(select(case_views).where(case_views.c.case_id == case_id).with_for_update())
        ).one()
        if view.status not in (CaseStatus.RECEIVED.value, CaseStatus.ASSIGNED.value):
            raise CaseConflict(f"the case is {view.status}; only a case nobody has claimed can be withdrawn")
        if view.cancel_requested_at is not None:
            raise CaseConflict("the case is being withdrawn already")
        now = store.clock.now()
        await tx.session.execute(
            update(case_views).where(case_views.c.case_id == case_id).values(cancel_requested_at=now)
        )
        await tx.session.execute(timeline.insert().values(case_id=case_id, at=now, type="cancel_requested", details={}))
        tx.emit(CaseCancelRequested(case_id=case_id, reason=reason))


async def grid_worker_only(
    store: Store, authenticator: Authenticator, j: Jurisdiction, authorization: str | None
) -> None:
    """Only a grid worker (a grid unit's staff token, of an account departments has not
    revoked: gridcall.staff.revoked) may flag a household."""
    token = bearer_token(authorization)
    try:
        principal = authenticator.verify(token) if token else None
    except ValueError:
        principal = None
    unit = j.unit(principal.unit_id) if principal and principal.unit_id else None
    if principal is None or unit is None or unit.kind is not UnitKind.GRID:
        raise Forbidden(
            "household_flag can only be set by a grid worker: send a grid unit's staff token "
            "as 'Authorization: Bearer <token>'",
        )
    async with store.db.sessions() as s:
        revoked = await s.scalar(
            select(revoked_staff.c.revoked_at).where(revoked_staff.c.staff_id == principal.staff_id)
        )
    if revoked is not None:
        raise Forbidden(
            "household_flag: this grid worker's account was revoked, and its token flags nothing; "
            "ask for a new account (gridcall staff add)",
            code="token_revoked",
        )
