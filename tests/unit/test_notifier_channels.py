"""The notifier's channels against real servers in the test's process, without a database:
email against aiosmtpd (tests/support/smtp.py), SMS against the fake provider gateway
(tests/support/smsgateway.py), its signed receipts, the webhook checked by the reference
Standard Webhooks library, and the development log. Each outcome a sender can give is shown."""

import asyncio
import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from standardwebhooks import Webhook

from notifier import receipts
from notifier.channels import EmailSender, LogSender, NotReady, SmsSender, WebhookSender, configured
from notifier.channels.bodies import masked
from services.delivery.sender import Item, Outcome
from services.delivery.signing import SignatureError, key_of, new_secret
from services.district.clock import SystemClock
from services.district.errors import Invalid
from services.runtime.settings import Settings
from services.web.edge import install
from tests.support.apps import serve
from tests.support.clock import frozen_clock
from tests.support.servers import free_port
from tests.support.smsgateway import ACCESS_KEY, ACCESS_SECRET, SIGN_NAME, SmsGateway
from tests.support.smtp import SmtpServer, client_context, self_signed
from tests.support.waiting import eventually

FROM = "兰溪区12345 <noreply@lanxi.gov.cn>"
RESIDENT = "resident@example.cn"
SUBJECT = "您的诉求已办结：路灯不亮"


def item(channel: str, body: dict, n: int = 1, attempts: int = 0) -> Item:
    destination = body.get("to") or body.get("phone") or "ops"
    return Item(n, f"msg_{n:032x}", channel, destination, "case-1", "case.resolved", json.dumps(body), attempts)


def email(n: int = 1, attempts: int = 0, **body: object) -> Item:
    fields = {"to": RESIDENT, "subject": SUBJECT, "text": "已办结。\n谢谢您的来电。", "html": "<p>已办结。</p>"}
    return item("email", {**fields, **body}, n, attempts)


def sms(n: int = 1, **body: object) -> Item:
    fields = {"phone": "13800138000", "template_code": "SMS_CASE_RESOLVED", "params": {"case": "A1"}}
    return item("sms", {**fields, **body}, n)


# --- email ----------------------------------------------------------------------------------------


@pytest.fixture
async def smtp():
    async with SmtpServer(
        refuse={"nobody@example.cn": 550, "busy@example.cn": 421}, refuse_data={"big@example.cn": 552}
    ) as server:
        yield server


@pytest.fixture
def clock():
    return frozen_clock()


def mailer(server: SmtpServer, clock, **options) -> EmailSender:
    return EmailSender(server.host, server.port, sender=FROM, clock=clock, tls="none", timeout=3, **options)


async def test_an_email_carries_both_parts_a_stable_message_id_the_clocks_date_and_one_click_unsubscribe(smtp, clock):
    sender = mailer(smtp, clock)
    sent = email(unsubscribe_url="https://lanxi.example.cn/u/abc?t=1", language="zh-CN")
    result = await sender.send(sent)
    await sender.close()

    assert (result.outcome, result.status) == (Outcome.DELIVERED, 250)
    [got] = smtp.to(RESIDENT)
    assert got["message_id"] == f"<{sent.msg_id}@lanxi.gov.cn>"
    assert parsedate_to_datetime(got["date"]) == clock.now()
    assert got["subject"] == SUBJECT
    assert got["subject_raw"].isascii() and got["subject_raw"].startswith("=?utf-8?")  # encoded words
    assert got["from"] == FROM
    assert got["content_language"] == "zh-CN"
    assert got["text"].replace("\r\n", "\n") == "已办结。\n谢谢您的来电。\n"
    assert got["html"].strip() == "<p>已办结。</p>"
    assert got["list_unsubscribe"] == "<https://lanxi.example.cn/u/abc?t=1>"
    assert got["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"


async def test_staff_mail_without_an_unsubscribe_url_has_no_unsubscribe_headers(smtp, clock):
    sender = mailer(smtp, clock)
    assert (await sender.send(email(html=None, language="en", to="staff@example.cn"))).outcome is Outcome.DELIVERED
    await sender.close()
    [got] = smtp.to("staff@example.cn")
    assert got["list_unsubscribe"] is None and got["list_unsubscribe_post"] is None
    assert got["html"] is None and got["content_language"] == "en"


async def test_a_resend_is_recognisably_the_same_message(smtp, clock):
    """A crash after the server took it, and the worker sends it again: same Message-ID."""
    sender = mailer(smtp, clock)
    await sender.send(email(n=7))
    clock.advance(timedelta(minutes=5))
    await sender.send(email(n=7, attempts=1))
    await sender.close()
    first, again = smtp.to(RESIDENT)
    assert first["message_id"] == again["message_id"]
    assert parsedate_to_datetime(again["date"]) - parsedate_to_datetime(first["date"]) == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("to", "outcome", "code", "words"),
    [
        ("nobody@example.cn", Outcome.PERMANENT, 550, "no such mailbox"),  # 5xx to RCPT
        ("busy@example.cn", Outcome.TEMPORARY, 421, "try again later"),  # 4xx to RCPT
        ("big@example.cn", Outcome.PERMANENT, 552, "message too big"),  # 5xx to DATA
    ],
)
async def test_the_servers_refusals(smtp, clock, to, outcome, code, words):
    sender = mailer(smtp, clock)
    result = await sender.send(email(to=to))
    await sender.close()
    assert (result.outcome, result.status) == (outcome, code)
    assert str(code) in result.error and words in result.error


