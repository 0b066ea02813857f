"""SMS through an HTTP gateway shaped like the Chinese providers' SendSms (Aliyun's names): a
template code with parameters under an approved sign name, our msg_id as OutId. A send is not
idempotent there, so an answer lost after the request left is AMBIGUOUS: the delivery waits for
its receipt (notifier/receipts.py) instead of being sent again."""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC
from urllib.parse import urlsplit

import httpx

from notifier.channels.bodies import SmsBody, parsed
from services.delivery.retries import retry_after
from services.delivery.sender import Item, Outcome, Result
from services.district.clock import Clock
from services.district.text import printable
from services.runtime.retry import describe

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
