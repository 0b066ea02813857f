"""Staff accounts for tests: a handler in every unit of the demo district (and, asked for, a
supervisor), made in the test's database as `gridcall staff add` makes them, and a token
factory over them: `token(unit_id)` for that unit's handler, `token()` for ops."""

import asyncio
from collections.abc import Callable, Iterable
from datetime import timedelta

import httpx

from departments.usecases.staff import Accounts, StaffRole
from gridcall import migrate as migrations
from services.district.clock import Clock, SystemClock
from services.district.jurisdiction import Jurisdiction, load_jurisdiction
from services.runtime.settings import Settings
from services.storage.db import Database
from services.web.auth import Authenticator

Tokens = Callable[..., str]


def demo_jurisdiction() -> Jurisdiction:
    return load_jurisdiction(Settings().jurisdiction_file)


async def enrol(
    db_url: str,
    secret: str,
    units: Iterable[str] | None = None,
    role: StaffRole = StaffRole.HANDLER,
    *,
    clock: Clock | None = None,
) -> Tokens:
    """A person of `role` in each unit (all the district's by default), made if missing; the
    schema must be in place (a started app, or `migrations.upgrade`). `clock`: the app's, which
    dates the accounts and the tokens (the wall clock's by default)."""
    j = demo_jurisdiction()
    clock = clock or SystemClock()
    auth = Authenticator(secret, clock, units=[u.id for u in j.units])
    db = Database(db_url)
    try:
        accounts = Accounts(db, clock, auth, j)
        made = {}
        for unit_id in units if units is not None else [u.id for u in j.units]:
            made[unit_id] = await accounts.named(unit_id, f"{role.value} of {unit_id}", create=True, role=role)
    finally:
        await db.dispose()

    def token(unit_id: str | None = None) -> str:
        if unit_id is None:
            return auth.issue("ops", ttl=timedelta(days=30))
        return accounts.token(
            made[unit_id], days=30
        )  # as `gridcall staff add` does: long enough for tests that move the clock days on

    return token


def enrol_now(db_url: str, secret: str, units: Iterable[str] | None = None) -> Tokens:
    """`enrol` from synchronous code (a sync fixture), with the schema brought up to date first."""
    migrations.upgrade(db_url)
    return asyncio.run(enrol(db_url, secret, units))


def signed(auth: Authenticator, unit_id: str | None = None) -> str:
    """A correctly signed token with no account behind it: enough for services that check the
    signature alone (intake's household flag); departments refuses it (401)."""
    if unit_id is None:
        return auth.issue("ops", ttl=timedelta(hours=1))
    return auth.issue("staff", unit_id=unit_id, staff_id=f"st-unenrolled-{unit_id}", ttl=timedelta(hours=1))


async def person(client: httpx.AsyncClient, ops_token: str, unit_id: str, name: str, role: str = "handler") -> str:
    """A new account made over HTTP as ops makes one (`POST /v1/staff`); its token."""
    r = await client.post(
        "/v1/staff",
        headers={"Authorization": f"Bearer {ops_token}"},
        json={"unit_id": unit_id, "name": name, "role": role},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])
