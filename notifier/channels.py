"""Delivery channels. Each takes one notification and raises if it could not deliver it."""

import logging
from typing import Any, Protocol

import httpx

from services.district.text import printable
from services.runtime.settings import Settings

log = logging.getLogger("gridcall.notifications")
# For callers without settings (tests); bootstrap passes the setting's value.
TIMEOUT: float = Settings.model_fields["notifier_timeout"].default


class Channel(Protocol):
    name: str

    async def send(self, notification: dict[str, Any]) -> None: ...


class LogChannel:
    name = "log"

    async def send(self, notification: dict[str, Any]) -> None:
        # The message carries staff notes and residents' words: escaped, so that a newline or an
        # ANSI escape in them cannot forge a log line or colour a terminal.
        log.info(
            "notify %s %s [%s] %s",
            *(printable(notification[k]) for k in ("audience", "recipient", "kind", "message")),
            extra={"service": "notifier", "case_id": notification.get("case_id")},
        )


class WebhookChannel:
    """POSTs each notification as JSON; any non-2xx answer is a failed attempt."""

    name = "webhook"

    def __init__(self, url: str, client: httpx.AsyncClient | None = None, *, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.client = client or httpx.AsyncClient(timeout=timeout)

    async def send(self, notification: dict[str, Any]) -> None:
        response = await self.client.post(self.url, json=notification)
        response.raise_for_status()