async def test_a_4xx_to_data_is_temporary_and_the_next_message_goes(clock):
    async with SmtpServer(flaky=2) as server:
        sender = mailer(server, clock)
        first, second, third = [await sender.send(email(n)) for n in (1, 2, 3)]
        await sender.close()
    assert [first.outcome, second.outcome, third.outcome] == [Outcome.DELIVERED, Outcome.TEMPORARY, Outcome.DELIVERED]
    assert second.status == 421


@pytest.mark.parametrize("to", ["not an address", "resident@", "@example.cn", "a@b.cn, c@d.cn", "x\r\nBcc: y@z.cn"])
async def test_a_malformed_address_is_permanent_without_contacting_the_server(clock, to):
    nowhere = EmailSender("127.0.0.1", free_port(), sender=FROM, clock=clock, tls="none", timeout=1)
    result = await nowhere.send(email(to=to))
    assert result.outcome is Outcome.PERMANENT  # a connection attempt would have been TEMPORARY
    assert "not an email address" in result.error


async def test_a_body_that_is_not_an_email_is_permanent_and_names_the_field_not_the_text(clock):
    sender = EmailSender("127.0.0.1", free_port(), sender=FROM, clock=clock, tls="none")
    result = await sender.send(item("email", {"to": RESIDENT, "subject": "两行\n主题", "text": "秘密"}))
    assert result.outcome is Outcome.PERMANENT
    assert "subject" in result.error and "秘密" not in result.error


async def test_no_server_and_a_server_that_never_greets_are_temporary(clock):
    refused = await EmailSender("127.0.0.1", free_port(), sender=FROM, clock=clock, tls="none").send(email())
    assert refused.outcome is Outcome.TEMPORARY and "connection refused" in refused.error

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # says nothing until the client leaves

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        slow = EmailSender("127.0.0.1", port, sender=FROM, clock=clock, tls="none", timeout=0.3)
        result = await slow.send(email())
    assert result.outcome is Outcome.TEMPORARY and "no greeting within 0.3s" in result.error


async def test_messages_share_connections_and_a_connection_the_server_dropped_is_replaced(clock):
    async with SmtpServer() as server:
        port = server.port
        sender = mailer(server, clock, connections=2)
        results = await asyncio.gather(*(sender.send(email(n, to=f"r{n}@example.cn")) for n in range(10)))
        assert {r.outcome for r in results} == {Outcome.DELIVERED}
        assert len(server.messages) == 10
        assert server.mailbox.ehlos <= 2  # one per connection, not one per message
    async with SmtpServer(port) as again:  # a restart: the kept connections are gone
        assert (await sender.send(email(11))).outcome is Outcome.DELIVERED
        assert len(again.messages) == 1
    await sender.close()


# --- the start-up check ---------------------------------------------------------------------------


async def test_the_check_passes_against_a_working_server(smtp, clock):
    await mailer(smtp, clock).check()


async def test_the_check_fails_against_a_port_that_refuses_naming_host_and_port(clock):
    port = free_port()
    with pytest.raises(NotReady, match=f"127.0.0.1:{port}: connection refused"):
        await EmailSender("127.0.0.1", port, sender=FROM, clock=clock, tls="none").check()


