"""Delivery channels. Each takes one notification and raises if it could not deliver it."""

import logging
from typing import Any, Protocol

import httpx

log = logging.getLogger("gridcall.notifications")


class Channel(Protocol):
    name: str

    async def send(self, notification: dict[str, Any]) -> None: ...


class LogChannel:
    name = "log"

    async def send(self, notification: dict[str, Any]) -> None:
        log.info(
            "notify %s %s [%s] %s",
            notification["audience"],
            notification["recipient"],
            notification["kind"],
            notification["message"],
        )


class WebhookChannel:
    """POSTs each notification as JSON; any non-2xx answer is a failed attempt."""

    name = "webhook"

    def __init__(self, url: str, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.client = client or httpx.AsyncClient(timeout=5.0)

    async def send(self, notification: dict[str, Any]) -> None:
        response = await self.client.post(self.url, json=notification)
        response.raise_for_status()
