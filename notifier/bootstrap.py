"""Wires the notifier from a Context: what words and addresses messages (`Telling`: the
templates, the district's names, the policy, the channels that are on and the units' and ops'
addresses), the consumer of the cases topic, the kernel's delivery worker over the channels
(notifier/channels/), the units' digests, what the pruner deletes of what was told, and the
routes (ops, residents' unsubscribing, the SMS provider's receipts). A missing template or SMS
code, or an SMTP server that cannot be reached as configured, fails start-up naming it."""

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

from sqlalchemy import exists

from notifier import api, channels, receipts, tables
from notifier.domain import Names
from notifier.handlers import handlers, load_cases
from notifier.messages import Channel, Kind, Messages
from notifier.repository import Outlets, Telling
from notifier.workers import Digests, failed
from services.delivery import signing
from services.delivery.ops import DeliveryOps
from services.delivery.tables import retention
from services.delivery.worker import Worker, receipt
from services.district.events import Stream
from services.runtime.context import Context, ServiceParts
from services.runtime.lifecycle import Stop
from services.runtime.settings import Settings
from services.storage.pruning import Horizon

NAME = "notifier"
log = logging.getLogger(__name__)


def outlets(settings: Settings, ctx: Context, on: set[Channel]) -> Outlets:
    ops = tuple((Channel.EMAIL, a) for a in settings.ops_email) + tuple((Channel.SMS, p) for p in settings.ops_phone)
    return Outlets(
        channels=frozenset(on),
        units={u.id: u.notify for u in ctx.jurisdiction.units if u.notify is not None},
        ops=ops,
        public_url=settings.public_url,
        link_key=settings.signing_key().encode(),
    )


def bootstrap(ctx: Context) -> ServiceParts:
    settings = ctx.settings
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    senders = channels.configured(settings, ctx.clock)
    on = {Channel(name) for name in senders}
    if on & {Channel.EMAIL, Channel.SMS}:
        on.discard(Channel.LOG)  # the log is for development: where real channels are on, it is off
        senders.pop(Channel.LOG.value)
    messages = Messages(
        ctx.policy.calendar.zone,
        _codes(settings.sms_templates) if Channel.SMS in on else None,
        settings.sms_sign_name or "",
        sms_codes_en=_codes(settings.sms_templates_en) if settings.sms_templates_en else None,
    )
    messages.check()
    telling = Telling(messages, Names(ctx.jurisdiction, ctx.policy), ctx.policy, outlets(settings, ctx, on))
    consumer = ctx.consumer(NAME, store, handlers(telling), [Stream.CASES], lock=load_cases(telling))
    worker = Worker(
        ctx.db,
        ctx.clock,
        tables.deliveries,
        senders,
        service=NAME,
        schedule=settings.retry_schedule,
        receipt_wait=settings.delivery_receipt_wait,
        lease=settings.notifier_lease,
        interval=settings.relay_interval,
        metrics=ctx.metrics,
        on_failed=failed(telling),
    )
    ctx.metrics.probe(worker.gauges)
    digests = Digests(ctx.db, ctx.clock, telling, interval=max(settings.relay_interval, 1.0))
    ops = DeliveryOps(ctx.db, ctx.clock, tables.deliveries)
    key = signing.key_of(settings.sms_receipt_secret.get_secret_value()) if settings.sms_receipt_secret else None
    routes = api.router(ctx.db, ctx.clock, ops, telling.outlets.link_key)
    if key is not None:
        to_kernel = partial(receipt, ctx.db, tables.deliveries, ctx.clock, settings.retry_schedule)
        routes.include_router(receipts.router(Receipts(to_kernel), key, ctx.clock))

    def deliver(stop: Stop) -> Awaitable[None]:
        return worker.run(stop)

    def digest(stop: Stop) -> Awaitable[None]:
        return digests.run(stop)

    checks = [s.check for s in senders.values() if hasattr(s, "check")]
    log.info("notifier channels: %s", ", ".join(sorted(c.value for c in on)))
    kept = horizons(timedelta(days=settings.delivery_retention_days))
    parts = ServiceParts(
        NAME, routes, store, consumers=[consumer], workers=[deliver, digest], checks=checks, horizons=kept
    )
    parts.extras |= {"deliveries": worker, "digests": digests}  # their one-round methods, for tests
    return parts


def horizons(keep: timedelta) -> list[Horizon]:
    """What the pruner deletes: finished deliveries `keep` after they finished, then the
    notifications older than `keep` that have none left (one with a delivery still waiting or
    dead stays, and `GET /v1/notifications` shows it whole). A notification's key, like a
    delivery's msg_id, is what refuses a redelivered event's second message: `keep` is never
    shorter than the inbox's horizon (settings)."""
    n, d = tables.notifications, tables.deliveries
    return [retention(d, keep), Horizon(n, n.c.created_at, keep, where=~exists().where(d.c.ref == n.c.key))]


class Receipts:
    """The SMS provider's receipts, into the kernel's deliveries table."""

    def __init__(self, mark: Callable[..., Awaitable[bool]]) -> None:
        self.mark = mark

    async def receipt(self, msg_id: str, provider_ref: str | None, delivered: bool, error: str | None) -> bool:
        return await self.mark(msg_id=msg_id, provider_ref=provider_ref, delivered=delivered, error=error)


def _codes(raw: dict[str, str]) -> dict[Kind, str]:
    """The settings' template codes by kind; a kind gridcall does not know fails start-up."""
    unknown = sorted(set(raw) - {k.value for k in Kind})
    if unknown:
        raise ValueError(f"GRIDCALL_SMS_TEMPLATES names kinds gridcall does not send: {', '.join(unknown)}")
    return {Kind(k): v for k, v in raw.items()}
