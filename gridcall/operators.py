"""The operators' commands: tokens, staff accounts, Open311 keys, department adapters and dead
letters (`gridcall token|staff|open311-key|adapter|deadletter ...`), each against the database
the settings name, its schema brought up to date first. The `gridcall` command itself (run,
serve, migrate) is gridcall/cli.py."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from departments.adapters import signing
from departments.adapters.usecases import AdapterOps
from departments.bootstrap import store_of
from departments.schemas import StaffReach
from departments.usecases.staff import DEFAULT_DAYS, Accounts, StaffRole
from gridcall import migrate as migrations
from gridcall.services import BOOTSTRAP
from intake import keys
from services.district.clock import SystemClock
from services.district.errors import DomainError, Invalid
from services.district.events import Stream
from services.district.jurisdiction import Jurisdiction, JurisdictionError, load_jurisdiction
from services.district.policy import PolicyError
from services.messaging import deadletters
from services.messaging.consumer import Consumer
from services.runtime.context import build_context
from services.runtime.settings import SecretFileError, Settings
from services.storage.db import Database
from services.web.auth import Authenticator

T = TypeVar("T")
token_app = typer.Typer(help="Bearer tokens for staff and ops.", no_args_is_help=True)
open311_app = typer.Typer(help="API keys for Open311 clients (POST /open311/v2/requests).", no_args_is_help=True)
staff_app = typer.Typer(help="People: staff accounts in units and pools, and their tokens.", no_args_is_help=True)
adapter_app = typer.Typer(help="Department adapters: webhooks and topics to units' own systems.", no_args_is_help=True)
deadletter_app = typer.Typer(help="Records consumers could not handle: list them, re-drive them.", no_args_is_help=True)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  GRIDCALL_{'_'.join(map(str, e['loc'])).upper() or '?'}: {e['msg']}" for e in exc.errors()]
        typer.echo("gridcall: bad settings:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from None


def _made(secret: str, summary: str) -> None:
    """What a command made: said to the person on standard error, the bare token or key alone
    on standard output, so that `TOKEN=$(gridcall ...)` takes nothing else."""
    typer.echo(f"gridcall: {summary}", err=True)
    typer.echo(secret)


def _expiry(days: int) -> str:
    return f"expires {SystemClock().now() + timedelta(days=days):%Y-%m-%d %H:%M} UTC"


def _person(account: Any, days: int) -> str:
    return f"{account.name} ({account.staff_id}), {account.role} of {account.unit_id}; {_expiry(days)}"


@token_app.command("issue")
def token_issue(
    unit: Annotated[str | None, typer.Option(help="the unit (or pool) of the person the token names")] = None,
    ops: Annotated[bool, typer.Option("--ops", help="issue an ops token instead")] = False,
    name: Annotated[str, typer.Option(help="the person (made a handler of the unit if new)")] = "script",
    days: Annotated[int, typer.Option(min=1, help="days until it expires (at least 1)")] = DEFAULT_DAYS,
) -> None:
    """Print a bearer token: for a person of a unit (--unit, --name; a script gets its own
    "person", by default named "script") or for ops (--ops). Signed with GRIDCALL_SECRET_KEY or,
    where that is unset, the key `gridcall run` keeps in its data directory."""
    if ops == (unit is not None):
        typer.echo("gridcall: give exactly one of --unit UNIT_ID or --ops", err=True)
        raise typer.Exit(2)
    if unit is None:
        settings = load_settings()
        auth = _checked(lambda: authenticator_for(settings, load_jurisdiction(settings.jurisdiction_file)))
        _made(auth.issue("ops", name=name, ttl=timedelta(days=days)), f"an ops token named {name}; {_expiry(days)}")
        return

    async def issue(accounts: Accounts) -> tuple[str, str]:
        account = await accounts.named(unit, name, create=True)
        return accounts.token(account, days), f"a token for {_person(account, days)}"

    _made(*_with_accounts(issue))


@staff_app.command("add")
def staff_add(
    name: Annotated[str, typer.Option(help="the person's name, unique in the unit")],
    unit: Annotated[str | None, typer.Option(help="the person's unit")] = None,
    pool: Annotated[str | None, typer.Option(help="a volunteer pool: the person is its member")] = None,
    role: Annotated[StaffRole, typer.Option(help="handler or supervisor")] = StaffRole.HANDLER,
    days: Annotated[int, typer.Option(min=1, help="days until the token expires")] = DEFAULT_DAYS,
    email: Annotated[str | None, typer.Option(help="the person's own email address")] = None,
    phone: Annotated[str | None, typer.Option(help="the person's own mobile number")] = None,
    language: Annotated[str, typer.Option(help="their messages' language: zh-CN or en")] = "zh-CN",
    channel: Annotated[
        list[str] | None, typer.Option(help="email or sms: how they hear of the tickets they hold (repeatable)")
    ] = None,
) -> None:
    """Create a person's account and print their token (keep it: it is not stored)."""
    if (unit is None) == (pool is None):
        typer.echo("gridcall: give exactly one of --unit UNIT_ID or --pool POOL_ID", err=True)
        raise typer.Exit(2)
    place = unit or pool
    assert place is not None

    try:
        reach = StaffReach(email=email, phone=phone, language=language, channels=channel or []).reach()
    except ValidationError as exc:
        problems = "; ".join(f"--{str(e['loc'][0]).removesuffix('s')}: {e['msg']}" for e in exc.errors())
        typer.echo(f"gridcall: {problems}", err=True)
        raise typer.Exit(2) from None

    async def add(accounts: Accounts) -> tuple[str, str]:
        if pool is not None and (found := accounts.j.unit(pool)) is not None and found.kind != "pool":
            raise Invalid(f"{pool} is a {found.kind}, not a pool: use --unit {pool}")
        account = await accounts.add(place, name, role, reach)
        return accounts.token(
            account, days
        ), f"added {_person(account, days)}; the token follows (keep it: it is not stored)"

    _made(*_with_accounts(add))


