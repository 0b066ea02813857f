"""The notifier's consumer: each lifecycle event of the cases topic is recorded as the
notifications it makes for residents, staff and ops, with their deliveries, in the event's
own transaction (`Notices`, notifier/repository.py); the delivery worker sends them after
commit."""

from functools import partial

from notifier.repository import Notices, Telling
from services.district.events import (
    CaseAssigned,
    CaseClaimed,
    CaseClosed,
    CaseEscalated,
    CaseFollowed,
    CaseHolderChanged,
    CaseNoted,
    CaseReopened,
    CaseReported,
    CaseResolved,
    CaseSlaBreached,
    CaseSlaWarning,
    DeliveryFailed,
    Event,
)
from services.messaging.consumer import Handler, Lock
from services.messaging.envelope import Envelope
from services.messaging.transaction import Tx

TOLD = (
    CaseReported,
    CaseFollowed,
    CaseHolderChanged,
    CaseAssigned,
    CaseClaimed,
    CaseNoted,
    CaseResolved,
    CaseClosed,
    CaseReopened,
    CaseEscalated,
    CaseSlaWarning,
    CaseSlaBreached,
    DeliveryFailed,
)


def handlers(telling: Telling) -> dict[type[Event], Handler]:
    async def record(tx: Tx, envelope: Envelope, event: Event) -> None:
        """What the event tells whom, recorded with the batch's other events."""
        await _notices(tx, telling).record(envelope.id, event, envelope.time)

    return dict.fromkeys(TOLD, record)


def load_cases(telling: Telling) -> Lock:
    """The consumer's hook before a batch: what the notifier knows of the batch's cases and
    who follows them, in two queries."""

    async def load(tx: Tx, case_ids: list[str]) -> None:
        await _notices(tx, telling).load(case_ids)

    return load


def _notices(tx: Tx, telling: Telling) -> Notices:
    return tx.pending(Notices, partial(Notices, tx.session, telling, tx.store.clock.now()), Notices.write)