async def test_the_check_fails_on_a_host_that_does_not_resolve(clock):
    with pytest.raises(NotReady, match="no-such-host.invalid:25: cannot resolve"):
        await EmailSender("no-such-host.invalid", 25, sender=FROM, clock=clock, tls="none").check()


async def test_the_check_fails_on_the_wrong_tls_mode_saying_which_to_use(smtp, clock, tmp_path):
    with pytest.raises(NotReady, match="TLS handshake failed.*GRIDCALL_SMTP_TLS=starttls"):
        await EmailSender(smtp.host, smtp.port, sender=FROM, clock=clock, tls="tls").check()
    with pytest.raises(NotReady, match="does not offer STARTTLS: set GRIDCALL_SMTP_TLS=tls .* or none"):
        await EmailSender(smtp.host, smtp.port, sender=FROM, clock=clock, tls="starttls").check()
    async with SmtpServer(implicit_tls=self_signed(tmp_path)) as implicit:
        with pytest.raises(NotReady, match="no greeting within 0.5s .*GRIDCALL_SMTP_TLS=tls"):
            await EmailSender(implicit.host, implicit.port, sender=FROM, clock=clock, tls="none", timeout=0.5).check()


async def test_starttls_and_implicit_tls_work_with_a_trusted_certificate_and_refuse_an_untrusted_one(clock, tmp_path):
    cert, key = self_signed(tmp_path)
    async with SmtpServer(starttls=(cert, key), users={"hotline": "s3cret"}) as server:
        options = {"sender": FROM, "clock": clock, "user": "hotline", "password": "s3cret"}
        upgraded = EmailSender(server.host, server.port, tls="starttls", tls_context=client_context(cert), **options)
        await upgraded.check()
        assert (await upgraded.send(email())).outcome is Outcome.DELIVERED
        await upgraded.close()
        with pytest.raises(NotReady, match="TLS certificate is not trusted"):
            await EmailSender(server.host, server.port, tls="starttls", **options).check()
    async with SmtpServer(implicit_tls=(cert, key)) as server:
        direct = EmailSender(
            server.host, server.port, sender=FROM, clock=clock, tls="tls", tls_context=client_context(cert)
        )
        await direct.check()
        assert (await direct.send(email())).outcome is Outcome.DELIVERED
        await direct.close()


async def test_the_check_fails_on_a_refused_login_and_on_a_missing_one(clock):
    async with SmtpServer(users={"hotline": "s3cret"}) as server:
        wrong = EmailSender(
            server.host, server.port, sender=FROM, clock=clock, tls="none", user="hotline", password="x"
        )
        with pytest.raises(NotReady, match="refused the login of 'hotline': 535 .*GRIDCALL_SMTP_PASSWORD"):
            await wrong.check()
        with pytest.raises(NotReady, match="530 .*set GRIDCALL_SMTP_USER and GRIDCALL_SMTP_PASSWORD"):
            await mailer(server, clock).check()
        right = mailer(server, clock, user="hotline", password="s3cret")
        await right.check()
        assert (await right.send(email())).outcome is Outcome.DELIVERED
        await right.close()
        temporary = await wrong.send(email())
        assert temporary.outcome is Outcome.TEMPORARY and "535" in temporary.error


# --- SMS ------------------------------------------------------------------------------------------


@pytest.fixture
async def gateway(clock):
    async with SmsGateway(clock=clock, timeout_every=0, stall=1.5) as g:
        yield g


def texter(url: str, clock, **options) -> SmsSender:
    defaults = {"access_key": ACCESS_KEY, "access_secret": ACCESS_SECRET, "sign_name": SIGN_NAME, "timeout": 0.5}
    return SmsSender(url, clock=clock, **{**defaults, **options})


