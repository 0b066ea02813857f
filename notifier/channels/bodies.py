"""What a delivery's body holds, per channel (the notifier writes it as JSON in these shapes; a
body that is not one is a permanent failure, found before anything is sent), how a destination
may be shown in a log, and the error a channel's start-up check raises."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from services.delivery.sender import Item, Outcome, Result
from services.district.text import describe as describe_char
from services.district.text import printable

CLOUDEVENTS = "application/cloudevents+json"
# A language tag as Content-Language takes it (RFC 5646, loosely): zh-CN, en, zh-Hans-CN.
LANGUAGE_TAG = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class NotReady(RuntimeError):
    """A channel that cannot work as configured: the text names the server or the setting, and
    what failed. Start-up raises it rather than run with a channel every message would fail on."""


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
