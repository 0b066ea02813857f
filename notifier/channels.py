"""The notifier's channels: each sends one delivery (services/delivery/sender.py) and says what
came of it, never touching the deliveries table. A delivery's body is JSON the notifier writes
in the shape of its channel's model here (`EmailBody`, `SmsBody`, `WebhookBody`, `LogBody`); a
body that is not is a permanent failure, found before anything is sent.

- `EmailSender`: SMTP (aiosmtplib), plain text and HTML, a Message-ID made of the delivery's
  msg_id (so a resend after a crash is recognisably the same message), RFC 8058 one-click
  unsubscribe on residents' mail; `check()` proves the configuration at start-up.
- `SmsSender`: an HTTP gateway shaped like the Chinese providers' SendSms (Aliyun's names): a
  template code with parameters under an approved sign name, our msg_id as OutId. A send is
  not idempotent there, so an answer lost after the request left is AMBIGUOUS: the delivery
  waits for its receipt (notifier/receipts.py) instead of being sent again.
- `WebhookSender`: the CloudEvent as written, signed per Standard Webhooks at send time.
- `LogSender`: development's channel, one log line per message.

`configured(settings, clock)` builds the ones the settings switch on."""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import socket
import ssl
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.delivery import signing
from services.delivery.retries import retry_after
from services.delivery.sender import Item, Outcome, Result, Sender
from services.district.clock import Clock
from services.district.text import describe as describe_char
from services.district.text import printable
from services.runtime.retry import describe
from services.runtime.settings import Settings

log = logging.getLogger("gridcall.notifications")

CLOUDEVENTS = "application/cloudevents+json"
# A language tag as Content-Language takes it (RFC 5646, loosely): zh-CN, en, zh-Hans-CN.
LANGUAGE_TAG = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class NotReady(RuntimeError):
    """A channel that cannot work as configured: the text names the server or the setting, and
    what failed. Start-up raises it rather than run with a channel every message would fail on."""


# --- what a delivery's body holds, per channel ------------------------------------------------


def _one_line(text: str) -> str:
    if found := _CONTROL.search(text):
        raise ValueError(f"must be one line: it contains {describe_char(found[0])}")
    return text