async def test_an_accepted_sms_carries_the_providers_biz_id_and_our_id_as_out_id(gateway, clock):
    sender = texter(gateway.url, clock)
    sent = sms(params={"case": "A1"})
    result = await sender.send(sent)
    await sender.close()
    [got] = gateway.sent
    assert result.outcome is Outcome.ACCEPTED and result.provider_ref == got["biz_id"]
    assert got == {**got, "phone": "13800138000", "template_code": "SMS_CASE_RESOLVED", "out_id": sent.msg_id}
    assert got["params"] == {"case": "A1"} and got["sign_name"] == SIGN_NAME


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"template_code": "SMS_UNKNOWN"}, "isv.SMS_TEMPLATE_ILLEGAL"),
        ({"phone": "10000000000"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"params": {}}, "isv.TEMPLATE_MISSING_PARAMETERS"),
    ],
)
async def test_what_can_never_be_sent_is_permanent_naming_the_providers_code(gateway, clock, body, code):
    sender = texter(gateway.url, clock)
    result = await sender.send(sms(**body))
    await sender.close()
    assert result.outcome is Outcome.PERMANENT and code in result.error
    assert gateway.sent == []


async def test_an_unapproved_sign_name_is_permanent(gateway, clock):
    sender = texter(gateway.url, clock, sign_name="别的签名")
    result = await sender.send(sms())
    await sender.close()
    assert result.outcome is Outcome.PERMANENT and "isv.SMS_SIGNATURE_ILLEGAL" in result.error


async def test_throttling_an_outage_and_a_wrong_access_secret_are_temporary(gateway, clock):
    sender = texter(gateway.url, clock)
    gateway.throttled = 1
    throttled = await sender.send(sms(1))
    gateway.unavailable = 1
    unavailable = await sender.send(sms(2))
    wrong = await texter(gateway.url, clock, access_secret="not-it").send(sms(3))
    await sender.close()
    assert throttled.outcome is Outcome.TEMPORARY and "isv.BUSINESS_LIMIT_CONTROL" in throttled.error
    assert (unavailable.outcome, unavailable.status) == (Outcome.TEMPORARY, 503)
    assert wrong.outcome is Outcome.TEMPORARY and "SignatureDoesNotMatch" in wrong.error
    assert gateway.sent == []


async def test_a_timeout_after_the_gateway_took_the_message_is_ambiguous(clock):
    async with SmsGateway(clock=clock, timeout_every=1, stall=4.0) as gateway:  # answered at its stop
        sender = texter(gateway.url, clock, timeout=1.0)
        sent = sms()
        result = await sender.send(sent)
        await sender.close()
        assert result.outcome is Outcome.AMBIGUOUS and "may have been sent" in result.error
        assert gateway.by_out_id()[sent.msg_id] == 1  # it did go: resending would send it twice


async def test_no_connection_is_temporary_and_a_connection_lost_after_sending_is_ambiguous(clock):
    refused = await texter(f"http://127.0.0.1:{free_port()}/sms/send", clock).send(sms())
    assert refused.outcome is Outcome.TEMPORARY and "not sent" in refused.error

    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response", request=request)

    lost = await texter("http://gateway/sms/send", clock, transport=httpx.MockTransport(dropped)).send(sms())
    assert lost.outcome is Outcome.AMBIGUOUS

    def proxy_gave_up(request: httpx.Request) -> httpx.Response:
        return httpx.Response(504)

    timed_out = await texter("http://gateway/sms/send", clock, transport=httpx.MockTransport(proxy_gave_up)).send(sms())
    assert (timed_out.outcome, timed_out.status) == (Outcome.AMBIGUOUS, 504)


async def test_an_sms_body_without_a_phone_number_is_permanent(clock):
    result = await texter("http://gateway/sms/send", clock).send(item("sms", {"template_code": "SMS_1"}))
    assert result.outcome is Outcome.PERMANENT and "phone" in result.error


# --- receipts -------------------------------------------------------------------------------------

RECEIPT = {
    "phone_number": "13800138000",
    "send_time": "2026-11-02 17:00:00",
    "report_time": "2026-11-02 17:00:03",
    "success": True,
    "err_code": "DELIVERED",
    "err_msg": "用户接收成功",
    "sms_size": "1",
    "biz_id": "900619746936498440^0",
    "out_id": "msg_1",
}


def signed(secret: str, body: bytes, at: datetime) -> dict[str, str]:
    msg_id = "msg_receipts_1"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


