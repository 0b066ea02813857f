import hashlib
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain import (
    OPEN_STATUSES,
    CaseConflict,
    CaseStatus,
    IdempotencyConflict,
    check_category,
    degrees_around,
    distance_m,
    locate,
    new_tracking_token,
    token_hash,
    view_change,
)
from intake.tables import case_views, idempotency_keys, reports, timeline
from services.events import (
    CaseAssigned,
    CaseCancelRefused,
    CaseCancelRequested,
    CaseClaimed,
    CaseClosed,
    CaseDuplicateReported,
    CaseEscalated,
    CaseReopened,
    CaseReported,
    CaseResolved,
    CaseSatisfactionAnswered,
    CaseWhistled,
    Envelope,
    Event,
    Location,
    Priority,
)
from services.jurisdiction import Jurisdiction
from services.messaging import Handler, Store, Tx
from services.policy import Policy


async def file_report(
    store: Store,
    j: Jurisdiction,
    policy: Policy,
    *,
    category: str,
    description: str,
    point: Location | None = None,
    address: str | None = None,
    grid_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    media_urls: list[str] | None = None,
    anonymous: bool = False,
    insist: bool = False,
    priority: Priority,
    channel: str,
    household_flag: str | None,
    contact: dict[str, Any] | None,
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> dict[str, Any]:
    """Accept a report: the case, its first view and `case.reported` in one transaction."""
    cat, values = check_category(policy, category, attributes or {})
    place = locate(j, point=point, address=address, grid_id=grid_id)
    grid = place.grid
    details: dict[str, Any] = {"attributes": values, "media_urls": media_urls or []}
    if place.address:
        details["address"] = place.address
    try:
        async with store.transaction() as tx:
            if idempotency_key and (earlier := await _earlier_answer(tx, idempotency_key, request_hash)):
                return earlier
            token = new_tracking_token()
            now = store.clock.now()
            same = None if insist else await _open_case_nearby(tx, policy, cat.code, place.point, now)
            case_id = same.case_id if same else str(uuid.uuid4())
            answer = {
                "case_id": case_id,
                "tracking_token": token,
                "status": same.status if same else CaseStatus.RECEIVED.value,
                "linked_to_existing": same is not None,
            }
            await tx.session.execute(
                reports.insert().values(
                    report_id=str(uuid.uuid4()),
                    case_id=case_id,
                    linked=same is not None,
                    category=cat.code,
                    description=description,
                    lat=place.point.lat,
                    lon=place.point.lon,
                    details=details,
                    anonymous=anonymous,
                    grid_id=grid.id,
                    priority=priority.value,
                    channel=channel,
                    household_flag=household_flag,
                    contact=contact,
                    tracking_hash=token_hash(token),
                    created_at=now,
                )
            )
            if idempotency_key:
                await tx.session.execute(
                    idempotency_keys.insert().values(
                        key=idempotency_key,
                        request_hash=request_hash,
                        case_id=case_id,
                        response=answer,
                        created_at=now,
                    )
                )
            if same is not None:
                # Another resident reported the same problem: they follow the open case.
                reporters = same.reporters + 1
                await tx.session.execute(
                    update(case_views).where(case_views.c.case_id == case_id).values(reporters=reporters)
                )
                await tx.session.execute(
                    timeline.insert().values(
                        case_id=case_id, at=now, type="reported_again", details={"reporters": reporters}
                    )
                )
                tx.emit(CaseDuplicateReported(case_id=case_id, reporters=reporters))
                return answer
            await tx.session.execute(
                case_views.insert().values(
                    case_id=case_id,
                    status=CaseStatus.RECEIVED.value,
                    category=cat.code,
                    lat=place.point.lat,
                    lon=place.point.lon,
                    reporters=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            await tx.session.execute(
                timeline.insert().values(case_id=case_id, at=now, type="received", details={"grid_id": grid.id})
            )
            tx.emit(
                CaseReported(
                    case_id=case_id,
                    category=cat.code,
                    description=description,
                    location=place.point,
                    grid_id=grid.id,
                    details=details,
                    priority=priority,
                    channel=channel,
                    household_flag=household_flag,
                )
            )
            return answer
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent request with the same key committed first: answer as it did.
        async with store.transaction() as tx:
            earlier = await _earlier_answer(tx, idempotency_key, request_hash)
        if earlier is None:
            raise
        return earlier


async def _open_case_nearby(tx: Tx, policy: Policy, category: str, point: Location, now: Any) -> Any:
    """The nearest open case of this category within the policy's distance and time window."""
    rule = policy.duplicates
    dlat, dlon = degrees_around(point, rule.distance_m)
    since = now - rule.window.duration
    rows = (
        await tx.session.execute(
            select(case_views)
            .where(
                case_views.c.category == category,
                case_views.c.status.in_(OPEN_STATUSES),
                case_views.c.created_at >= since,
                case_views.c.lat.between(point.lat - dlat, point.lat + dlat),
                case_views.c.lon.between(point.lon - dlon, point.lon + dlon),
            )
            .order_by(case_views.c.case_id)  # locks taken in case order, as the consumer takes them
            .with_for_update()
        )
    ).all()
    near = [(distance_m(point, Location(lat=r.lat, lon=r.lon)), r) for r in rows]
    near = [(d, r) for d, r in near if d <= rule.distance_m]
    return min(near, key=lambda dr: dr[0])[1] if near else None


IDEMPOTENCY_TTL = timedelta(hours=24)


async def _earlier_answer(tx: Tx, key: str, request_hash: str) -> dict[str, Any] | None:
    """The answer given to an earlier request with this key, for 24 hours; after that the key
    is free again (its row is replaced)."""
    row = (await tx.session.execute(select(idempotency_keys).where(idempotency_keys.c.key == key))).first()
    if row is not None and row.created_at <= tx.store.clock.now() - IDEMPOTENCY_TTL:
        await tx.session.execute(delete(idempotency_keys).where(idempotency_keys.c.key == key))
        return None
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body; use a new key for a new report"
        )
    return dict(row.response)


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
        await tx.session.execute(
            update(case_views).where(case_views.c.case_id == case_id).values(satisfaction_answered_at=now)
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


async def lock_views(session: AsyncSession, case_ids: list[str]) -> None:
    """The consumer's lock: a batch's case views, in case order."""
    await session.execute(
        select(case_views.c.case_id)
        .where(case_views.c.case_id.in_(case_ids))
        .order_by(case_views.c.case_id)
        .with_for_update()
    )


async def on_lifecycle(tx: Tx, envelope: Envelope, event: Event) -> None:
    change = view_change(event)
    if change is None:
        return
    values = dict(change.columns)
    if change.status is not None:
        values["status"] = change.status.value
    await tx.session.execute(
        update(case_views).where(case_views.c.case_id == event.case_id).values(updated_at=envelope.time, **values)
    )
    if change.timeline_type:
        await tx.session.execute(
            timeline.insert().values(
                case_id=event.case_id, at=envelope.time, type=change.timeline_type, details=change.details
            )
        )


HANDLERS: dict[type[Event], Handler] = {
    e: on_lifecycle
    for e in (
        CaseAssigned,
        CaseClaimed,
        CaseResolved,
        CaseClosed,
        CaseReopened,
        CaseEscalated,
        CaseWhistled,
        CaseCancelRefused,
    )
}