OneLine = Annotated[str, AfterValidator(_one_line)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmailBody(Body):
    """An email to one address. `unsubscribe_url` (residents' mail) adds List-Unsubscribe and
    List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058): a POST there stops them."""

    to: str = Field(max_length=320, description="one address, without a display name")
    subject: Annotated[OneLine, Field(min_length=1, max_length=900)]
    text: str = Field(min_length=1, description="the plain-text part, always sent")
    html: str | None = Field(None, description="the HTML alternative, if any")
    unsubscribe_url: Annotated[OneLine, StringConstraints(pattern=r"^https?://\S+$", max_length=2000)] | None = None
    language: Annotated[str, StringConstraints(pattern=LANGUAGE_TAG)] = "zh-CN"


class SmsBody(Body):
    """An SMS: the provider fills its approved template `template_code` with `params` (its
    variables by name) under the configured sign name; there is no free text."""

    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{5,20}$")]
    template_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    params: dict[str, OneLine] = Field(default_factory=dict)


class WebhookBody(BaseModel):
    """A CloudEvents 1.0 event in structured mode, sent byte for byte as the body holds it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    source: str = Field(min_length=1)
    subject: str | None = None
    time: datetime | None = None
    datacontenttype: str | None = None
    data: Any = None


class LogBody(Body):
    """A message written to the log instead of sent (development)."""

    audience: str = Field(min_length=1, description="resident | staff | ops")
    subject: str | None = None
    text: str = Field(min_length=1)


B = TypeVar("B", bound=BaseModel)


def parsed(model: type[B], item: Item) -> B | Result:
    """The delivery's body as `model`, or the permanent failure saying which fields are wrong
    (never their values: they are the message)."""
    try:
        return model.model_validate_json(item.body)
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        return Result(Outcome.PERMANENT, printable(f"not a valid {model.__name__}: {wrong}"))


# --- log ----------------------------------------------------------------------------------------


def masked(destination: str) -> str:
    """A destination as a log line may show it: no log line holds contact details, so an
    address keeps its first character and its domain, a phone number its first 3 and last 4
    digits (how Chinese services print them); anything else (a unit id) as it is."""
    if "@" in destination:
        local, _, domain = destination.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if re.fullmatch(r"\+?[0-9]{7,20}", destination):
        return f"{destination[:-8]}****{destination[-4:]}"
    return destination


class LogSender:
    """Development's channel (what `make run` uses): each message one line on the
    gridcall.notifications logger, everything in it a person may have written escaped by
    printable(), so a note cannot forge a line or colour a terminal."""

    channel = "log"
    resend_unknown = True

    async def send(self, item: Item) -> Result:
        body = parsed(LogBody, item)
        if isinstance(body, Result):
            return body
        about = f"{printable(body.subject)}: " if body.subject else ""
        log.info(
            "notify %s %s [%s] %s%s",
            printable(body.audience, 40),
            printable(masked(item.destination), 100),
            printable(item.kind, 64),
            about,
            printable(body.text, 2000),
            extra={"service": "notifier", "case_id": item.case_id},
        )
        return Result(Outcome.DELIVERED)

    async def close(self) -> None:
        return None


# --- email --------------------------------------------------------------------------------------


def mailbox(address: str) -> str:
    """`address` (user@host, no display name) as SMTP takes it: its domain in IDNA (ASCII)
    form; ValueError saying what is wrong with it."""
    if found := re.search(r"[\s\x00-\x1f\x7f-\x9f]", address):
        raise ValueError("it contains a space" if found[0] == " " else f"it contains {describe_char(found[0])}")
    try:
        parsed_address = Address(addr_spec=address)
    except (ValueError, IndexError, MessageError) as exc:
        raise ValueError(str(exc).strip() or "it is not user@host") from None
    if not parsed_address.username or not parsed_address.domain:
        raise ValueError("it is not user@host")
    return Address(username=parsed_address.username, domain=_idna(parsed_address.domain)).addr_spec


def _idna(domain: str) -> str:
    if domain.startswith("["):
        return domain  # an address literal
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"its domain {domain!r} is not a host name") from None


def sender_of(sender: str) -> Address:
    """The From setting ('兰溪区12345 <noreply@example.cn>') as one address, its domain in IDNA form."""
    header = default_policy.header_factory("From", sender)
    if header.defects or len(header.addresses) != 1 or not header.addresses[0].domain:
        raise NotReady(f"GRIDCALL_SMTP_FROM={sender!r} is not one address such as 兰溪区12345 <noreply@example.cn>")
    found = header.addresses[0]
    return Address(display_name=found.display_name, username=found.username, domain=_idna(found.domain))


class _Stale(Exception):
    """A kept connection the server had closed: the message was not taken, send it afresh."""


class EmailSender:
    """Email over SMTP. Connections are kept between messages (up to `connections` open at once,
    one message at a time on each) and opened again when the server has closed them.

    Outcomes: 250 delivered; a 5xx to RCPT or DATA (the recipient or the message refused) is
    permanent, with the code and the server's words; a 4xx, a refused or dropped connection,
    a timeout, a refused login or sender (the configuration, not the message: fixed, the
    message goes on its next attempt) are temporary. A resend after an unknown outcome is
    safe: the Message-ID is `<msg_id@domain of From>` on every attempt."""

    channel = "email"
    resend_unknown = True

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        clock: Clock,
        tls: Literal["none", "starttls", "tls"] = "starttls",
        user: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        connections: int = 4,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender_of(sender)
        self.clock = clock
        self.tls = tls
        self.user = user
        self.password = password
        self.timeout = timeout
        self.tls_context = tls_context  # None: the system's trusted certificates
        self.where = f"SMTP server {host}:{port}"
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(connections)

    def message(self, msg_id: str, body: EmailBody, to: str) -> EmailMessage:
        """The message as sent: the same for every attempt but its Date."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = body.subject
        message["Date"] = format_datetime(self.clock.now())
        message["Message-ID"] = f"<{msg_id}@{self.sender.domain}>"
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
        if body.unsubscribe_url:
            message["List-Unsubscribe"] = f"<{body.unsubscribe_url}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(body.text)
        if body.html:
            message.add_alternative(body.html, subtype="html")
        message["Content-Language"] = body.language  # after the parts: making them moves Content-* headers
        return message

    async def send(self, item: Item) -> Result:
        body = parsed(EmailBody, item)
        if isinstance(body, Result):
            return body
        try:
            to = mailbox(body.to)
        except ValueError as exc:
            return Result(Outcome.PERMANENT, printable(f"not an email address ({masked(body.to)}): {exc}", 400))
        message = self.message(item.msg_id, body, to)
        async with self._slots:
            while self._idle:
                kept = self._idle.pop()
                if not kept.is_connected:
                    kept.close()
                    continue
                try:
                    return await self._over(kept, message, to)
                except _Stale:
                    break  # the server closed it while it was idle: one more try, on a fresh connection
            try:
                smtp = await self._open()
            except NotReady as exc:
                return Result(Outcome.TEMPORARY, str(exc))
            try:
                return await self._over(smtp, message, to)
            except _Stale as exc:
                dropped = describe(exc.__cause__ or exc)
                return Result(Outcome.TEMPORARY, f"{self.where} dropped the connection: {dropped}")

    async def _over(self, smtp: aiosmtplib.SMTP, message: EmailMessage, to: str) -> Result:
        """One message over an open connection, kept open for the next if all went well."""
        try:
            await smtp.send_message(message, sender=self.sender.addr_spec, recipients=[to])
        except aiosmtplib.SMTPServerDisconnected as exc:
            smtp.close()
            raise _Stale from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            return self._failed(exc)
        except BaseException:  # cancelled mid-message: the connection's state is unknown
            smtp.close()
            raise
        self._idle.append(smtp)
        return Result(Outcome.DELIVERED, status=250)

    def _failed(self, exc: Exception) -> Result:
        match exc:
            case aiosmtplib.SMTPRecipientsRefused(recipients=[first, *_]):
                return _answered("the recipient was refused", first.code, first.message)
            case aiosmtplib.SMTPRecipientRefused():
                return _answered("the recipient was refused", exc.code, exc.message)
            case aiosmtplib.SMTPDataError():
                return _answered("the message was refused", exc.code, exc.message)
            case aiosmtplib.SMTPSenderRefused():
                return Result(
                    Outcome.TEMPORARY,
                    printable(f"{self.where} refused the sender {exc.sender}: {exc.code} {exc.message}", 600),
                    exc.code,
                )
            case aiosmtplib.SMTPResponseException():
                return Result(Outcome.TEMPORARY, printable(f"{self.where}: {exc.code} {exc.message}", 600), exc.code)
        return Result(Outcome.TEMPORARY, f"{self.where}: {describe(exc)}")

    async def _open(self) -> aiosmtplib.SMTP:
        """A connection ready to send: connected (TLS from the start, if so configured),
        greeted, upgraded by STARTTLS and logged in as configured; else NotReady naming the
        step that failed and, where it can tell, the setting to change."""
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "tls",
            start_tls=False,
            timeout=self.timeout,
            tls_context=self.tls_context,
        )
        step = "connect"
        try:
            await smtp.connect()
            step = "EHLO"
            await smtp.ehlo()
            if self.tls == "starttls":
                if not smtp.supports_extension("starttls"):
                    raise NotReady(
                        f"{self.where} does not offer STARTTLS: set GRIDCALL_SMTP_TLS=tls if it speaks TLS from the "
                        "start (port 465), or none if it takes mail in the clear"
                    )
                step = "STARTTLS"
                await smtp.starttls()
                await smtp.ehlo()
            if self.user is not None:
                step = "login"
                await smtp.login(self.user, self.password or "")
        except NotReady:
            smtp.close()
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise NotReady(self._why(step, exc)) from exc
        return smtp

    def _why(self, step: str, exc: Exception) -> str:
        cause = exc.__cause__ or exc
        where = self.where
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"{where}: its TLS certificate is not trusted ({cause.verify_message})"
        if step == "connect":
            if isinstance(cause, socket.gaierror):
                return f"{where}: cannot resolve the host name {self.host!r} ({cause.strerror})"
            if isinstance(cause, ConnectionRefusedError):
                return f"{where}: connection refused (is the server running, and is this its port?)"
            if isinstance(cause, ssl.SSLError):
                return (
                    f"{where}: the TLS handshake failed ({cause.reason or cause}): with GRIDCALL_SMTP_TLS=tls the "
                    "server must speak TLS from the start (port 465); one that upgrades by STARTTLS (587, 25) "
                    "takes GRIDCALL_SMTP_TLS=starttls"
                )
            if isinstance(exc, aiosmtplib.SMTPTimeoutError):
                hint = (
                    " (a port that speaks TLS from the start, such as 465, needs GRIDCALL_SMTP_TLS=tls)"
                    if self.tls != "tls"
                    else ""
                )
                return f"{where}: no greeting within {self.timeout:g}s{hint}"
            if isinstance(exc, aiosmtplib.SMTPResponseException):
                return printable(f"{where} refused the connection: {exc.code} {exc.message}", 600)
            if isinstance(cause, OSError):
                return f"{where}: cannot connect: {describe(cause)}"
        if step == "login":
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                return printable(
                    f"{where} refused the login of {self.user!r}: {exc.code} {exc.message} "
                    "(check GRIDCALL_SMTP_USER and GRIDCALL_SMTP_PASSWORD)",
                    600,
                )
            return (
                f"{where} offers no login we can use ({describe(exc)}): unset GRIDCALL_SMTP_USER, or use "
                "GRIDCALL_SMTP_TLS=starttls or tls if it offers one only over TLS"
            )
        return f"{where}: {step} failed: {describe(exc)}"

    async def check(self) -> None:
        """Start-up's proof that email can go: connect, EHLO, STARTTLS and login as configured,
        and MAIL FROM the sender (which a server that wants a login refuses), then QUIT;
        NotReady naming host:port and what failed (a refused connection too: whether to start
        without email is the caller's choice)."""
        smtp = await self._open()
        try:
            try:
                await smtp.mail(self.sender.addr_spec)
            except aiosmtplib.SMTPResponseException as exc:
                login = " (it wants a login: set GRIDCALL_SMTP_USER and GRIDCALL_SMTP_PASSWORD)"
                hint = login if exc.code == 530 else ""
                raise NotReady(
                    printable(f"{self.where} refuses mail from {self.sender.addr_spec}: {exc.code} {exc.message}", 600)
                    + hint
                ) from None
            await smtp.rset()
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NotReady(f"{self.where}: {describe(exc)}") from exc
        finally:
            smtp.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass  # it is going anyway
            finally:
                smtp.close()


