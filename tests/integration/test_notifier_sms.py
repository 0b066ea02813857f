"""The notifier's SMS, from lifecycle events to a fake provider's gateway and back by its signed
receipts, on SQLite and PostgreSQL: the gateway answers one send in five after the sender gave
up, and each message is still sent once and settled by its receipt, never by a resend; a
receipt that never comes leaves its delivery dead as unknown; a template code the provider
does not know fails the delivery for good, naming it."""

from collections import Counter
from datetime import timedelta

import pytest

from services.delivery.signing import new_secret
from services.delivery.tables import State
from services.delivery.worker import NO_RECEIPT
from services.runtime.settings import Settings
from tests.support.apps import serve
from tests.support.notices import (
    Notifier,
    assigned,
    case_id,
    followed,
    gateway_templates,
    notifier,
    reported,
    sms_codes,
)
from tests.support.smsgateway import ACCESS_KEY, ACCESS_SECRET, SIGN_NAME, SmsGateway
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

RECEIPT_WAIT = 600.0  # seconds of the frozen clock


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")  # type: ignore[no-any-return]


def sms_settings(gateway: SmsGateway, secret: str) -> dict[str, object]:
    return {
        "sms_url": gateway.url,
        "sms_access_key": ACCESS_KEY,
        "sms_access_secret": ACCESS_SECRET,
        "sms_sign_name": SIGN_NAME,
        "sms_receipt_secret": secret,
        "sms_templates": sms_codes(),
        "sms_timeout": 0.4,
        "delivery_receipt_wait": RECEIPT_WAIT,
    }


def unknown_count(n: Notifier) -> float:
    m = n.ctx.metrics
    return m.child(m.deliveries, ("notifier", "sms", "unknown"))._value.get()  # type: ignore[no-any-return]


async def test_every_sms_is_sent_once_and_settled_by_its_receipt_the_ambiguous_ones_too(settings, tmp_path):
    secret = new_secret()
    gateway = SmsGateway(templates=gateway_templates(), timeout_every=5, stall=1.0, receipt_secret=secret)
    gateway.start()
    try:
        async with notifier(settings, **sms_settings(gateway, secret)) as n:
            gateway.clock = n.clock  # receipts are signed at the time the notifier checks them against
            async with serve(n.app) as base:
                gateway.receipt_url = f"{base}/v1/notifications/sms/receipts"
                cases = [case_id() for _ in range(10)]
                phones = {c: f"1390000{i:04d}" for i, c in enumerate(cases)}
                now = n.clock.now()
                await n.feed(*(e for c in cases for e in (reported(c), followed(c, phone=phones[c]))))
                await n.feed(*(assigned(c, now) for c in cases))

                async def settled() -> bool:
                    await n.deliver("sms")
                    rows = [r for c in cases for r in await n.deliveries(c)]
                    return len(rows) == 20 and all(r.state == State.DELIVERED for r in rows)

                await eventually(settled, timeout=30)
                rows = [r for c in cases for r in await n.deliveries(c)]

                # the first case.received of each phone, then case.assigned: each sent once, all settled by receipt
                assert gateway.per_phone() == Counter({p: 2 for p in phones.values()})
                assert gateway.by_out_id() == Counter({r.msg_id: 1 for r in rows})
                assert {s["template_code"] for s in gateway.sent} == {"SMS_CASE_RECEIVED", "SMS_CASE_ASSIGNED"}
                ambiguous = set(gateway.stalled)
                assert len(ambiguous) == 4 and ambiguous <= {r.msg_id for r in rows}
                assert {r["out_id"] for r in gateway.receipts} == {r.msg_id for r in rows}

                # a receipt that never comes: the delivery waits its time, then is dead as unknown, not sent again
                gateway.receipt_url = None
                gateway.timeout_every = 1
                lost = case_id()
                await n.feed(reported(lost), followed(lost, phone="13911112222"))
                assert await n.deliver("sms") == 1
                [row] = await n.deliveries(lost)
                assert row.state == State.SENDING and "waiting for its receipt" in row.reason
                n.clock.advance(timedelta(seconds=RECEIPT_WAIT + 1))
                before = unknown_count(n)
                assert await n.deliver("sms", rounds=3) == 1
                [row] = await n.deliveries(lost)
                assert (row.state, row.reason, row.attempts) == (State.DEAD, NO_RECEIPT, 1)
                assert unknown_count(n) == before + 1
                assert gateway.by_out_id()[row.msg_id] == 1
                assert gateway.per_phone()["13911112222"] == 1
    finally:
        gateway.stop()


async def test_a_template_code_the_provider_does_not_know_fails_for_good_naming_it(settings):
    secret = new_secret()
    templates = gateway_templates()
    del templates["SMS_CASE_RECEIVED"]
    with SmsGateway(templates=templates, receipt_secret=secret) as gateway:
        async with notifier(settings, **sms_settings(gateway, secret)) as n:
            case = case_id()
            await n.feed(reported(case), followed(case, phone="13922223333"))
            assert await n.deliver("sms") == 1
            [row] = await n.deliveries(case)
    assert row.state == State.PERMANENT_FAILURE
    assert "isv.SMS_TEMPLATE_ILLEGAL" in row.reason and "SMS_CASE_RECEIVED" in row.reason, row.reason
    assert gateway.sent == []
