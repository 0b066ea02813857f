"""The notifier's consumer: lifecycle events of the cases topic become notifications for
residents, staff and ops, recorded with one pending delivery per channel in the event's own
transaction (`Notices`, notifier/repository.py); the delivery worker sends them after commit."""

from collections.abc import Sequence
from functools import partial

from notifier.channels import Channel
from notifier.domain import drafts_for
from notifier.repository import Notices
from services.district.events import (
    CaseAssigned,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CaseSlaBreached,
    CaseSlaWarning,
    Event,
)
from services.messaging.consumer import Handler
from services.messaging.envelope import Envelope
from services.messaging.transaction import Tx


def handlers(channels: Sequence[Channel]) -> dict[type[Event], Handler]:
    async def record(tx: Tx, envelope: Envelope, event: Event) -> None:
        """Lifecycle events become notifications for residents, staff and ops."""
        notices = tx.pending(Notices, partial(Notices, tx.session, channels), Notices.write)
        notices.add(event.case_id, drafts_for(event), tx.store.clock.now())

    return {
        CaseAssigned: record,
        CaseEscalated: record,
        CaseResolved: record,
        CaseReopened: record,
        CaseSlaWarning: record,
        CaseSlaBreached: record,
    }