def _answered(what: str, code: int, text: str) -> Result:
    """The server's answer to RCPT or DATA: 5xx can never succeed as it is; 4xx may later."""
    outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY
    return Result(outcome, printable(f"{what}: {code} {text}", 600), code)


# --- SMS ----------------------------------------------------------------------------------------

# Refusals that no retry can change: the template, the number, the signature or the parameters.
PERMANENT_CODES = frozenset(
    {
        "isv.SMS_TEMPLATE_ILLEGAL",
        "isv.MOBILE_NUMBER_ILLEGAL",
        "isv.SMS_SIGNATURE_ILLEGAL",
        "isv.SMS_SIGN_ILLEGAL",
        "isv.SIGN_STATE_ILLEGAL",
        "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
        "isv.TEMPLATE_PARAMS_ILLEGAL",
        "isv.TEMPLATE_MISSING_PARAMETERS",
        "isv.INVALID_JSON_PARAM",
        "isv.INVALID_PARAMETERS",
        "isv.PARAM_LENGTH_LIMIT",
        "isv.PARAM_NOT_SUPPORT_URL",
        "isv.MOBILE_COUNT_OVER_LIMIT",
        "isv.SMS_CONTENT_ILLEGAL",
        "isv.BLACK_KEY_CONTROL_LIMIT",
        "isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
    }
)
# Every other code is a refusal too (nothing was sent, so trying again is safe): throttling
# (isv.BUSINESS_LIMIT_CONTROL), limits, the account, a provider fault. Temporary.


