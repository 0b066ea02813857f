"""The dispatcher's consumer: every event is handled alike. The consumer's lock loads the
batch's cases (locked, in case-id order) into the transaction's `Batch`; the handler takes
its case from there, asks the pure `Router` what happens, and puts the decision back. The
batch writes every change of the transaction at once, before commit (dispatcher/repository.py)."""

import uuid

from dispatcher.domain import Router, Step
from dispatcher.repository import batch
from services.district.events import (
    CaseCancelRequested,
    CaseReported,
    CaseSatisfactionAnswered,
    Event,
    TicketClaimed,
    TicketEscalated,
    TicketNoted,
    TicketReassigned,
    TicketResolved,
    TicketReturned,
    TicketUnclaimed,
    TicketWhistled,
)
from services.messaging.consumer import Handler, Lock
from services.messaging.envelope import Envelope
from services.messaging.transaction import Tx


def new_id() -> str:
    return str(uuid.uuid4())


def steps(router: Router) -> dict[type[Event], Step]:
    return {
        CaseReported: router.report,
        TicketClaimed: router.claim,
        TicketUnclaimed: router.unclaim,
        TicketNoted: router.note,
        TicketReassigned: router.reassign,
        TicketResolved: router.resolve,
        TicketEscalated: router.escalate,
        TicketReturned: router.return_,
        TicketWhistled: router.whistle,
        CaseSatisfactionAnswered: router.satisfaction,
        CaseCancelRequested: router.cancel,
    }


def handlers(router: Router) -> dict[type[Event], Handler]:
    step = steps(router)

    async def route(tx: Tx, envelope: Envelope, event: Event) -> None:
        cases = await batch(tx, router, [event.case_id])
        cases.put(step[type(event)](cases.get(event.case_id), event, tx.store.clock.now(), new_id))

    return dict.fromkeys(step, route)


def lock_cases(router: Router) -> Lock:
    """The consumer's lock: the batch's cases, locked in case-id order (as the timer worker
    locks them) and loaded, before any of its events is handled."""

    async def lock(tx: Tx, case_ids: list[str]) -> None:
        await batch(tx, router, case_ids)

    return lock
