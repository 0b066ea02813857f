"""A fake SMS gateway that answers as a Chinese provider's SendSms does (Aliyun's names), for the
notifier's SMS tests: in a test's process (`with SmsGateway(...) as gateway:` or `async with`:
uvicorn on a thread of its own, so a stalled answer never holds up the test), or as a process of
its own (`python -m tests.support.smsgateway --port N --log FILE ...`; `gateway_process(...)`).

It checks each request as a provider would: the signature by the access key (HMAC, see
notifier.channels.sms.sms_signature; written again here, as a provider's own code would be), the
sign name, the template code (`templates`: code -> the parameters it takes), the phone number.
A good request is sent (recorded in `sent`, one JSON line in the log) and answered
{"Code": "OK", "BizId", "RequestId", "Message": "OK"}; a bad one gets the provider's code.

What a test can make it do:
- `timeout_every=5`: one send in five is sent (recorded, its receipt posted) but answered only
  after `stall` seconds, after the client gave up: the ambiguous case;
- `throttled=n` / `unavailable=n`: the next n sends refused with isv.BUSINESS_LIMIT_CONTROL,
  or answered HTTP 503, and not sent;
- receipts: with `receipt_url` and `receipt_secret`, each sent message's status report
  (Aliyun's SmsReport shape) is POSTed there `receipt_delay` seconds later, several to a
  request, signed per Standard Webhooks by the reference library, and posted again until it
  is answered 2xx; `undeliverable={phone: (code, text)}` makes a phone's reports failures."""

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks import Webhook

from services.district.clock import Clock, SystemClock
from tests.support.servers import free_port, wait_for_port
from tests.support.smtp import ROOT, read_log

PATH = "/sms/send"
SIGN_NAME = "兰溪区12345"
ACCESS_KEY = "LTAI-test-key"
ACCESS_SECRET = "test-access-secret"
TEMPLATES = {"SMS_CASE_RECEIVED": ("case", "link"), "SMS_CASE_RESOLVED": ("case",)}
PROVIDER_TIME = ZoneInfo("Asia/Shanghai")  # a provider's reports are in Beijing time
MOBILE = re.compile(r"^(\+?86)?1[3-9][0-9]{9}$")