def test_signed_receipts_parse_and_a_failure_says_why(clock):
    secret = new_secret()
    body = json.dumps([RECEIPT, {**RECEIPT, "out_id": "msg_2", "success": False, "err_code": "MK:0001"}]).encode()
    delivered, failed = receipts.parse(signed(secret, body, clock.now()), body, key_of(secret), clock.now())
    assert (delivered.out_id, delivered.biz_id, delivered.success, delivered.error) == (
        "msg_1",
        "900619746936498440^0",
        True,
        None,
    )
    assert failed.success is False and "MK:0001" in failed.error


def test_receipts_with_a_bad_signature_or_a_changed_body_are_refused(clock):
    secret, now = new_secret(), clock.now()
    body = json.dumps([RECEIPT]).encode()
    headers = signed(secret, body, now)
    with pytest.raises(SignatureError, match="wrong secret, or the body changed"):
        receipts.parse(headers, body, key_of(new_secret()), now)
    tampered = body.replace(b'"success": true', b'"success": false')
    with pytest.raises(SignatureError, match="body changed"):
        receipts.parse(headers, tampered, key_of(secret), now)
    with pytest.raises(SignatureError, match="more than 5 minutes"):
        receipts.parse(headers, body, key_of(secret), now + timedelta(minutes=6))
    with pytest.raises(SignatureError, match="missing"):
        receipts.parse({}, body, key_of(secret), now)


def test_a_signed_body_that_is_not_receipts_is_invalid_naming_the_place(clock):
    secret = new_secret()
    body = json.dumps([{"out_id": "msg_1"}]).encode()
    with pytest.raises(Invalid) as refused:
        receipts.parse(signed(secret, body, clock.now()), body, key_of(secret), clock.now())
    assert refused.value.errors[0]["loc"] == ["body", 0, "success"]


class Deliveries:
    """Stands in for the delivery kernel: knows some msg_ids, records each receipt."""

    def __init__(self, known: set[str] | None = None) -> None:
        self.known = known
        self.got: list[tuple[str, str | None, bool, str | None]] = []

    async def receipt(self, msg_id: str, provider_ref: str | None, delivered: bool, error: str | None) -> bool:
        self.got.append((msg_id, provider_ref, delivered, error))
        return self.known is None or msg_id in self.known


def receipt_app(deliveries: Deliveries, secret: str, clock) -> FastAPI:
    app = FastAPI()
    app.include_router(receipts.router(deliveries, key_of(secret), clock))
    install(app, {})
    return app


async def test_the_receipt_endpoint_answers_accepted_401_and_422(clock):
    secret, deliveries = new_secret(), Deliveries(known={"msg_1"})
    app = receipt_app(deliveries, secret, clock)
    path = "/v1/notifications/sms/receipts"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier") as client:
        body = json.dumps([RECEIPT, {**RECEIPT, "out_id": "msg_unknown"}]).encode()
        ok = await client.post(path, content=body, headers=signed(secret, body, clock.now()))
        assert (ok.status_code, ok.json()) == (200, {"accepted": 1})
        assert [g[0] for g in deliveries.got] == ["msg_1", "msg_unknown"]

        forged = await client.post(path, content=body, headers=signed(new_secret(), body, clock.now()))
        assert forged.status_code == 401 and "signature refused" in forged.json()["detail"]

        wrong = b'{"not": "a list"}'
        invalid = await client.post(path, content=wrong, headers=signed(secret, wrong, clock.now()))
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body"]
    assert len(deliveries.got) == 2


async def test_the_gateway_posts_signed_receipts_that_settle_even_the_ambiguous_sends(clock):
    secret, deliveries = new_secret(), Deliveries()
    async with serve(receipt_app(deliveries, secret, clock)) as base:
        url = f"{base}/v1/notifications/sms/receipts"
        # The client gives up after 1.5 s, the stalled answers come after 4 (or when the gateway
        # stops): only they can be ambiguous, however slowly a loaded machine answers the others.
        async with SmsGateway(
            clock=clock, timeout_every=3, stall=4.0, receipt_url=url, receipt_secret=secret
        ) as gateway:
            sender = texter(gateway.url, clock, timeout=1.5)
            # A first send, refused before it is sent (no such number), readies the fresh server.
            assert (await sender.send(sms(99, phone="12"))).outcome is Outcome.PERMANENT
            results = await asyncio.gather(*(sender.send(sms(n)) for n in range(6)))
            await sender.close()

            async def settled() -> bool:
                if len(deliveries.got) < 6:
                    raise AssertionError(
                        f"{len(deliveries.got)} receipts of 6; the gateway sent {len(gateway.sent)}; "
                        f"the sends: {Counter(r.outcome for r in results)}"
                    )
                return True

            await eventually(settled)
    ambiguous = {f"msg_{n:032x}" for n, r in enumerate(results) if r.outcome is Outcome.AMBIGUOUS}
    assert ambiguous == set(gateway.stalled) and len(ambiguous) == 2
    assert {r.outcome for r in results} == {Outcome.ACCEPTED, Outcome.AMBIGUOUS}
    assert sorted(g[0] for g in deliveries.got) == sorted(f"msg_{n:032x}" for n in range(6))
    assert all(delivered for _, _, delivered, _ in deliveries.got)
    assert {g[1] for g in deliveries.got} == {s["biz_id"] for s in gateway.sent}


