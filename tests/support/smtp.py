"""A real SMTP server for the notifier's email tests (aiosmtpd) on a free port of 127.0.0.1.

In a test's process it runs on a thread of its own: `with SmtpServer() as smtp:` (or `async
with`), and `smtp.messages` / `smtp.to(address)` are what it took. As a process of its own, for
end-to-end tests that kill the notifier: `python -m tests.support.smtp --port N --log FILE`
(`smtp_process(...)` starts one and waits for it), which appends one JSON line per message and
recipient to FILE, so a test counts what each recipient got from the server's own record.

A record: recipient, message_id, from, subject (decoded) and subject_raw (as sent), date,
content_language, list_unsubscribe, list_unsubscribe_post, text (the decoded plain part), html.

It refuses on demand: `refuse={"nobody@example.cn": 550}` answers RCPT for that recipient with
the code (550 no such mailbox, 421 or 452 try later), `refuse_data` the same at DATA, `flaky=n`
answers 421 at DATA to every n-th message, `delay=s` takes s seconds over each message before it
answers (a slow server: a sender killed meanwhile has mail on its way). `users={"name":
"password"}` offers AUTH and requires it; `starttls=(cert, key)` offers STARTTLS,
`implicit_tls=(cert, key)` speaks TLS from the start (`self_signed(dir)` makes a pair; trust
it with `client_context(cert)`)."""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32, default
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
REPLIES = {
    421: "421 4.3.2 service not available, try again later",
    450: "450 4.2.1 mailbox busy, try again later",
    452: "452 4.2.2 mailbox full",
    550: "550 5.1.1 no such mailbox here",
    552: "552 5.3.4 message too big",
    554: "554 5.6.0 message refused",
}


def reply(code: int) -> str:
    return REPLIES.get(code, f"{code} {'4.0.0 not now' if code < 500 else '5.0.0 refused'}")


def record(message: EmailMessage, raw: bytes, recipient: str) -> dict[str, Any]:
    """What a test reads of one message to one recipient."""
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return {
        "recipient": recipient,
        "message_id": message["Message-ID"],
        "from": str(message["From"]),
        "subject": str(message["Subject"]),
        "subject_raw": str(headers["Subject"]),
        "date": message["Date"],
        "content_language": message["Content-Language"],
        "list_unsubscribe": message["List-Unsubscribe"],
        "list_unsubscribe_post": message["List-Unsubscribe-Post"],
        "text": text.get_content() if isinstance(text, EmailMessage) else None,
        "html": html.get_content() if isinstance(html, EmailMessage) else None,
    }


class Mailbox:
    """aiosmtpd's handler: takes or refuses each recipient and message, and records what it took."""

    def __init__(
        self,
        refuse: Mapping[str, int] | None = None,
        refuse_data: Mapping[str, int] | None = None,
        flaky: int = 0,
        log: Path | None = None,
        delay: float = 0.0,
    ) -> None:
        self.refuse = {k.lower(): v for k, v in (refuse or {}).items()}
        self.refuse_data = {k.lower(): v for k, v in (refuse_data or {}).items()}
        self.flaky = flaky
        self.delay = delay
        self.log = log
        self.messages: list[dict[str, Any]] = []
        self.ehlos = 0
        self.count = 0
        self._lock = threading.Lock()

    async def handle_EHLO(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self._lock:
            self.ehlos += 1  # one per connection (two with STARTTLS)
        return responses

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook names)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if code := self.refuse.get(address.lower()):
            return reply(code)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        for recipient in envelope.rcpt_tos:
            if code := self.refuse_data.get(recipient.lower()):
                return reply(code)
        with self._lock:
            self.count += 1
            if self.flaky and self.count % self.flaky == 0:
                return reply(421)
        if self.delay:
            await asyncio.sleep(self.delay)
        raw = envelope.original_content or b""
        message = BytesParser(policy=default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        took = [record(message, raw, r) for r in envelope.rcpt_tos]
        with self._lock:
            self.messages += took
            if self.log is not None:
                with self.log.open("a", encoding="utf-8") as out:
                    out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in took)
        return "250 2.0.0 OK: queued"


class Accounts:
    """aiosmtpd's authenticator over a dict of users and passwords."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        good = isinstance(data, LoginPassword) and self.users.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=good, handled=False)  # not handled: aiosmtpd answers 235 or 535 itself


def server_context(pair: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*pair)
    return context


def client_context(cert: Path) -> ssl.SSLContext:
    """A client context that trusts the self-signed certificate `cert` (and nothing else)."""
    return ssl.create_default_context(cafile=str(cert))


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 and localhost, made by openssl."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


class _Controller(Controller):
    def factory(self) -> SMTP:
        with warnings.catch_warnings():  # AUTH over plain connections, on purpose: TLS is tested apart
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return super().factory()


class SmtpServer:
    def __init__(
        self,
        port: int | None = None,
        *,
        log: Path | None = None,
        refuse: Mapping[str, int] | None = None,
        refuse_data: Mapping[str, int] | None = None,
        flaky: int = 0,
        delay: float = 0.0,
        users: Mapping[str, str] | None = None,
        starttls: tuple[Path, Path] | None = None,
        implicit_tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.mailbox = Mailbox(refuse, refuse_data, flaky, log, delay)
        options: dict[str, Any] = {}
        if users is not None:
            options |= {"authenticator": Accounts(users), "auth_required": True, "auth_require_tls": False}
        if starttls is not None:
            options["tls_context"] = server_context(starttls)
        self.controller = _Controller(
            self.mailbox,
            hostname=self.host,
            port=self.port,
            ssl_context=server_context(implicit_tls) if implicit_tls else None,
            **options,
        )

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.mailbox.messages)

    def to(self, recipient: str) -> list[dict[str, Any]]:
        return [m for m in self.mailbox.messages if m["recipient"].lower() == recipient.lower()]

    def start(self) -> "SmtpServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> "SmtpServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "SmtpServer":
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records a server process wrote, in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def smtp_process(log: Path, port: int | None = None, *args: str) -> Iterator[int]:
    """`python -m tests.support.smtp` on `port` (a free one by default), logging to `log`, with
    more command-line `args` (--refuse, --refuse-data, --flaky, --delay); yields the port once it listens."""
    port = port or free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "tests.support.smtp", "--port", str(port), "--log", str(log), *args]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _codes(pairs: list[str]) -> dict[str, int]:
    """['a@b.cn=550'] -> {'a@b.cn': 550}"""
    found = {}
    for pair in pairs:
        address, _, code = pair.rpartition("=")
        found[address] = int(code)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.smtp", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True, help="appends one JSON line per message and recipient")
    parser.add_argument("--refuse", action="append", default=[], metavar="ADDRESS=CODE", help="at RCPT")
    parser.add_argument("--refuse-data", action="append", default=[], metavar="ADDRESS=CODE", help="at DATA")
    parser.add_argument("--flaky", type=int, default=0, metavar="N", help="421 at DATA to every N-th message")
    parser.add_argument("--delay", type=float, default=0.0, metavar="SECONDS", help="taken over each message")
    given = parser.parse_args(argv)
    # Blocked before the server's thread starts (which inherits the mask), then waited for here.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    server = SmtpServer(
        given.port,
        log=given.log,
        refuse=_codes(given.refuse),
        refuse_data=_codes(given.refuse_data),
        flaky=given.flaky,
        delay=given.delay,
    ).start()
    print(f"SMTP server on 127.0.0.1:{given.port}, logging to {given.log}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    main()
