"""The notifier's channels against the test servers run as processes of their own, as the
end-to-end tests run them: each server's own log says what every recipient got. The SMTP
server counts messages per recipient; the SMS gateway answers one send in five too late and
posts signed receipts to the receipt endpoint, which settle every message, the ambiguous ones
included, with each sent once."""

import asyncio
import json
from collections import Counter

import pytest
from fastapi import FastAPI

from notifier import receipts
from notifier.channels import EmailSender, SmsSender
from services.delivery.sender import Item, Outcome
from services.delivery.signing import key_of, new_secret
from services.district.clock import SystemClock
from services.web.edge import install
from tests.support.apps import serve
from tests.support.smsgateway import ACCESS_KEY, ACCESS_SECRET, SIGN_NAME, gateway_process, sent_log
from tests.support.smtp import read_log, smtp_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

FROM = "兰溪区12345 <noreply@lanxi.gov.cn>"
RECIPIENTS = ["wang@example.cn", "li@example.cn", "zhang@example.cn"]


def delivery(channel: str, n: int, body: dict) -> Item:
    return Item(n, f"msg_{channel}_{n:04d}", channel, "", f"case-{n}", "case.assigned", json.dumps(body), 0)


async def test_email_through_an_smtp_server_process_reaches_each_recipient_once(tmp_path):
    log = tmp_path / "smtp.jsonl"
    with smtp_process(log, None, "--refuse", "nobody@example.cn=550") as port:
        sender = EmailSender(
            "127.0.0.1", port, sender="兰溪区12345 <noreply@lanxi.gov.cn>", clock=SystemClock(), tls="none"
        )
        await sender.check()
        items = [
            delivery("email", n, {"to": RECIPIENTS[n % 3], "subject": f"第{n}号诉求已受理", "text": f"诉求 {n}"})
            for n in range(30)
        ]
        results = await asyncio.gather(*(sender.send(i) for i in items))
        refused = await sender.send(delivery("email", 99, {"to": "nobody@example.cn", "subject": "x", "text": "x"}))
        await sender.close()
        got = read_log(log)
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert (refused.outcome, refused.status) == (Outcome.PERMANENT, 550)
    assert Counter(r["recipient"] for r in got) == {address: 10 for address in RECIPIENTS}
    assert len({r["message_id"] for r in got}) == 30
    assert {r["subject"] for r in got} == {f"第{n}号诉求已受理" for n in range(30)}


class Deliveries:
    def __init__(self) -> None:
        self.got: list[tuple[str, str | None, bool]] = []

    async def receipt(self, msg_id: str, provider_ref: str | None, delivered: bool, error: str | None) -> bool:
        self.got.append((msg_id, provider_ref, delivered))
        return True


async def test_sms_through_a_gateway_process_every_message_settled_by_its_receipt_and_sent_once(tmp_path):
    clock, secret, deliveries = SystemClock(), new_secret(), Deliveries()
    app = FastAPI()
    app.include_router(receipts.router(deliveries, key_of(secret), clock))
    install(app, {})
    log = tmp_path / "sms.jsonl"
    async with serve(app) as base:
        receipt_url = f"{base}/v1/notifications/sms/receipts"
        options = ["--timeout-every", "5", "--stall", "4", "--receipt-url", receipt_url, "--receipt-secret", secret]
        with gateway_process(log, None, *options) as url:
            # The client gives up after 1.5 s, the stalled answers come after 4: only they can be
            # ambiguous, however slow a loaded machine answers the others.
            sender = SmsSender(
                url, access_key=ACCESS_KEY, access_secret=ACCESS_SECRET, sign_name=SIGN_NAME, clock=clock, timeout=1.5
            )
            # A first send, refused before it is sent (no such number), readies the fresh process.
            refused = await sender.send(delivery("sms", 99, {"phone": "12", "template_code": "SMS_CASE_RESOLVED"}))
            assert refused.outcome is Outcome.PERMANENT
            phones = [f"1380013800{n % 4}" for n in range(20)]
            items = [
                delivery("sms", n, {"phone": phone, "template_code": "SMS_CASE_RESOLVED", "params": {"case": f"A{n}"}})
                for n, phone in enumerate(phones)
            ]
            results = await asyncio.gather(*(sender.send(i) for i in items))
            await sender.close()

            async def settled() -> bool:
                if len(deliveries.got) < 20:
                    raise AssertionError(
                        f"{len(deliveries.got)} receipts of 20; the sends: {Counter(r.outcome for r in results)}"
                    )
                return True

            await eventually(settled)
            sent = sent_log(log)
    outcomes = Counter(r.outcome for r in results)
    assert outcomes == {Outcome.ACCEPTED: 16, Outcome.AMBIGUOUS: 4}
    assert Counter(s["out_id"] for s in sent) == {i.msg_id: 1 for i in items}  # nothing sent twice
    assert Counter(s["phone"] for s in sent) == Counter(phones)
    ambiguous = {i.msg_id for i, r in zip(items, results, strict=True) if r.outcome is Outcome.AMBIGUOUS}
    assert ambiguous == {s["out_id"] for s in sent if s["stalled"]}
    assert sorted(g[0] for g in deliveries.got) == sorted(i.msg_id for i in items)
    assert all(delivered for _, _, delivered in deliveries.got)