# --- webhook --------------------------------------------------------------------------------------

CLOUDEVENT = {
    "specversion": "1.0",
    "id": "msg_00000000000000000000000000000001",
    "type": "gridcall.notification.case.resolved",
    "source": "/notifier",
    "subject": "case-1",
    "time": "2026-11-02T09:00:00Z",
    "datacontenttype": "application/json",
    "data": {"case_id": "case-1", "text": "已办结"},
}


def hook(answers: list[httpx.Response] | None = None, got: list[httpx.Request] | None = None) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if got is not None:
            got.append(request)
        return answers.pop(0) if answers else httpx.Response(204)

    return httpx.MockTransport(answer)


async def test_a_webhook_is_the_cloudevent_byte_for_byte_signed_as_standard_webhooks_verify():
    secret, got = new_secret(), []
    clock = SystemClock()  # the reference library checks the timestamp against the wall clock
    sender = WebhookSender("http://app/hook", key_of(secret), clock=clock, transport=hook(got=got))
    sent = item("webhook", CLOUDEVENT)
    result = await sender.send(sent)
    await sender.close()
    [request] = got
    assert (result.outcome, result.status) == (Outcome.DELIVERED, 204)
    assert request.content == sent.body.encode()
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.headers["webhook-id"] == sent.msg_id
    assert Webhook(secret).verify(request.content, dict(request.headers)) == CLOUDEVENT


