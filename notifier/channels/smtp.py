"""Email over SMTP (aiosmtplib): plain text and HTML, a Message-ID made of the delivery's msg_id
(so a resend after a crash is recognisably the same message), RFC 8058 one-click unsubscribe on
residents' mail; `check()` proves the configuration at start-up."""

import asyncio
import re
import socket
import ssl
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Literal

import aiosmtplib

from notifier.channels.bodies import EmailBody, NotReady, masked, parsed
from services.delivery.sender import Item, Outcome, Result
from services.district.clock import Clock
from services.district.text import describe as describe_char
from services.district.text import printable
from services.runtime.retry import describe


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