def sms_signature(secret: str, method: str, path: str, date: str, nonce: str, body: bytes) -> str:
    """How a request to the gateway is signed (a simplified ACS3-HMAC-SHA256): base64 of
    HMAC-SHA256 over method, path, date, nonce and the body's SHA-256, one per line."""
    text = "\n".join((method.upper(), path, date, nonce, hashlib.sha256(body).hexdigest()))
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


class SmsSender:
    """SMS through a provider's HTTP gateway (Aliyun's SendSms names: PhoneNumbers, SignName,
    TemplateCode, TemplateParam, OutId). Code OK: ACCEPTED with the BizId, and the receipt says
    delivered or failed. A refusal is PERMANENT when the request can never work (PERMANENT_CODES),
    TEMPORARY otherwise; no connection is TEMPORARY. A timeout or a dropped connection after the
    request left is AMBIGUOUS: the provider may have sent it, and its send is not idempotent, so
    the delivery waits for the receipt and is never resent blindly (resend_unknown False)."""

    channel = "sms"
    resend_unknown = False

    def __init__(
        self,
        url: str,
        *,
        access_key: str,
        access_secret: str,
        sign_name: str,
        clock: Clock,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.path = urlsplit(url).path or "/"
        self.access_key = access_key
        self.access_secret = access_secret
        self.sign_name = sign_name
        self.clock = clock
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport)

    def request(self, item: Item, body: SmsBody) -> tuple[bytes, dict[str, str]]:
        """The request's body and headers, signed."""
        raw = json.dumps(
            {
                "PhoneNumbers": body.phone,
                "SignName": self.sign_name,
                "TemplateCode": body.template_code,
                "TemplateParam": json.dumps(body.params, ensure_ascii=False, separators=(",", ":")),
                "OutId": item.msg_id,
            },
            ensure_ascii=False,
        ).encode()
        date = self.clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        nonce = uuid.uuid4().hex
        signature = sms_signature(self.access_secret, "POST", self.path, date, nonce, raw)
        return raw, {
            "content-type": "application/json; charset=utf-8",
            "x-sms-date": date,
            "x-sms-nonce": nonce,
            "authorization": f"HMAC-SHA256 Credential={self.access_key},Signature={signature}",
        }

    async def send(self, item: Item) -> Result:
        body = parsed(SmsBody, item)
        if isinstance(body, Result):
            return body
        raw, headers = self.request(item, body)
        try:
            answer = await self.client.post(self.url, content=raw, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Result(Outcome.TEMPORARY, f"SMS gateway: not sent, no connection: {describe(exc)}")
        except httpx.TimeoutException:
            return Result(
                Outcome.AMBIGUOUS,
                f"SMS gateway: no answer within {self.timeout:g}s after the request left: it may have been sent",
            )
        except httpx.TransportError as exc:
            return Result(Outcome.AMBIGUOUS, f"SMS gateway: lost after the request left: {describe(exc)}")
        return self._judged(answer, body.template_code)

    def _judged(self, answer: httpx.Response, template_code: str) -> Result:
        status = answer.status_code
        try:
            reply = answer.json()
            code = reply.get("Code") if isinstance(reply, dict) else None
        except ValueError:
            reply, code = None, None
        if isinstance(code, str):
            words = printable(f"{code}: {reply.get('Message', '')}", 300)
            if code == "OK":
                biz_id = reply.get("BizId")
                if not isinstance(biz_id, str) or not biz_id:
                    return Result(Outcome.AMBIGUOUS, "SMS gateway: OK without a BizId", status)
                return Result(Outcome.ACCEPTED, status=status, provider_ref=biz_id[:128])
            outcome = Outcome.PERMANENT if code in PERMANENT_CODES else Outcome.TEMPORARY
            wait = retry_after(answer.headers.get("retry-after"), self.clock.now())
            return Result(
                outcome, f"SMS gateway refused it (template {template_code}): {words}", status, retry_after=wait
            )
        if status == 200:
            return Result(Outcome.AMBIGUOUS, "SMS gateway: 200 without a Code: it may have been sent", status)
        if status == 504:
            # A proxy gave up waiting for the provider, which may have taken it.
            return Result(Outcome.AMBIGUOUS, "SMS gateway: HTTP 504 (a gateway timeout): it may have been sent", status)
        wait = retry_after(answer.headers.get("retry-after"), self.clock.now())
        if status >= 500 or status in (401, 403, 408, 429):
            return Result(Outcome.TEMPORARY, f"SMS gateway: HTTP {status}", status, retry_after=wait)
        return Result(Outcome.PERMANENT, f"SMS gateway: HTTP {status} (is GRIDCALL_SMS_URL its send endpoint?)", status)

    async def close(self) -> None:
        await self.client.aclose()


# --- webhook ------------------------------------------------------------------------------------


class WebhookSender:
    """Each message POSTed as its CloudEvent (application/cloudevents+json), signed per Standard
    Webhooks at send time with webhook-id = msg_id: a retry has a fresh timestamp and the same
    id, by which the receiver deduplicates (resend_unknown). 2xx delivered; 410 gone; 408, 429,
    5xx and no answer temporary (429 and 503 after their Retry-After); other answers permanent."""

    channel = "webhook"
    resend_unknown = True

    def __init__(
        self,
        url: str,
        key: bytes,
        *,
        clock: Clock,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.key = key
        self.clock = clock
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def send(self, item: Item) -> Result:
        body = parsed(WebhookBody, item)
        if isinstance(body, Result):
            return body
        raw = item.body.encode()
        stamp = int(self.clock.now().timestamp())
        headers = signing.headers(self.key, item.msg_id, stamp, raw) | {"content-type": CLOUDEVENTS}
        try:
            answer = await self.client.post(self.url, content=raw, headers=headers)
        except httpx.TimeoutException:
            return Result(Outcome.TEMPORARY, f"webhook: no answer within {self.timeout:g}s")
        except httpx.HTTPError as exc:
            return Result(Outcome.TEMPORARY, f"webhook: {describe(exc)}")
        status = answer.status_code
        if answer.is_success:
            return Result(Outcome.DELIVERED, status=status)
        said = printable(f"webhook: HTTP {status} {answer.text[:200]}".strip(), 300)
        if status == 410:
            return Result(Outcome.GONE, said, status)
        if status in (429, 503):
            wait = retry_after(answer.headers.get("retry-after"), self.clock.now())
            return Result(Outcome.TEMPORARY, said, status, retry_after=wait)
        if status == 408 or status >= 500:
            return Result(Outcome.TEMPORARY, said, status)
        return Result(Outcome.PERMANENT, said, status)

    async def close(self) -> None:
        await self.client.aclose()


# --- from the settings --------------------------------------------------------------------------


def _secret(value: Any) -> str:
    return str(value.get_secret_value()) if value is not None else ""


def configured(settings: Settings, clock: Clock) -> dict[str, Sender]:
    """The channels by name: log always; email when GRIDCALL_SMTP_HOST is set, SMS when
    GRIDCALL_SMS_URL is, the webhook when GRIDCALL_NOTIFIER_WEBHOOK_URL is. NotReady naming
    the setting that is missing or wrong (settings copied without validation get here too)."""
    found: dict[str, Sender] = {"log": LogSender()}
    if settings.smtp_host:
        if not settings.smtp_from:
            raise NotReady("GRIDCALL_SMTP_FROM must be set when GRIDCALL_SMTP_HOST is")
        found["email"] = EmailSender(
            settings.smtp_host,
            settings.smtp_server_port,
            sender=settings.smtp_from,
            clock=clock,
            tls=settings.smtp_tls,
            user=settings.smtp_user,
            password=_secret(settings.smtp_password) if settings.smtp_user else None,
            timeout=settings.smtp_timeout,
        )
    if settings.sms_url:
        needed: Mapping[str, Any] = {
            "GRIDCALL_SMS_ACCESS_KEY": settings.sms_access_key,
            "GRIDCALL_SMS_ACCESS_SECRET": settings.sms_access_secret,
            "GRIDCALL_SMS_SIGN_NAME": settings.sms_sign_name,
        }
        if missing := [name for name, value in needed.items() if not value]:
            raise NotReady(f"{', '.join(missing)} must be set when GRIDCALL_SMS_URL is")
        found["sms"] = SmsSender(
            settings.sms_url,
            access_key=str(settings.sms_access_key),
            access_secret=_secret(settings.sms_access_secret),
            sign_name=str(settings.sms_sign_name),
            clock=clock,
            timeout=settings.sms_timeout,
        )
    if settings.notifier_webhook_url:
        if settings.notifier_webhook_secret is None:
            raise NotReady("GRIDCALL_NOTIFIER_WEBHOOK_SECRET must be set when GRIDCALL_NOTIFIER_WEBHOOK_URL is")
        try:
            key = signing.key_of(_secret(settings.notifier_webhook_secret))
        except signing.SecretError as exc:
            raise NotReady(f"GRIDCALL_NOTIFIER_WEBHOOK_SECRET: {exc}") from None
        found["webhook"] = WebhookSender(
            settings.notifier_webhook_url, key, clock=clock, timeout=settings.notifier_timeout
        )
    return found
