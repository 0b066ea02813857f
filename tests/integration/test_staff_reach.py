"""A staff member's own reach, on SQLite and PostgreSQL: the email and phone on their account,
the channels they chose and their language. Departments tells the notifier who holds each
ticket (`case.holder_changed`) when it is claimed, unclaimed or handed over, and when the holder changes how
they are reached; the notifier tells the holder what it tells their unit of that case (a
breach, a reopening), on the channels they chose only, in their language, and not of a ticket
new to the unit, which nobody holds yet."""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from departments.bootstrap import bootstrap as departments_bootstrap
from departments.tables import outbox
from departments.usecases.staff import Accounts
from services.district.events import (
    CaseHolderChanged,
    CaseReopened,
    CaseSlaBreached,
    Holder,
    Reach,
    SlaClock,
    Tier,
)
from services.runtime.app import create_app
from services.runtime.context import Context, build_context
from services.runtime.settings import Settings
from tests.integration.test_set_based_consumers import as_one_batch, assigned, records
from tests.support.clock import frozen_clock
from tests.support.notices import assigned as assigned_to
from tests.support.notices import case_id, district_with_notify, notifier, reported
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")  # type: ignore[no-any-return]


@pytest.fixture
async def ctx(base) -> AsyncIterator[Context]:
    context = build_context(base, clock=frozen_clock())
    yield context
    await context.db.dispose()


async def holders_told(ctx: Context, case: str) -> list[dict[str, object]]:
    async with ctx.db.sessions() as s:
        rows = (await s.execute(select(outbox.c.payload).where(outbox.c.key == case).order_by(outbox.c.id))).all()
    events = [json.loads(r.payload) for r in rows]
    return [e["data"] for e in events if e["type"] == CaseHolderChanged.type]


