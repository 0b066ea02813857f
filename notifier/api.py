"""The notifier's routes. Residents: stop the messages of a case, by the link in each message
(a page, and the one-click POST of RFC 8058 that mail clients send) or with the tracking token
(apps). Ops: what a case's people were told, every delivery by state and channel with a
cursor, and re-driving dead ones. The SMS provider's receipts are notifier/receipts.py's."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from notifier.repository import notifications_of
from notifier.schemas import DeliveryPage, Notification, NotificationDelivery
from notifier.usecases import NOT_FOLLOWING, unsubscribe_by_link, unsubscribe_by_token
from services.delivery.ops import DeliveryOps, Filters
from services.delivery.tables import FINISHED, State
from services.district.clock import Clock
from services.district.text import ROW_ID_MAX, Identifier
from services.storage.db import Database
from services.web import pages
from services.web.auth import OpsDep
from services.web.openapi import problem
from services.web.parts import bind, part

DatabaseDep = Annotated[Database, Depends(part("notifier_db"))]
ClockDep = Annotated[Clock, Depends(part("notifier_clock"))]
OpsToolDep = Annotated[DeliveryOps, Depends(part("notifier_ops"))]
LinkKeyDep = Annotated[bytes, Depends(part("notifier_link_key"))]

api = APIRouter(prefix="/v1")
PAGE_HEADERS = pages.headers(pages.csp(script=False))
TEMPLATES = pages.templates("notifier")
WORDS: pages.Labels = {
    "zh-CN": {
        "title": "退订事项消息",
        "ask": "确认后，您将不再收到此事项的短信和邮件。事项仍会照常办理。",
        "confirm": "确认退订",
        "done": "已退订：您将不再收到此事项的消息。",
        "switch_lang": "English",
    },
    "en": {
        "title": "Stop messages about this case",
        "ask": "Once you confirm, you will get no more texts or emails about this case. It is still handled as usual.",
        "confirm": "Stop the messages",
        "done": "Done: you will get no more messages about this case.",
        "switch_lang": "中文",
    },
}


def router(db: Database, clock: Clock, ops: DeliveryOps, link_key: bytes) -> APIRouter:
    """The notifier's routes, on this deployment's database."""
    return bind(api, notifier_db=db, notifier_clock=clock, notifier_ops=ops, notifier_link_key=link_key)


@api.get("/notifications", response_model=list[Notification], tags=["ops"])
async def list_notifications(
    _: OpsDep,
    db: DatabaseDep,
    case_id: Annotated[Identifier, Query(description="the case whose notifications to list")],
) -> list[dict[str, Any]]:
    """Every notification recorded for a case: to whom, what it said, and each delivery's state."""
    async with db.sessions() as s:
        return await notifications_of(s, case_id)


@api.get("/ops/notifications", response_model=DeliveryPage, tags=["ops"])
async def list_deliveries(
    _: OpsDep,
    ops: OpsToolDep,
    state: State | None = None,
    channel: Annotated[str | None, Query(max_length=16, pattern="^[a-z]+$")] = None,
    case_id: Identifier | None = None,
    cursor: Annotated[
        str | None, Query(max_length=18, pattern="^[0-9]+$", description="next_cursor of the page before")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Every notification delivery, oldest first, filtered; page on with `next_cursor`."""
    which = Filters(states=None if state is None else {state}, channel=channel, case_id=case_id)
    page = await ops.listing(which, after=int(cursor) if cursor else None, limit=limit)
    return {
        "deliveries": [_waiting(r) for r in page.rows],
        "next_cursor": None if page.next is None else str(page.next),
    }


def _waiting(row: Any) -> dict[str, Any]:
    """A delivery as ops read it: its next attempt only while one is to come."""
    found = dict(row._mapping)
    if found["state"] in FINISHED or found["state"] == State.DEAD:
        found["next_attempt_at"] = None
    return found


@api.post(
    "/ops/notifications/{delivery_id}/redrive",
    response_model=NotificationDelivery,
    tags=["ops"],
    responses={
        404: problem("no such delivery"),
        409: problem("only a dead or permanently failed delivery can be re-driven"),
    },
)
async def redrive(_: OpsDep, ops: OpsToolDep, delivery_id: Annotated[int, Path(ge=1, le=ROW_ID_MAX)]) -> Any:
    """Send a dead (or permanently failed) delivery again, from its first attempt."""
    return _waiting(await ops.redrive(delivery_id))


class StopIn(BaseModel):
    case_id: Identifier = Field(description="the case whose messages to stop")


@api.post("/notifications/stop", tags=["residents"], responses={404: problem(NOT_FOLLOWING)})
async def stop_by_token(
    body: StopIn,
    db: DatabaseDep,
    clock: ClockDep,
    x_tracking_token: Annotated[str, Header(min_length=1, max_length=200)],
) -> dict[str, str]:
    """Stop the emails and texts about a case; the case's tracking token says who you are."""
    await unsubscribe_by_token(db, body.case_id, x_tracking_token, clock.now())
    return {"case_id": body.case_id, "messages": "stopped"}


Follower = Annotated[str, Query(min_length=1, max_length=64, pattern="^[0-9a-f-]+$", description="from the link")]
Signature = Annotated[str, Query(min_length=1, max_length=64, pattern="^[0-9a-f]+$", description="from the link")]


@api.get("/notifications/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page(request: Request, r: Follower, s: Signature, lang: str | None = None) -> HTMLResponse:
    """The link in a message opens a page that asks before it stops anything (a mail scanner
    that follows links must not unsubscribe anyone)."""
    return _page(request, r, s, pages.language(lang), done=False)


@api.post("/notifications/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe(
    request: Request,
    db: DatabaseDep,
    clock: ClockDep,
    key: LinkKeyDep,
    r: Follower,
    s: Signature,
    lang: str | None = None,
) -> HTMLResponse:
    """The page's button, and RFC 8058's one-click POST from a mail client."""
    await unsubscribe_by_link(db, key, r, s, clock.now())
    return _page(request, r, s, pages.language(lang), done=True)


def _page(request: Request, r: str, s: str, lang: pages.Lang, *, done: bool) -> HTMLResponse:
    here = request.url.path
    action = f"{here}?{urlencode({'r': r, 's': s} | ({'lang': 'en'} if lang == 'en' else {}))}"
    other = pages.other(lang)
    other_link = f"{here}?{urlencode({'r': r, 's': s} | ({'lang': 'en'} if other == 'en' else {}))}"
    html = TEMPLATES.get_template("unsubscribe.html").render(
        lang=lang, t=WORDS[lang], done=done, action=action, other_link=other_link
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)
