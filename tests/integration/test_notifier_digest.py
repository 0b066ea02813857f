"""A unit's digest (`notify: {email, digest_minutes: 30}` in the district file), on SQLite and
PostgreSQL: its new tickets wait, and 30 minutes after the first one email lists them all; an
emergency's ticket goes at once; the digest is made once, however often make_due runs and on
however many notifier replicas."""

import asyncio
import uuid
from datetime import timedelta

import pytest

from services.delivery.tables import State
from services.district.events import Priority
from services.runtime.settings import Settings
from tests.support.notices import assigned, case_id, district_with_notify, notifier
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.integration

DUTY = "duty-g11@example.cn"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")  # type: ignore[no-any-return]


def ticket() -> str:
    return f"T{uuid.uuid4().hex[:7]}"  # eight characters: the reference a digest lists


async def test_a_units_new_tickets_come_as_one_digest_after_30_minutes_and_an_emergency_at_once(settings, tmp_path):
    district = district_with_notify(tmp_path / "district.yaml", {"U-G11": {"email": DUTY, "digest_minutes": 30}})
    async with SmtpServer() as smtp:
        options = {
            "jurisdiction_file": district,
            "smtp_host": smtp.host,
            "smtp_port": smtp.port,
            "smtp_tls": "none",
            "smtp_from": "noreply@lanxi.gov.cn",
        }
        async with notifier(settings, **options) as n, notifier(settings, n.clock, **options) as replica:
            tickets = [ticket() for _ in range(3)]
            for t in tickets:
                await n.feed(assigned(case_id(), n.clock.now(), ticket=t))
                n.clock.advance(timedelta(minutes=5))
            fire = ticket()
            await n.feed(assigned(case_id(), n.clock.now(), priority=Priority.EMERGENCY, ticket=fire))
            assert await n.deliver("email") == 1
            [emergency] = smtp.to(DUTY)
            assert fire in emergency["text"]

            n.clock.advance(timedelta(minutes=14))  # 29 minutes after the first ticket
            assert await n.digests.make_due() == 0
            n.clock.advance(timedelta(minutes=1))
            made = await asyncio.gather(n.digests.make_due(), replica.digests.make_due())
            assert sum(made) == 1
            assert await n.digests.make_due() == await replica.digests.make_due() == 0
            assert await n.deliver("email") == 1
            assert await n.deliver("email") == 0
            [digest] = await n.deliveries(None, kind="ticket.digest")
            assert (digest.state, digest.destination) == (State.DELIVERED, DUTY)

            n.clock.advance(timedelta(hours=2))
            assert await n.digests.make_due() == 0
    [_, listed] = smtp.to(DUTY)
    assert "3张新工单" in listed["subject"]
    assert all(t in listed["text"] for t in tickets) and fire not in listed["text"]
