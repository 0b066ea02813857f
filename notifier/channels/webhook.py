"""The apps' webhook: the CloudEvent as written, signed per Standard Webhooks at send time."""

import httpx

from notifier.channels.bodies import CLOUDEVENTS, WebhookBody, parsed
from services.delivery import signing
from services.delivery.retries import retry_after
from services.delivery.sender import Item, Outcome, Result
from services.district.clock import Clock
from services.district.text import printable
from services.runtime.retry import describe


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
