"""The notifier's email, on SQLite and PostgreSQL, through a real SMTP server in the test's
process, with the clock in the test's hands: quiet hours across midnight in the policy's
Shanghai hold a resident's message until 07:00 (an emergency's goes at once); the link in
each email stops the case's messages, held ones included (or the tracking token does); a
refused recipient fails for good with the server's reason, one that is never taken is dead
after the schedule, listed for ops a page at a time and re-driven once the server takes it."""

from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from notifier.repository import Notices
from notifier.usecases import unsubscribe_by_token
from services.delivery.tables import State
from services.district.events import Priority
from services.runtime.settings import Settings
from tests.support.clock import LOCAL, frozen_clock, local_midnight
from tests.support.notices import Notifier, assigned, case_id, followed, notifier, reported, resolved
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.integration

FROM = "兰溪区12345 <noreply@lanxi.gov.cn>"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")  # type: ignore[no-any-return]


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    async with SmtpServer() as server:
        yield server


def email(smtp: SmtpServer, **more: object) -> dict[str, object]:
    return {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_tls": "none", "smtp_from": FROM, **more}


async def test_quiet_hours_hold_a_residents_email_until_seven_and_an_emergency_goes_at_once(settings, smtp):
    half_past_eleven = local_midnight(1) - timedelta(minutes=30)
    async with notifier(settings, frozen_clock(half_past_eleven), **email(smtp)) as n:
        quiet, emergency = case_id(), case_id()
        await n.feed(reported(quiet), followed(quiet, email="night@example.cn"))
        await n.feed(reported(emergency, Priority.EMERGENCY), followed(emergency, email="fire@example.cn"))
        assert await n.deliver("email") == 1
        assert [m["recipient"] for m in smtp.messages] == ["fire@example.cn"]
        [held] = await n.deliveries(quiet)
        assert held.state == State.CREATED and "until 07:00" in held.reason, held.reason
        seven = local_midnight(1) + timedelta(hours=7)
        assert held.next_attempt_at.astimezone(LOCAL) == seven

        n.clock.advance(seven - timedelta(minutes=1) - n.clock.now())
        assert await n.deliver("email") == 0
        n.clock.advance(timedelta(minutes=1))
        assert await n.deliver("email") == 1
        [sent] = await n.deliveries(quiet)
    assert sent.state == State.DELIVERED and sent.delivered_at.astimezone(LOCAL) == seven
    assert [m["recipient"] for m in smtp.messages] == ["fire@example.cn", "night@example.cn"]


async def unsubscribed(n: Notifier, case: str) -> list[tuple[str, str | None]]:
    return [(r.kind, r.reason) for r in await n.deliveries(case) if r.state == State.SUPPRESSED]


async def test_the_link_in_an_email_stops_the_cases_messages_held_ones_too(settings, smtp):
    async with notifier(settings, **email(smtp)) as n, n.client() as c:
        case = case_id()
        await n.feed(reported(case), followed(case, email="wang@example.cn"))
        assert await n.deliver("email") == 1
        [first] = smtp.to("wang@example.cn")
        assert first["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
        link = urlsplit(first["list_unsubscribe"].strip("<>"))  # type: ignore[union-attr]
        here = f"{link.path}?{link.query}"

        n.clock.advance(local_midnight(1) - timedelta(hours=1) - n.clock.now())  # 23:00: held till morning
        await n.feed(assigned(case, n.clock.now(), ticket="T1"))
        [_, held] = await n.deliveries(case)
        assert held.state == State.CREATED and "quiet hours" in held.reason

        page = await c.get(here)
        assert page.status_code == 200 and "<form" in page.text and await unsubscribed(n, case) == []
        assert (await c.post(here.replace("s=", "s=0"), content=b"List-Unsubscribe=One-Click")).status_code == 404
        assert await unsubscribed(n, case) == []
        one_click = await c.post(
            here, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert one_click.status_code == 200
        assert await unsubscribed(n, case) == [("case.assigned", "unsubscribed")]

        await n.feed(resolved(case, "T1"))
        n.clock.advance(timedelta(hours=9))
        assert await n.deliver("email") == 0
        assert await unsubscribed(n, case) == [
            (k, "unsubscribed") for k in ("case.assigned", "case.resolved", "case.visit")
        ]
    assert len(smtp.to("wang@example.cn")) == 1


async def test_the_tracking_token_stops_the_cases_messages(settings, smtp):
    async with notifier(settings, **email(smtp)) as n, n.client() as c:
        case = case_id()
        await n.feed(reported(case), followed(case, email="li@example.cn", token="the-token"))
        stop = "/v1/notifications/stop"
        wrong = await c.post(stop, json={"case_id": case}, headers={"X-Tracking-Token": "not-it"})
        assert wrong.status_code == 404
        answer = await c.post(stop, json={"case_id": case}, headers={"X-Tracking-Token": "the-token"})
        assert answer.status_code == 200, answer.text
        await n.feed(assigned(case, n.clock.now()))
        assert await n.deliver("email") == 0
        assert await unsubscribed(n, case) == [(k, "unsubscribed") for k in ("case.received", "case.assigned")]
    assert smtp.to("li@example.cn") == []


async def test_a_refused_recipient_fails_for_good_and_one_never_taken_is_dead_then_redriven(settings, smtp):
    smtp.mailbox.refuse.update({"nobody@example.cn": 550, "later@example.cn": 421, "later2@example.cn": 421})
    async with notifier(settings, **email(smtp, delivery_retry_schedule="0s,10s,10s")) as n, n.client() as c:
        case = case_id()
        await n.feed(
            reported(case),
            followed(case, email="nobody@example.cn"),
            followed(case, email="later@example.cn"),
            followed(case, email="later2@example.cn"),
        )
        for _ in range(3):
            await n.deliver("email")
            n.clock.advance(timedelta(seconds=15))
        rows = {r.destination: r for r in await n.deliveries(case)}
        refused = rows["nobody@example.cn"]
        assert (refused.state, refused.attempts, refused.last_status) == (State.PERMANENT_FAILURE, 1, 550)
        assert "550" in refused.reason and "no such mailbox" in refused.reason
        for address in ("later@example.cn", "later2@example.cn"):
            assert (rows[address].state, rows[address].attempts, rows[address].last_status) == (State.DEAD, 3, 421)

        ops = n.ops()
        query = {"state": "dead", "case_id": case, "limit": 1}
        first = (await c.get("/v1/ops/notifications", params=query, headers=ops)).json()
        [one] = first["deliveries"]
        assert one["destination"] == "later@example.cn" and one["next_attempt_at"] is None
        second = (
            await c.get("/v1/ops/notifications", params=query | {"cursor": first["next_cursor"]}, headers=ops)
        ).json()
        assert [d["destination"] for d in second["deliveries"]] == ["later2@example.cn"]
        assert second["next_cursor"] is None

        del smtp.mailbox.refuse["later@example.cn"]
        again = await c.post(f"/v1/ops/notifications/{one['id']}/redrive", headers=ops)
        assert again.status_code == 200 and again.json()["state"] == "created"
        assert await n.deliver("email") == 1
        assert await n.deliver("email") == 0
        [redriven] = await n.deliveries(case, destination="later@example.cn")
        assert (redriven.state, redriven.attempts) == (State.DELIVERED, 1)
    assert len(smtp.to("later@example.cn")) == 1
    assert smtp.to("nobody@example.cn") == smtp.to("later2@example.cn") == []


async def test_an_unsubscribe_committed_while_a_batch_is_handled_still_stops_that_batchs_email(pg_settings, smtp):
    """PostgreSQL: the batch read the follower before the unsubscribe committed (SQLite's one
    writer at a time leaves no such moment)."""
    async with notifier(pg_settings, **email(smtp)) as n:
        case = case_id()
        await n.feed(reported(case), followed(case, email="wu@example.cn", token="wu-token"))
        now = n.clock.now()
        async with n.ctx.db.transaction() as s:
            batch = Notices(s, n.digests.telling, now)
            await batch.record(f"{case}-assigned", assigned(case, now), now)  # reads the follower: subscribed
            await unsubscribe_by_token(n.ctx.db, case, "wu-token", now)  # commits meanwhile
            await batch.write()
        [told] = await n.deliveries(case, kind="case.assigned", channel="email")
        assert (told.state, told.reason) == ("suppressed", "unsubscribed")
        assert await n.deliver("email") == 0  # the received email was still waiting: stopped too
    assert smtp.to("wu@example.cn") == []