class SmsGateway:
    def __init__(
        self,
        port: int | None = None,
        *,
        access_key: str = ACCESS_KEY,
        access_secret: str = ACCESS_SECRET,
        sign_names: Sequence[str] = (SIGN_NAME,),
        templates: Mapping[str, Sequence[str]] = TEMPLATES,
        timeout_every: int = 0,
        stall: float = 3.0,
        receipt_url: str | None = None,
        receipt_secret: str | None = None,
        receipt_delay: float = 0.2,
        undeliverable: Mapping[str, tuple[str, str]] | None = None,
        log: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.access_key = access_key
        self.access_secret = access_secret
        self.sign_names = set(sign_names)
        self.templates = {code: tuple(params) for code, params in templates.items()}
        self.timeout_every = timeout_every
        self.stall = stall
        self.receipt_url = receipt_url
        self.receipt_secret = receipt_secret
        self.receipt_delay = receipt_delay
        self.undeliverable = dict(undeliverable or {})
        self.log = log
        self.clock = clock or SystemClock()
        self.throttled = 0
        self.unavailable = 0
        self.sent: list[dict[str, Any]] = []  # what it sent, in order
        self.requests = 0  # sends asked for, sent or not
        self.stalled: list[str] = []  # the OutIds of sends answered too late
        self.receipts: list[dict[str, Any]] = []  # reports the receipt URL answered 2xx
        self._due: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.app = self._app()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"

    def per_phone(self) -> Counter[str]:
        return Counter(s["phone"] for s in self.sent)

    def by_out_id(self) -> Counter[str]:
        return Counter(s["out_id"] for s in self.sent)

    # --- the provider -------------------------------------------------------------------------

    def _app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            poster = asyncio.create_task(self._post_receipts())
            yield
            poster.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poster

        app = FastAPI(lifespan=lifespan)
        app.post(PATH)(self._send)
        return app

    def _refused(self, code: str, message: str, status: int = 200) -> JSONResponse:
        return JSONResponse({"Code": code, "Message": message, "RequestId": str(uuid.uuid4())}, status)

    def _signed(self, request: Request, body: bytes) -> bool:
        found = re.fullmatch(
            r"HMAC-SHA256 Credential=([^,]+),Signature=(\S+)", request.headers.get("authorization", "")
        )
        if not found or found[1] != self.access_key:
            return False
        text = "\n".join(
            (
                "POST",
                request.url.path,
                request.headers.get("x-sms-date", ""),
                request.headers.get("x-sms-nonce", ""),
                hashlib.sha256(body).hexdigest(),
            )
        )
        expected = base64.b64encode(hmac.new(self.access_secret.encode(), text.encode(), hashlib.sha256).digest())
        return hmac.compare_digest(expected, found[2].encode())

    async def _send(self, request: Request) -> JSONResponse:
        body = await request.body()
        if not self._signed(request, body):
            return self._refused("SignatureDoesNotMatch", "the signature or access key is wrong", 403)
        try:
            asked = json.loads(body)
            params = json.loads(asked.get("TemplateParam") or "{}")
        except (ValueError, AttributeError):
            return self._refused("isv.INVALID_JSON_PARAM", "TemplateParam is not JSON", 400)
        with self._lock:
            self.requests += 1
            if self.unavailable > 0:
                self.unavailable -= 1
                return JSONResponse({"Message": "service unavailable"}, 503)
            if self.throttled > 0:
                self.throttled -= 1
                return self._refused("isv.BUSINESS_LIMIT_CONTROL", "触发业务流控")
        phone, template = str(asked.get("PhoneNumbers", "")), asked.get("TemplateCode")
        if not MOBILE.match(phone):
            return self._refused("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if asked.get("SignName") not in self.sign_names:
            return self._refused("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        if template not in self.templates:
            return self._refused("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        if not isinstance(params, dict) or set(self.templates[template]) - set(params):
            return self._refused("isv.TEMPLATE_MISSING_PARAMETERS", "模版缺少变量")
        now = self.clock.now()
        biz_id = f"{int(now.timestamp() * 1000)}^{uuid.uuid4().int % 10**10}"
        sent = {
            "phone": phone,
            "template_code": template,
            "params": params,
            "sign_name": asked["SignName"],
            "out_id": asked.get("OutId"),
            "biz_id": biz_id,
        }
        with self._lock:
            self.sent.append(sent)
            stall = self.timeout_every > 0 and len(self.sent) % self.timeout_every == 0
            if stall:
                self.stalled.append(str(sent["out_id"]))
            if self.receipt_url:
                self._due.append((time.monotonic() + self.receipt_delay, self._report(sent, now)))
            if self.log is not None:
                with self.log.open("a", encoding="utf-8") as out:
                    out.write(json.dumps({**sent, "stalled": stall}, ensure_ascii=False) + "\n")
        if stall:  # sent, but answered after the client has given up (or when the gateway stops)
            until = time.monotonic() + self.stall
            while time.monotonic() < until and not self._stopping:  # noqa: ASYNC110  (stop() is another thread's)
                await asyncio.sleep(0.05)
        return JSONResponse({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": str(uuid.uuid4())})

    def _report(self, sent: dict[str, Any], at: datetime) -> dict[str, Any]:
        failed = self.undeliverable.get(sent["phone"])
        local = at.astimezone(PROVIDER_TIME)
        return {
            "phone_number": sent["phone"],
            "send_time": local.strftime("%Y-%m-%d %H:%M:%S"),
            "report_time": (local + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S"),
            "success": failed is None,
            "err_code": failed[0] if failed else "DELIVERED",
            "err_msg": failed[1] if failed else "用户接收成功",
            "sms_size": "1",
            "biz_id": sent["biz_id"],
            "out_id": sent["out_id"],
        }

    async def _post_receipts(self) -> None:
        """Posts the reports that are due, up to 50 to a request; those not answered 2xx go again."""
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                await asyncio.sleep(0.05)
                if not self.receipt_url or not self.receipt_secret:
                    continue
                with self._lock:
                    now = time.monotonic()
                    ready = sorted((w, i) for i, (w, _) in enumerate(self._due) if w <= now)[:50]
                    taken = {i for _, i in ready}
                    due = [self._due[i][1] for _, i in ready]
                    self._due = [d for i, d in enumerate(self._due) if i not in taken]
                if not due:
                    continue
                body = json.dumps(due, ensure_ascii=False)
                msg_id = f"msg_{uuid.uuid4().hex}"
                signature = Webhook(self.receipt_secret).sign(msg_id, self.clock.now(), body)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(self.clock.now().timestamp())),
                    "webhook-signature": signature,
                }
                try:
                    answer = await client.post(self.receipt_url, content=body.encode(), headers=headers)
                    posted = answer.is_success
                except httpx.HTTPError:
                    posted = False
                with self._lock:
                    if posted:
                        self.receipts += due
                    else:
                        self._due += [(time.monotonic() + 0.5, r) for r in due]

    # --- running it ---------------------------------------------------------------------------

    def start(self) -> "SmsGateway":
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"sms-gateway-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake SMS gateway did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)

    def __enter__(self) -> "SmsGateway":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "SmsGateway":
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


@contextlib.contextmanager
def gateway_process(log: Path, port: int | None = None, *args: str) -> Iterator[str]:
    """`python -m tests.support.smsgateway` on `port` (a free one by default), logging what it
    sends to `log`, with more command-line `args`; yields its send URL once it listens."""
    port = port or free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "tests.support.smsgateway", "--port", str(port), "--log", str(log), *args]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sent_log(path: Path) -> list[dict[str, Any]]:
    """What a gateway process sent, in order (each with `stalled`: answered too late)."""
    return read_log(path)


def _templates(pairs: list[str]) -> dict[str, tuple[str, ...]]:
    """['SMS_1=case,link'] -> {'SMS_1': ('case', 'link')}"""
    found = {}
    for pair in pairs:
        code, _, params = pair.partition("=")
        found[code] = tuple(p for p in params.split(",") if p)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.smsgateway", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True, help="appends one JSON line per message sent")
    parser.add_argument("--access-key", default=ACCESS_KEY)
    parser.add_argument("--access-secret", default=ACCESS_SECRET)
    parser.add_argument("--sign-name", action="append", default=[], help=f"default: {SIGN_NAME}")
    parser.add_argument("--template", action="append", default=[], metavar="CODE=PARAM,PARAM", help="default: demo")
    parser.add_argument("--timeout-every", type=int, default=0, metavar="N", help="answer every N-th send too late")
    parser.add_argument("--stall", type=float, default=3.0, help="seconds such an answer waits")
    parser.add_argument("--receipt-url")
    parser.add_argument("--receipt-secret", help="whsec_ secret the receipts are signed with")
    parser.add_argument("--receipt-delay", type=float, default=0.2)
    given = parser.parse_args(argv)
    gateway = SmsGateway(
        given.port,
        access_key=given.access_key,
        access_secret=given.access_secret,
        sign_names=given.sign_name or (SIGN_NAME,),
        templates=_templates(given.template) or TEMPLATES,
        timeout_every=given.timeout_every,
        stall=given.stall,
        receipt_url=given.receipt_url,
        receipt_secret=given.receipt_secret,
        receipt_delay=given.receipt_delay,
        log=given.log,
    )
    uvicorn.Server(uvicorn.Config(gateway.app, host=gateway.host, port=gateway.port, log_level="warning")).run()


if __name__ == "__main__":
    main()