@staff_app.command("list")
def staff_list(unit: Annotated[str | None, typer.Option(help="only this unit's people")] = None) -> None:
    """Print the accounts as JSON lines: id, unit, name, role, created, revoked, and their reach."""

    async def listing(accounts: Accounts) -> list[str]:
        return [json.dumps(dict(r._mapping), default=str, ensure_ascii=False) for r in await accounts.listing(unit)]

    for line in _with_accounts(listing):
        typer.echo(line)


@staff_app.command("revoke")
def staff_revoke(name_or_id: Annotated[str, typer.Argument(help="the account's id, or its name if unique")]) -> None:
    """Refuse the person's tokens from the next request on, on every replica."""

    async def revoke(accounts: Accounts) -> Any:
        return await accounts.revoke(name_or_id)

    row = _with_accounts(revoke)
    typer.echo(f"gridcall: revoked {row.name} ({row.staff_id}, {row.unit_id}) at {row.revoked_at:%Y-%m-%d %H:%M:%S}")


@adapter_app.command("secret")
def adapter_secret() -> None:
    """Print a fresh signing secret (whsec_…) for a unit's adapter: set it in the environment
    variable its `adapter.secret_env` names, and give it to the department's IT team."""
    typer.echo(signing.new_secret())


@adapter_app.command("redrive")
def adapter_redrive(
    unit: Annotated[str | None, typer.Option(help="the unit whose dead deliveries go out again")] = None,
    all_units: Annotated[bool, typer.Option("--all", help="every unit's dead deliveries")] = False,
) -> None:
    """Put dead webhook deliveries back to pending, attempts reset: each is sent once more."""
    if (unit is None) == (not all_units):
        typer.echo("gridcall: name one unit (--unit U) or every one (--all)", err=True)
        raise typer.Exit(2)
    count = _with_adapter_ops(lambda ops: ops.redrive_unit(unit))
    typer.echo(f"gridcall: {count} dead deliveries back to pending")


@adapter_app.command("enable")
def adapter_enable(unit: Annotated[str, typer.Option(help="the unit whose system switched it off (410)")]) -> None:
    """Switch an adapter on again after its system answered 410 Gone: its waiting deliveries go out."""
    state = _with_adapter_ops(lambda ops: ops.enable(unit))
    typer.echo(f"gridcall: the adapter of {state.unit_id} is on; {state.pending} deliveries pending")


def _with_adapter_ops(work: Callable[[AdapterOps], Awaitable[T]]) -> T:
    settings = load_settings()
    j = _checked(lambda: load_jurisdiction(settings.jurisdiction_file))
    try:
        return with_database(lambda db: work(AdapterOps(db, SystemClock(), j)), "departments")
    except DomainError as exc:
        typer.echo(f"gridcall: {exc.message}", err=True)
        raise typer.Exit(2) from None


def _checked(work: Callable[[], T]) -> T:
    try:
        return work()
    except (JurisdictionError, PolicyError, SecretFileError) as exc:
        typer.echo(f"gridcall: {exc}", err=True)
        raise typer.Exit(2) from None