async def test_a_claim_an_unclaim_and_a_new_reach_tell_the_notifier_who_holds_the_ticket(ctx):
    parts = departments_bootstrap(ctx)
    case = f"c-{uuid.uuid4().hex[:8]}"
    ticket = f"{case}-a1"
    await as_one_batch(parts.consumers[0], records(ctx, [assigned(case, ticket)]))
    accounts = Accounts(ctx.db, ctx.clock, ctx.authenticator, ctx.jurisdiction, parts.store)
    chosen = Reach(email="li@example.cn", phone="+86 138 0000 0009", language="en", channels=("email",))
    account = await accounts.add("U-G11", f"Li {uuid.uuid4().hex[:6]}", reach=chosen)
    me = {"Authorization": f"Bearer {accounts.token(account)}"}
    app = create_app(ctx, [parts], title="departments")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as c:
        assert (await c.post(f"/v1/tickets/{ticket}/claim", headers=me)).status_code == 200
        [claimed] = await holders_told(ctx, case)
        assert claimed["unit_id"] == "U-G11" and claimed["ticket_id"] == ticket
        assert claimed["holder"]["staff_id"] == account.staff_id
        assert claimed["holder"]["reach"] == {
            "email": "li@example.cn",
            "phone": "+86 138 0000 0009",
            "language": "en",
            "channels": ["email"],
        }

        refused = await c.put("/v1/me/reach", headers=me, json={"phone": "+8613800000009", "channels": ["email"]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["msg"] == "the email channel needs an email: give one, or leave email out"
        bad = await c.put("/v1/me/reach", headers=me, json={"email": "not an address", "channels": ["email"]})
        assert bad.status_code == 422
        assert len(await holders_told(ctx, case)) == 1  # a refused change tells nobody anything

        changed = await c.put("/v1/me/reach", headers=me, json={"phone": "+8613800000009", "channels": ["sms"]})
        assert changed.status_code == 200, changed.text
        assert changed.json()["channels"] == ["sms"] and changed.json()["email"] is None
        assert (await holders_told(ctx, case))[-1]["holder"]["reach"]["channels"] == ["sms"]

        ops = {"Authorization": f"Bearer {ctx.authenticator.issue('ops', ttl=timedelta(hours=1))}"}
        listed = {a["staff_id"]: a for a in (await c.get("/v1/staff", headers=ops)).json()}
        assert listed[account.staff_id]["phone"] == "+8613800000009"
        mine = (await c.get("/v1/me", headers=me)).json()["reach"]  # what the console's form starts from
        assert mine == {"email": None, "phone": "+8613800000009", "language": "zh-CN", "channels": ["sms"]}
        assert (await c.get("/v1/me", headers=ops)).json()["reach"] is None

        assert (await c.post(f"/v1/tickets/{ticket}/unclaim", headers=me)).status_code == 200
        assert (await holders_told(ctx, case))[-1]["holder"] is None

        assert (await c.post(f"/v1/tickets/{ticket}/claim", headers=me)).status_code == 200
        assert (await holders_told(ctx, case))[-1]["holder"]["staff_id"] == account.staff_id
        handed = {"reason_code": "not_our_jurisdiction", "reason": "the next grid's"}
        assert (await c.post(f"/v1/tickets/{ticket}/return", headers=me, json=handed)).status_code == 200
        assert (await holders_told(ctx, case))[-1]["holder"] is None  # a hand-over: nobody holds it now

        other = f"c-{uuid.uuid4().hex[:8]}"
        await as_one_batch(parts.consumers[0], records(ctx, [assigned(other, f"{other}-a1")]))
        assert (await c.post(f"/v1/tickets/{other}-a1/claim", headers=me)).status_code == 200
        assert (await c.post(f"/v1/staff/{account.staff_id}/revoke", headers=ops)).status_code == 200
        assert (await holders_told(ctx, other))[-1]["holder"] is None  # nothing more to a revoked account


def breached(case: str, ticket: str, now, repeat: int = 0) -> CaseSlaBreached:
    return CaseSlaBreached(
        case_id=case,
        assignment_id=ticket,
        unit_id="U-G11",
        tier=Tier.GRID,
        clock=SlaClock.RESPONSE,
        due_at=now - timedelta(minutes=10),
        late_seconds=600,
        repeat=repeat,
    )


def holding(case: str, ticket: str, reach: Reach | None) -> CaseHolderChanged:
    holder = None if reach is None else Holder(staff_id="st-li", name="Li Handler", reach=reach)
    return CaseHolderChanged(case_id=case, ticket_id=ticket, unit_id="U-G11", holder=holder)


async def test_the_holder_hears_what_their_unit_hears_of_the_case_on_the_channels_they_chose(base, tmp_path):
    district = district_with_notify(tmp_path / "district.yaml", {"U-G11": {"email": "g11-duty@example.cn"}})
    async with SmtpServer() as smtp:
        email = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_tls": "none", "smtp_from": "gridcall <n@x.cn>"}
        async with notifier(base, jurisdiction_file=district, **email) as n:
            case, ticket = case_id(), "T-li"
            reach = Reach(email="li@example.cn", phone="+8613800000009", language="en", channels=("email",))
            now = n.clock.now()
            await n.feed(reported(case), holding(case, ticket, reach), assigned_to(case, now, ticket=ticket))
            await n.feed(breached(case, ticket, now))
            await n.deliver("email", rounds=3)
            to_li = smtp.to("li@example.cn")
            assert len(to_li) == 1, "a ticket new to the unit is not the holder's; the breach is"
            assert "overdue" in to_li[0]["subject"].lower() or "breach" in to_li[0]["subject"].lower(), to_li[0]
            assert len(smtp.to("g11-duty@example.cn")) == 2  # the new ticket and the breach, as before
            await n.feed(breached(case, "T-other", now))  # the unit's other ticket of the case: not Li's
            await n.deliver("email", rounds=3)
            assert len(smtp.to("li@example.cn")) == 1 and len(smtp.to("g11-duty@example.cn")) == 3

            await n.feed(holding(case, ticket, None), CaseReopened(case_id=case, unit_id="U-G11", comment="again"))
            await n.deliver("email", rounds=3)
            assert len(smtp.to("li@example.cn")) == 1, "nobody holds it now: only the unit hears"
            assert len(smtp.to("g11-duty@example.cn")) == 4
            told = [r.recipient for r in await n.notifications(case)]
            assert told.count("staff:st-li") == 1
            assert await n.deliveries(case, destination="+8613800000009") == []  # SMS not chosen: none
