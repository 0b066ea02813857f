"""Staff accounts: one person in one unit (a pool's members are accounts of the pool's unit),
a handler or a supervisor. A token names its account; the account is looked up on every
request, so revoking it refuses its tokens at once on every replica. The CLI
(`gridcall staff …`, `gridcall token issue --unit`) and the ops API use these functions."""

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic_core import PydanticCustomError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from departments.domain import TicketStatus
from departments.tables import staff, tickets
from services.district.clock import Clock
from services.district.errors import Conflict, Invalid, NotFound, Unauthorized
from services.district.events import CaseHolderChanged, Holder, Reach, StaffRevoked
from services.district.jurisdiction import Jurisdiction
from services.district.principal import Principal
from services.district.text import not_blank, words
from services.messaging.transaction import Store, Tx
from services.storage.db import Database
from services.web.auth import CHALLENGE, Authenticator

DEFAULT_DAYS = 30


class StaffRole(StrEnum):
    HANDLER = "handler"
    SUPERVISOR = "supervisor"


CHANNELS = ("email", "sms")


def reach_of(columns: Mapping[Any, Any]) -> Reach:
    """How the account's person is reached (its row's columns), as the notifier is told it."""
    return Reach(
        email=columns["email"],
        phone=columns["phone"],
        language=columns["language"],
        channels=tuple(columns["channels"].split()),
    )


def reach_values(reach: Reach) -> dict[str, Any]:
    """The account's columns for `reach`; a channel chosen without its address is refused."""
    unknown = sorted(set(reach.channels) - set(CHANNELS))
    if unknown:
        channels = f"channels may be {' and '.join(CHANNELS)}, not {', '.join(unknown)}"
        raise Invalid(channels, loc=("channels",), kind="unknown_channel")
    for channel, address in (("email", reach.email), ("sms", reach.phone)):
        if channel in reach.channels and not address:
            field = "email" if channel == "email" else "phone"
            raise Invalid(
                f"the {channel} channel needs an {field}: give one, or leave {channel} out",
                loc=(field,),
                kind="channel_needs_address",
            )
    return {
        "email": reach.email,
        "phone": reach.phone,
        "language": reach.language,
        "channels": " ".join(c for c in CHANNELS if c in reach.channels),
    }


