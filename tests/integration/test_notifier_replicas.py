"""The notifier's records are written once, on SQLite and PostgreSQL: a redelivered batch, and
two notifier replicas whose consumers handle the same envelopes at the same time, write each
notification and each delivery once (their keys derive from the event's id; the unique keys
keep the first)."""

import asyncio

import pytest

from notifier.tables import inbox
from services.runtime.settings import Settings
from tests.support.notices import assigned, case_id, followed, notifier, reported, resolved

pytestmark = pytest.mark.integration

EMAIL = {"smtp_host": "127.0.0.1", "smtp_port": 9, "smtp_tls": "none", "smtp_from": "noreply@lanxi.gov.cn"}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")  # type: ignore[no-any-return]


async def test_two_replicas_and_a_redelivery_write_each_notification_and_delivery_once(settings):
    async with notifier(settings, **EMAIL) as one, notifier(settings, one.clock, **EMAIL) as two:
        cases = [case_id() for _ in range(5)]
        now = one.clock.now()
        events = [
            e
            for c in cases
            for e in (
                reported(c),
                followed(c, email=f"{c}@example.cn"),
                assigned(c, now, ticket=f"T-{c}"),
                resolved(c, f"T-{c}"),
            )
        ]
        batch = one.records(events)
        handled = await asyncio.gather(one.consumer.handle_batch(batch), two.consumer.handle_batch(batch))
        assert all(handled)
        for record in batch:  # and each record again, one by one, on either replica
            assert await two.consumer.handle(record)
        assert await one.consumer.handle_batch(batch)
        async with one.ctx.db.transaction() as s:  # past the inbox: the handlers run again, the unique keys hold
            await s.execute(inbox.delete())
        assert all(await asyncio.gather(one.consumer.handle_batch(batch), two.consumer.handle_batch(batch)))

        for c in cases:
            told = await one.notifications(c)
            sent = await one.deliveries(c)
            # received, assigned, the unit's new ticket, resolved, visit; an email for each of the resident's
            assert sorted(n.kind for n in told) == sorted(
                ["case.received", "case.assigned", "ticket.new", "case.resolved", "case.visit"]
            )
            assert len({n.key for n in told}) == 5
            assert sorted(d.kind for d in sent) == sorted(
                ["case.received", "case.assigned", "case.resolved", "case.visit"]
            )
            assert {d.channel for d in sent} == {"email"} and len({d.msg_id for d in sent}) == 4
        assert await one.consumer.store.parking.parked(one.consumer.name) == []
