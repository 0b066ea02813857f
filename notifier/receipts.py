"""SMS delivery receipts: the gateway's word on what became of each message it accepted.

A provider accepts a message (its BizId), hands it to the carrier, and later posts a status
report. Ours arrive at `POST /v1/notifications/sms/receipts` as a JSON list in the shape of
Aliyun's SmsReport (`phone_number`, `send_time`, `report_time`, `success`, `err_code`,
`err_msg`, `biz_id`, `out_id`), several at a time, signed per Standard Webhooks with
GRIDCALL_SMS_RECEIPT_SECRET. `out_id` is the msg_id we sent as OutId, so each report finds its
delivery: the one way a message whose send went unanswered (AMBIGUOUS) learns that it went,
instead of being sent twice. The route only checks and parses; what a receipt changes is the
`receipts` part's (the delivery kernel's) business, answered per report with whether it
matched a delivery."""

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from services.delivery.signing import SignatureError, verify
from services.district.clock import Clock
from services.district.errors import Invalid, Unauthorized
from services.district.text import printable
from services.web.openapi import problem
from services.web.parts import bind, part

log = logging.getLogger(__name__)

MOST_PER_POST = 1000


class Receipt(BaseModel):
    """One status report. Fields a provider adds (sms_size) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    out_id: str = Field(min_length=1, max_length=64, description="the msg_id sent as OutId")
    success: bool = Field(description="true: the phone has it; false: it will not arrive")
    biz_id: str | None = Field(None, max_length=128, description="the provider's id, answered to the send")
    phone_number: str | None = Field(None, max_length=32)
    send_time: str | None = Field(None, max_length=32, examples=["2026-11-02 17:00:00"])
    report_time: str | None = Field(None, max_length=32)
    err_code: str | None = Field(None, max_length=64, examples=["DELIVERED", "MK:0001"])
    err_msg: str | None = Field(None, max_length=500, examples=["用户接收成功"])

    @property
    def error(self) -> str | None:
        """Why it failed, for ops; None when it arrived."""
        if self.success:
            return None
        said = " ".join(part for part in (self.err_code, self.err_msg) if part) or "no reason given"
        return printable(f"the SMS receipt says it failed: {said}", 600)


RECEIPTS = TypeAdapter(list[Receipt])


def parse(headers: Mapping[str, str], body: bytes, key: bytes, now: datetime) -> list[Receipt]:
    """The receipts a request carries: SignatureError unless `headers` sign `body` with `key`
    within the tolerance of `now`; Invalid (422) naming what is wrong with a body that is not
    a list of receipts."""
    verify(key, headers, body, now)
    try:
        receipts = RECEIPTS.validate_json(body)
    except ValidationError as exc:
        errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:20]]
        summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        raise Invalid(f"not a list of SMS receipts: {summary}", errors=errors) from None
    if len(receipts) > MOST_PER_POST:
        raise Invalid(f"{len(receipts)} receipts in one request; at most {MOST_PER_POST}")
    return receipts


class Receipts(Protocol):
    """Where receipts go (the delivery kernel): marks the delivery `msg_id` (or, failing that,
    the one with `provider_ref`) delivered or failed; False if there is none."""

    async def receipt(self, msg_id: str, provider_ref: str | None, delivered: bool, error: str | None) -> bool: ...


class Accepted(BaseModel):
    accepted: int = Field(description="how many of the receipts matched a delivery (the rest are ignored)")


def router(receipts: Receipts, key: bytes, clock: Clock) -> APIRouter:
    """The receipt route, with where receipts go, the key GRIDCALL_SMS_RECEIPT_SECRET holds
    (services.delivery.signing.key_of) and the clock signatures are checked against."""
    return bind(routes, receipts=receipts, sms_receipt_key=key, clock=clock)


ReceiptsDep = Annotated[Receipts, Depends(part("receipts"))]
KeyDep = Annotated[bytes, Depends(part("sms_receipt_key"))]
ClockDep = Annotated[Clock, Depends(part("clock"))]


def _body_schema() -> dict[str, Any]:
    """The request body, described by hand: it is read raw, for its signature."""
    schema = RECEIPTS.json_schema()
    defs = schema.pop("$defs", {})
    return {**schema, "items": defs["Receipt"], "maxItems": MOST_PER_POST}


routes = APIRouter(prefix="/v1/notifications/sms", tags=["notifications"])


@routes.post(
    "/receipts",
    response_model=Accepted,
    responses={
        401: problem(
            "no valid Standard Webhooks signature with the receipt secret (missing header, wrong secret, body "
            "changed, timestamp more than 5 minutes away); the detail says which"
        )
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _body_schema()}}}},
)
async def sms_receipts(request: Request, receipts: ReceiptsDep, key: KeyDep, clock: ClockDep) -> Accepted:
    """The SMS gateway reports what became of messages it accepted: each report marks its
    delivery (by out_id, our msg_id) delivered or failed. Reports that match no delivery are
    ignored, and the same report again changes nothing, so the gateway may send again."""
    body = await request.body()
    try:
        found = parse(request.headers, body, key, clock.now())
    except SignatureError as exc:
        raise Unauthorized(f"signature refused: {exc}") from None
    accepted = 0
    for r in found:
        if await receipts.receipt(r.out_id, r.biz_id, r.success, r.error):
            accepted += 1
        else:
            log.info(
                "SMS receipt for no delivery we know: out_id %s, biz_id %s",
                printable(r.out_id, 64),
                printable(r.biz_id, 128),
            )
    return Accepted(accepted=accepted)
