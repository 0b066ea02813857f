import asyncio
import gc
import importlib.util
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
import uvicorn
from pydantic import ValidationError

from gridcall import migrate as migrations
from gridcall.app import build_app
from gridcall.services import BOOTSTRAP
from intake import keys
from services import deadletters
from services.auth import Authenticator
from services.clock import SystemClock
from services.db import Database
from services.jurisdiction import Jurisdiction, JurisdictionError, load_jurisdiction
from services.messaging import Consumer
from services.policy import PolicyError
from services.runtime import build_context
from services.settings import SECRET_FILE, SecretFileError, Settings

T = TypeVar("T")
app = typer.Typer(help="gridcall: case routing for grid-governance service hotlines.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for staff and ops.", no_args_is_help=True)
app.add_typer(token_app, name="token")
open311_app = typer.Typer(help="API keys for Open311 clients (POST /open311/v2/requests).", no_args_is_help=True)
app.add_typer(open311_app, name="open311-key")
deadletter_app = typer.Typer(help="Records consumers could not handle: list them, re-drive them.", no_args_is_help=True)
app.add_typer(deadletter_app, name="deadletter")


class ServiceName(StrEnum):
    intake = "intake"
    dispatcher = "dispatcher"
    departments = "departments"
    notifier = "notifier"


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  GRIDCALL_{'_'.join(map(str, e['loc'])).upper() or '?'}: {e['msg']}" for e in exc.errors()]
        typer.echo("gridcall: bad settings:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from None


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _serve(settings: Settings, names: list[str] | None, port: int, *, welcome: bool = False) -> None:
    try:
        api = build_app(settings, names)
    except (JurisdictionError, PolicyError, SecretFileError) as exc:
        typer.echo(f"gridcall: {exc}", err=True)
        raise typer.Exit(2) from None
    if welcome:
        _welcome(settings, port)
    _freeze_start_up_objects()
    loop, http = _server_parts()
    logging.getLogger("gridcall").info("serving with the %s event loop and the %s HTTP parser", loop, http)
    uvicorn.run(api, host=settings.host, port=port, log_level="info", access_log=False, loop=loop, http=http)


def _freeze_start_up_objects() -> None:
    """Keep what start-up built (modules, the app, its schemas and compiled statements: some
    150,000 objects that live as long as the process) out of the collector's way. Otherwise
    every full collection under load walks them all again: in intake that was a pause of about
    100 ms every half second, most of its p99."""
    gc.collect()
    gc.freeze()


def _server_parts() -> tuple[str, str]:
    """uvloop and httptools (what uvicorn[standard] installs), named rather than left to
    uvicorn's "auto", so the log says which ones run; asyncio and h11 where they are missing."""
    found = importlib.util.find_spec
    return ("uvloop" if found("uvloop") else "asyncio"), ("httptools" if found("httptools") else "h11")


@app.command()
def run(
    port: Annotated[int | None, typer.Option(help="HTTP port (default GRIDCALL_PORT or 8000)")] = None,
) -> None:
    """Embedded mode: all four services in one process, one port, on a local SQLite file."""
    _logging()
    settings = _settings()
    migrations.upgrade(settings.db_url)
    _serve(settings, None, port or settings.port, welcome=True)


@app.command()
def serve(
    service: ServiceName,
    port: Annotated[int | None, typer.Option(help="HTTP port (default GRIDCALL_PORT or 8000)")] = None,
) -> None:
    """Distributed mode: run one service in this process (run `gridcall migrate` first)."""
    _logging()
    settings = _settings()
    _serve(settings, [service.value], port or settings.port)


@app.command()
def migrate(
    service: Annotated[ServiceName | None, typer.Argument(help="only this service's tables")] = None,
) -> None:
    """Bring the database schema up to date."""
    settings = _settings()
    migrations.upgrade(settings.db_url, service.value if service else None)
    typer.echo(f"gridcall: schema up to date ({service.value if service else 'all services'})")


@token_app.command("issue")
def token_issue(
    unit: Annotated[str | None, typer.Option(help="the unit the staff token acts for")] = None,
    ops: Annotated[bool, typer.Option("--ops", help="issue an ops token instead")] = False,
    name: Annotated[str | None, typer.Option(help="who holds it (shown as claimed_by)")] = None,
    days: Annotated[int, typer.Option(min=1, help="days until it expires (at least 1)")] = 365,
) -> None:
    """Print a bearer token for a unit's staff (--unit) or for ops (--ops), signed with
    GRIDCALL_SECRET_KEY or, where that is unset, the key `gridcall run` keeps in its data directory."""
    settings = _settings()
    if ops == (unit is not None):
        typer.echo("gridcall: give exactly one of --unit UNIT_ID or --ops", err=True)
        raise typer.Exit(2)
    try:
        j = load_jurisdiction(settings.jurisdiction_file)
        auth = _authenticator(settings, j)
    except (JurisdictionError, SecretFileError) as exc:
        typer.echo(f"gridcall: {exc}", err=True)
        raise typer.Exit(2) from None
    if unit is not None and j.unit(unit) is None:
        typer.echo(f"gridcall: no unit {unit!r} in {settings.jurisdiction_file} (GET /v1/units lists them)", err=True)
        raise typer.Exit(2)
    now = SystemClock().now()
    typer.echo(auth.issue("ops" if ops else "staff", unit_id=unit, name=name, now=now, ttl=timedelta(days=days)))


def _authenticator(settings: Settings, j: Jurisdiction) -> Authenticator:
    return Authenticator(settings.signing_key(), units=[u.id for u in j.units])


@open311_app.command("create")
def open311_key_create(name: Annotated[str, typer.Argument(help="who the key is for, e.g. the app's name")]) -> None:
    """Issue an API key and print it (only its hash is stored: keep it now)."""
    try:
        key = _with_database(lambda db: keys.create_api_key(db, SystemClock(), name))
    except ValueError as exc:
        typer.echo(f"gridcall: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(key)


@open311_app.command("revoke")
def open311_key_revoke(name: str) -> None:
    """Stop accepting the named key."""
    if not _with_database(lambda db: keys.revoke_api_key(db, name)):
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


def _with_consumers(work: Callable[[list[Consumer]], Awaitable[T]]) -> T:
    """Run `work` with every service's consumer, built as the services build them, against
    the configured database (the bus is not needed: handling only writes to the outbox)."""
    settings = _settings()
    migrations.upgrade(settings.db_url)

    async def run() -> T:
        ctx = build_context(settings, name="gridcall-cli")
        try:
            return await work([c for build in BOOTSTRAP.values() for c in build(ctx).consumers])
        finally:
            await ctx.db.dispose()

    try:
        return asyncio.run(run())
    except deadletters.UnknownConsumer as exc:
        typer.echo(f"gridcall: {exc}", err=True)
        raise typer.Exit(2) from None


def _with_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` against the configured database, schema brought up to date first."""
    settings = _settings()
    migrations.upgrade(settings.db_url)

    async def run() -> T:
        db = Database(settings.db_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _welcome(settings: Settings, port: int) -> None:
    j = load_jurisdiction(settings.jurisdiction_file)
    auth = _authenticator(settings, j)
    now = SystemClock().now()
    grid = j.grids[0]
    c = grid.shape.centroid
    url = f"http://{settings.host}:{port}"
    location = {"lat": round(c.y, 4), "lon": round(c.x, 4)}
    example = json.dumps({"category": "garbage", "description": "Bags piled in the stairwell", "location": location})
    typer.echo(
        f"""
gridcall (embedded) on {url}   data in {settings.var_dir.resolve()}
  API docs:  {url}/docs

File a report:
  curl -s -X POST {url}/v1/reports -H 'Content-Type: application/json' \\
    -d '{example}'
Follow it:
  curl -s {url}/v1/cases/CASE_ID -H 'X-Tracking-Token: TRACKING_TOKEN'

Demo staff token for {grid.unit_id} (the unit of grid {grid.id}):
  {auth.issue("staff", unit_id=grid.unit_id, now=now, ttl=timedelta(days=30))}
  curl -s {url}/v1/units/{grid.unit_id}/tickets -H 'Authorization: Bearer TOKEN'
Ops token:
  {auth.issue("ops", now=now, ttl=timedelta(days=30))}
More tokens: .venv/bin/gridcall token issue --unit UNIT_ID   (units: GET {url}/v1/units)
Tokens are signed with {_secret_source(settings)}.
"""
    )


def _secret_source(settings: Settings) -> str:
    if settings.secret_key is not None:
        return "GRIDCALL_SECRET_KEY"
    return f"the key in {(settings.var_dir / SECRET_FILE).resolve()} (made on first run; delete it to revoke them all)"


if __name__ == "__main__":
    app()
