"""What residents and ops do with the notifier: a resident stops the messages of a case (by
the link in each message, or with their tracking token), ops read what was told and re-drive
what died."""

import hmac
from datetime import datetime

from sqlalchemy import select, update

from notifier.repository import PUSHED, link_signature, token_hash
from notifier.tables import deliveries, followers
from services.delivery.tables import State
from services.district.errors import NotFound
from services.storage.db import Database

NOT_FOLLOWING = "no such follower: the link or the token is wrong, or the case is not followed"
# What an unsubscribe stops: all that has not gone, including what ops could re-drive.
WAITING = (State.CREATED.value, State.TEMPORARY_FAILURE.value, State.DEAD.value, State.PERMANENT_FAILURE.value)


async def unsubscribe_by_link(db: Database, key: bytes, report_id: str, signature: str, now: datetime) -> str:
    """The link in a message: its signature proves it was made for this follower."""
    if not hmac.compare_digest(link_signature(key, report_id), signature):
        raise NotFound(NOT_FOLLOWING)
    return await _stop(db, followers.c.report_id == report_id, now)


async def unsubscribe_by_token(db: Database, case_id: str, token: str, now: datetime) -> str:
    """An app: the case's tracking token proves who the resident is."""
    return await _stop(db, (followers.c.case_id == case_id) & (followers.c.token_hash == token_hash(token)), now)


async def _stop(db: Database, who: object, now: datetime) -> str:
    """The follower hears nothing more of the case: messages still waiting for them (held by
    quiet hours, or to be retried) are suppressed too. Stopping twice is stopping once."""
    async with db.transaction() as s:
        row = (await s.execute(select(followers).where(who).with_for_update())).first()  # type: ignore[arg-type]
        if row is None:
            raise NotFound(NOT_FOLLOWING)
        if row.unsubscribed_at is None:
            await s.execute(update(followers).where(followers.c.report_id == row.report_id).values(unsubscribed_at=now))
        theirs = [f"{row.case_id}/follower:{row.report_id}/{c.value}" for c in PUSHED]
        await s.execute(
            update(deliveries)
            .where(deliveries.c.sequence.in_(theirs), deliveries.c.state.in_(WAITING))
            .values(state=State.SUPPRESSED.value, reason="unsubscribed", next_attempt_at=now)
        )
        return str(row.case_id)