def _with_accounts(work: Callable[[Accounts], Awaitable[T]]) -> T:
    """Run `work` with the staff accounts of the configured database; a refusal (no such unit,
    a name taken, no such person) is printed and exits 2."""
    settings = load_settings()
    j = _checked(lambda: load_jurisdiction(settings.jurisdiction_file))
    auth = _checked(lambda: authenticator_for(settings, j))
    try:
        clock = SystemClock()
        return with_database(
            lambda db: work(Accounts(db, clock, auth, j, store_of(db, clock, settings))), "departments"
        )
    except DomainError as exc:
        typer.echo(f"gridcall: {exc.message}", err=True)
        raise typer.Exit(2) from None


def authenticator_for(settings: Settings, j: Jurisdiction) -> Authenticator:
    return Authenticator(settings.signing_key(), SystemClock(), units=[u.id for u in j.units])


@open311_app.command("create")
def open311_key_create(name: Annotated[str, typer.Argument(help="who the key is for, e.g. the app's name")]) -> None:
    """Issue an API key and print it (only its hash is stored: keep it now)."""
    try:
        key = with_database(lambda db: keys.create_api_key(db, SystemClock(), name), "intake")
    except ValueError as exc:
        typer.echo(f"gridcall: {exc}", err=True)
        raise typer.Exit(2) from None
    _made(key, f"an Open311 API key for {name!r}; it does not expire (revoke: gridcall open311-key revoke {name!r})")


@open311_app.command("revoke")
def open311_key_revoke(name: str) -> None:
    """Stop accepting the named key."""
    if not with_database(lambda db: keys.revoke_api_key(db, name), "intake"):
        typer.echo(f"gridcall: no Open311 API key named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"gridcall: revoked the Open311 API key {name!r}")


ConsumerOption = Annotated[
    str | None, typer.Option(help="one consumer: its name (e.g. gridcall.dispatcher) or its service's")
]


@deadletter_app.command("list")
def deadletter_list(consumer: ConsumerOption = None) -> None:
    """Print the parked records as JSON, oldest first, with their errors and the count."""
    parked = _with_consumers(lambda consumers: deadletters.list_parked(consumers, consumer))
    typer.echo(parked.model_dump_json(indent=2))


@deadletter_app.command("redrive")
def deadletter_redrive(
    consumer: ConsumerOption = None,
    event_id: Annotated[str | None, typer.Option(help="only this event's parked record")] = None,
) -> None:
    """Put parked records back through their consumer once the fault is fixed (exits 1 if one still fails)."""
    result = _with_consumers(lambda consumers: deadletters.redrive(consumers, consumer, event_id))
    typer.echo(result.model_dump_json(indent=2))
    if result.failed:
        raise typer.Exit(1)


def create_topics(settings: Settings) -> list[str]:
    """The topics the services use, made on the broker where missing; their names."""

    async def run() -> list[str]:
        contexts = {name: build_context(settings, name="gridcall-setup", service=name) for name in BOOTSTRAP}
        try:
            own = [t for name, build in BOOTSTRAP.items() for t in build(contexts[name]).topics]
            names = list(dict.fromkeys([*(settings.topic(s) for s in Stream), *own]))
            await contexts["intake"].bus.ensure_topics(names)
            return names
        finally:
            for ctx in contexts.values():
                await ctx.db.dispose()

    return asyncio.run(run())


def _with_consumers(work: Callable[[list[Consumer]], Awaitable[T]]) -> T:
    """Run `work` with every service's consumer, built as the services build them, each on its
    service's database (the bus is not needed: handling only writes to the outbox)."""
    settings = load_settings()
    migrations.upgrade_services(settings)

    async def run() -> T:
        contexts = {name: build_context(settings, name="gridcall-cli", service=name) for name in BOOTSTRAP}
        try:
            return await work([c for name, build in BOOTSTRAP.items() for c in build(contexts[name]).consumers])
        finally:
            for ctx in contexts.values():
                await ctx.db.dispose()

    try:
        return asyncio.run(run())
    except deadletters.UnknownConsumer as exc:
        typer.echo(f"gridcall: {exc}", err=True)
        raise typer.Exit(2) from None


def with_database(work: Callable[[Database], Awaitable[T]], service: str) -> T:
    """Run `work` against `service`'s database, its schema brought up to date first."""
    settings = load_settings()
    migrations.upgrade_services(settings, service)

    async def run() -> T:
        db = Database(settings.db_url_of(service))
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())