async def test_a_retry_is_signed_afresh_with_the_same_id(clock):
    secret, got = new_secret(), []
    sender = WebhookSender("http://app/hook", key_of(secret), clock=clock, transport=hook(got=got))
    await sender.send(item("webhook", CLOUDEVENT))
    clock.advance(timedelta(seconds=30))
    await sender.send(item("webhook", CLOUDEVENT, attempts=1))
    first, again = got
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert int(again.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 30
    at = datetime.fromtimestamp(int(again.headers["webhook-timestamp"]), UTC)
    assert again.headers["webhook-signature"] == Webhook(secret).sign(
        again.headers["webhook-id"], at, again.content.decode()
    )


@pytest.mark.parametrize(
    ("answer", "outcome", "wait"),
    [
        (httpx.Response(200), Outcome.DELIVERED, None),
        (httpx.Response(429, headers={"retry-after": "30"}), Outcome.TEMPORARY, 30.0),
        (httpx.Response(503, headers={"retry-after": "dated"}), Outcome.TEMPORARY, 120.0),
        (httpx.Response(503), Outcome.TEMPORARY, None),
        (httpx.Response(500), Outcome.TEMPORARY, None),
        (httpx.Response(408), Outcome.TEMPORARY, None),
        (httpx.Response(400, text="bad event"), Outcome.PERMANENT, None),
        (httpx.Response(404), Outcome.PERMANENT, None),
        (httpx.Response(410), Outcome.GONE, None),
    ],
)
async def test_the_webhooks_answers(clock, answer, outcome, wait):
    if answer.headers.get("retry-after") == "dated":
        answer.headers["retry-after"] = format_datetime(clock.now() + timedelta(minutes=2), usegmt=True)
    sender = WebhookSender("http://app/hook", key_of(new_secret()), clock=clock, transport=hook([answer]))
    result = await sender.send(item("webhook", CLOUDEVENT))
    assert (result.outcome, result.status, result.retry_after) == (outcome, answer.status_code, wait)
    if outcome is not Outcome.DELIVERED:
        assert f"HTTP {answer.status_code}" in result.error


async def test_no_answer_from_the_webhook_is_temporary_and_a_body_that_is_no_cloudevent_permanent(clock):
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    sender = WebhookSender("http://app/hook", key_of(new_secret()), clock=clock, transport=httpx.MockTransport(slow))
    assert (await sender.send(item("webhook", CLOUDEVENT))).outcome is Outcome.TEMPORARY
    not_an_event = await sender.send(item("webhook", {"text": "hello"}))
    assert not_an_event.outcome is Outcome.PERMANENT and "specversion" in not_an_event.error


# --- log ------------------------------------------------------------------------------------------

FORGED = "cleared\n2026-01-01 00:00:00,000 INFO gridcall.notifications: forged"


async def test_the_log_channel_writes_one_line_no_note_can_forge_and_no_contact_details(caplog):
    caplog.set_level(logging.INFO, logger="gridcall.notifications")
    body = {"audience": "resident", "subject": "已办结\x1b[31m", "text": f"处理结果：{FORGED}"}
    sent = Item(1, "msg_1", "log", "resident@example.cn", "case-1", "case.resolved", json.dumps(body), 0)
    result = await LogSender().send(sent)
    assert result.outcome is Outcome.DELIVERED
    [record] = caplog.records
    line = record.getMessage()
    assert not any(c in line for c in "\n\r\x1b"), line
    assert "\\n2026-01-01" in line and "r***@example.cn" in line and "resident@" not in line
    assert record.case_id == "case-1"


def test_contact_details_are_masked_and_unit_ids_are_not():
    assert masked("resident@example.cn") == "r***@example.cn"
    assert masked("13800138000") == "138****8000"
    assert masked("+8613800138000") == "+86138****8000"
    assert masked("U-G11") == "U-G11"


async def test_a_log_body_of_the_wrong_shape_is_permanent():
    result = await LogSender().send(item("log", {"text": "no audience"}))
    assert result.outcome is Outcome.PERMANENT and "audience" in result.error


# --- from the settings ----------------------------------------------------------------------------


def test_the_settings_switch_channels_on(clock):
    assert set(configured(Settings(), clock)) == {"log"}
    on = Settings(
        smtp_host="smtp.example.cn",
        smtp_from=FROM,
        sms_url="https://sms.example.cn/send",
        sms_access_key=ACCESS_KEY,
        sms_access_secret=ACCESS_SECRET,
        sms_sign_name=SIGN_NAME,
        sms_receipt_secret=new_secret(),
        notifier_webhook_url="https://app.example.cn/hook",
        notifier_webhook_secret=new_secret(),
    )
    channels = configured(on, clock)
    assert {name: type(c).__name__ for name, c in channels.items()} == {
        "log": "LogSender",
        "email": "EmailSender",
        "sms": "SmsSender",
        "webhook": "WebhookSender",
    }
    email_sender = channels["email"]
    assert isinstance(email_sender, EmailSender) and email_sender.port == 587  # starttls by default


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"notifier_webhook_url": "https://app.example.cn/hook"}, "GRIDCALL_NOTIFIER_WEBHOOK_SECRET"),
        ({"notifier_webhook_url": "https://a.cn/h", "notifier_webhook_secret": "whsec_short"}, "whsec_ prefix"),
        ({"smtp_host": "smtp.example.cn"}, "GRIDCALL_SMTP_FROM"),
        ({"smtp_host": "smtp.example.cn", "smtp_from": "noreply"}, "one address"),
        ({"smtp_host": "h", "smtp_from": FROM, "smtp_user": "u"}, "GRIDCALL_SMTP_PASSWORD"),
        ({"sms_url": "https://sms.example.cn/send"}, "GRIDCALL_SMS_ACCESS_KEY, GRIDCALL_SMS_ACCESS_SECRET"),
    ],
)
def test_a_channel_switched_on_without_what_it_needs_fails_at_start_up_naming_it(given, named):
    with pytest.raises(ValidationError, match=named):
        Settings(**given)


def test_settings_copied_without_validation_still_fail_naming_the_secret(clock):
    copied = Settings().model_copy(update={"notifier_webhook_url": "https://app.example.cn/hook"})
    with pytest.raises(NotReady, match="GRIDCALL_NOTIFIER_WEBHOOK_SECRET"):
        configured(copied, clock)
