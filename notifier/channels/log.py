"""Development's channel (what `make run` uses): each message one log line."""

import logging

from notifier.channels.bodies import LogBody, masked, parsed
from services.delivery.sender import Item, Outcome, Result
from services.district.text import printable

log = logging.getLogger("gridcall.notifications")


class LogSender:
    """Development's channel (what `make run` uses): each message one line on the
    gridcall.notifications logger, everything in it a person may have written escaped by
    printable(), so a note cannot forge a line or colour a terminal."""

    channel = "log"
    resend_unknown = True

    async def send(self, item: Item) -> Result:
        body = parsed(LogBody, item)
        if isinstance(body, Result):
            return body
        about = f"{printable(body.subject)}: " if body.subject else ""
        log.info(
            "notify %s %s [%s] %s%s",
            printable(body.audience, 40),
            printable(masked(item.destination), 100),
            printable(item.kind, 64),
            about,
            printable(body.text, 2000),
            extra={"service": "notifier", "case_id": item.case_id},
        )
        return Result(Outcome.DELIVERED)

    async def close(self) -> None:
        return None