class Accounts:
    """Staff accounts of one deployment, and the tokens that name them. With the service's
    `store`, a holder's new reach is told to the notifier for every ticket they hold."""

    def __init__(
        self, db: Database, clock: Clock, auth: Authenticator, jurisdiction: Jurisdiction, store: Store | None = None
    ) -> None:
        self.db, self.clock, self.auth, self.j, self.store = db, clock, auth, jurisdiction, store

    def token(self, account: Any, days: int = DEFAULT_DAYS) -> str:
        if days < 1:
            raise Invalid(f"a token lives at least one day, not {days}", loc=("body", "days"), kind="token_days")
        return self.auth.issue(
            "staff",
            unit_id=account.unit_id,
            staff_id=account.staff_id,
            name=account.name,
            duty=account.role,
            ttl=timedelta(days=days),
        )

    async def add(
        self, unit_id: str, name: str, role: StaffRole = StaffRole.HANDLER, reach: Reach | None = None
    ) -> Any:
        """A new person in `unit_id`; names are unique within a unit, so they can be revoked by name."""
        if self.j.unit(unit_id) is None:
            where = f"no unit {unit_id!r} in {self.j.district.name} (GET /v1/units lists them)"
            raise Invalid(where, loc=("unit_id",), kind="unknown_unit")
        try:
            name = not_blank(words(name))
        except PydanticCustomError as exc:
            raise Invalid(f"name {exc.message()}", loc=("name",), kind=exc.type) from None
        staff_id = f"st-{secrets.token_hex(6)}"
        row = {
            "staff_id": staff_id,
            "unit_id": unit_id,
            "name": name,
            "role": StaffRole(role).value,
            "created_at": self.clock.now(),
            "revoked_at": None,
            **reach_values(reach or Reach()),
        }
        try:
            async with self.db.sessions() as s, s.begin():
                await s.execute(staff.insert().values(**row))
        except IntegrityError:
            raise Conflict(
                f"{unit_id} already has a person named {name!r}: give another name, or issue them a new token "
                f"with: gridcall token issue --unit {unit_id} --name {name!r}"
            ) from None
        return await self.get(staff_id)

    async def set_reach(self, staff_id: str, reach: Reach) -> Any:
        """How the person wants to be reached from now on; the notifier is told at once for each
        ticket they hold (a `CaseHolderChanged` per ticket, in the same transaction)."""
        assert self.store is not None, "set_reach needs the service's store"
        values = reach_values(reach)
        async with self.store.transaction() as tx:
            found = await tx.session.execute(
                update(staff).where(staff.c.staff_id == staff_id).values(**values).returning(staff.c.name)
            )
            row = found.first()
            if row is None:
                raise NotFound(f"no staff account {staff_id!r}")
            await _tell_holds(tx, staff_id, Holder(staff_id=staff_id, name=row.name, reach=reach_of(values)))
        return await self.get(staff_id)

    async def get(self, staff_id: str) -> Any:
        async with self.db.sessions() as s:
            row = (await s.execute(select(staff).where(staff.c.staff_id == staff_id))).first()
        if row is None:
            raise NotFound(f"no staff account {staff_id!r}")
        return row

    async def named(self, unit_id: str, name: str, *, create: bool = False, role: StaffRole = StaffRole.HANDLER) -> Any:
        """The person called `name` in `unit_id` (made, with `role`, if `create` and there is none)."""
        async with self.db.sessions() as s:
            row = (
                await s.execute(select(staff).where(staff.c.unit_id == unit_id, staff.c.name == name.strip()))
            ).first()
        if row is not None:
            if row.revoked_at is not None:
                raise Conflict(f"{name!r} of {unit_id} was revoked on {row.revoked_at:%Y-%m-%d}; add a new account")
            return row
        if not create:
            raise NotFound(f"no person named {name!r} in {unit_id}")
        return await self.add(unit_id, name, role)

    async def listing(self, unit_id: str | None = None) -> list[Any]:
        query = select(staff).order_by(staff.c.unit_id, staff.c.name)
        if unit_id is not None:
            query = query.where(staff.c.unit_id == unit_id)
        async with self.db.sessions() as s:
            return list(await s.execute(query))

    async def revoke(self, name_or_id: str) -> Any:
        """Revoke an account by its id, or by its name where one account has that name. The
        notifier is told that nobody holds the tickets the person held (with the service's
        store), so nothing more about them goes to their own email or phone."""
        async with self._transaction() as (s, tx):
            found = list(
                await s.execute(
                    select(staff)
                    .where(or_(staff.c.staff_id == name_or_id, staff.c.name == name_or_id))
                    .with_for_update()
                )
            )
            if not found:
                raise NotFound(f"no staff account with the id or name {name_or_id!r} (gridcall staff list)")
            if len(found) > 1:
                ids = ", ".join(f"{r.staff_id} ({r.unit_id})" for r in found)
                raise Conflict(f"{len(found)} people are named {name_or_id!r}: revoke one by its id: {ids}")
            (row,) = found
            if row.revoked_at is None:
                await s.execute(
                    update(staff).where(staff.c.staff_id == row.staff_id).values(revoked_at=self.clock.now())
                )
                if tx is not None:
                    await _tell_holds(tx, row.staff_id, None)
            if tx is not None:  # again on a second revoke: how an account revoked before intake heard of it gets there
                tx.emit(StaffRevoked(case_id=f"staff:{row.staff_id}", staff_id=row.staff_id, unit_id=row.unit_id))
        return await self.get(row.staff_id)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[tuple[AsyncSession, Tx | None]]:
        """The store's transaction (which may emit events), or the database's without one."""
        if self.store is not None:
            async with self.store.transaction() as tx:
                yield tx.session, tx
        else:
            async with self.db.transaction() as s:
                yield s, None

    async def standing(self, principal: Principal) -> Principal:
        """The caller, if its account still stands: ops tokens need no account; a staff token's
        account must exist, in the token's unit, and not be revoked."""
        if principal.role != "staff":
            return principal
        async with self.db.sessions() as s:
            row = (
                await s.execute(
                    select(staff.c.unit_id, staff.c.revoked_at).where(staff.c.staff_id == principal.staff_id)
                )
            ).first()
        if row is None or row.unit_id != principal.unit_id:
            raise Unauthorized(
                "invalid token: it names no staff account of this deployment; ask for a new one",
                headers=CHALLENGE,
                code="token_invalid",
            )
        if row.revoked_at is not None:
            raise Unauthorized(
                "this person's account was revoked: the token is no longer accepted",
                headers=CHALLENGE,
                code="token_revoked",
            )
        return principal


async def _tell_holds(tx: Tx, staff_id: str, holder: Holder | None) -> None:
    """Tell the notifier who holds each ticket the person holds now: `holder` (None: nobody)."""
    held = await tx.session.execute(
        select(tickets.c.case_id, tickets.c.ticket_id, tickets.c.unit_id)
        .where(tickets.c.claimed_by_id == staff_id, tickets.c.status == TicketStatus.CLAIMED.value)
        .order_by(tickets.c.ticket_id)
        .with_for_update()  # an unclaim meanwhile commits first, and its ticket is no longer here
    )
    for t in held:
        tx.emit(CaseHolderChanged(case_id=t.case_id, ticket_id=t.ticket_id, unit_id=t.unit_id, holder=holder))
