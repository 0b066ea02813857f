"""The notifier's webhook (GRIDCALL_NOTIFIER_WEBHOOK_URL), on SQLite and PostgreSQL, to a
receiver that fails half its calls: every notification's CloudEvent ends delivered once, its
retries signed per Standard Webhooks with the same webhook-id (checked with the reference
`standardwebhooks` library)."""

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook

from services.delivery.signing import new_secret
from services.delivery.tables import State
from services.runtime.settings import Settings
from tests.support.apps import serve
from tests.support.notices import assigned, case_id, followed, notifier, reported, resolved
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")  # type: ignore[no-any-return]


class Receiver:
    """Answers every other call 500; counts the webhook-ids it answered 2xx, each signature checked."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.calls = 0
        self.answered: Counter[str] = Counter()
        self.refused: list[str] = []
        self.events: dict[str, dict[str, object]] = {}
        self.app = FastAPI()
        self.app.post("/hook")(self.hook)

    async def hook(self, request: Request) -> Response:
        body = (await request.body()).decode()
        h = request.headers
        msg_id, stamp = h["webhook-id"], datetime.fromtimestamp(int(h["webhook-timestamp"]), UTC)
        # the reference library's signature for these headers (its verify() also wants the wall clock's now)
        if h["webhook-signature"] != self.webhook.sign(msg_id, stamp, body):
            self.refused.append(msg_id)
            return Response(status_code=401)
        self.calls += 1
        if self.calls % 2 == 1:
            return Response("try again", status_code=500)
        self.answered[msg_id] += 1
        self.events[msg_id] = json.loads(body)
        return Response(status_code=204)


async def test_each_notification_reaches_a_receiver_failing_half_its_calls_once(settings):
    secret = new_secret()
    receiver = Receiver(secret)
    async with serve(receiver.app) as base:
        options = {
            "notifier_webhook_url": f"{base}/hook",
            "notifier_webhook_secret": secret,
            "delivery_retry_schedule": ",".join(["0s"] * 16),
        }
        async with notifier(settings, **options) as n:
            cases = [case_id() for _ in range(6)]
            now = n.clock.now()
            await n.feed(*(e for c in cases for e in (reported(c), followed(c, email=f"{c}@example.cn"))))
            await n.feed(*(assigned(c, now, ticket=f"T-{c}") for c in cases))
            await n.feed(*(resolved(c, f"T-{c}") for c in cases))

            async def settled() -> list[object]:
                await n.deliver("webhook")
                rows = [r for c in cases for r in await n.deliveries(c, channel="webhook")]
                return rows if all(r.state == State.DELIVERED for r in rows) else []

            rows = await eventually(settled, timeout=30)
    # per case: received, assigned, ticket.new for the unit, resolved, visit
    assert len(rows) == 5 * len(cases)
    assert receiver.refused == []
    assert receiver.answered == Counter({r.msg_id: 1 for r in rows})
    assert max(r.attempts for r in rows) > 1  # some went more than once before the receiver took them
    event = receiver.events[rows[0].msg_id]
    assert (event["specversion"], event["type"], event["id"]) == ("1.0", "gridcall.notification", rows[0].msg_id)
    assert event["data"]["kind"] == "case.received"  # type: ignore[index]
