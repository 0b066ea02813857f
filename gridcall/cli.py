"""The `gridcall` command: `run` (every service in one process, embedded), `serve` (one service),
`migrate`; the operators' command groups (gridcall/operators.py) hang from it."""

import gc
import importlib.util
import json
import logging
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
import uvicorn

from departments.usecases.staff import Accounts, StaffRole
from gridcall import migrate as migrations
from gridcall.app import build_app
from gridcall.operators import (
    adapter_app,
    authenticator_for,
    create_topics,
    deadletter_app,
    load_settings,
    open311_app,
    staff_app,
    token_app,
    with_database,
)
from services.district.clock import SystemClock
from services.district.jurisdiction import JurisdictionError, load_jurisdiction
from services.district.policy import PolicyError
from services.runtime import logs
from services.runtime.drain import IN_FLIGHT_SECONDS, Server
from services.runtime.settings import SECRET_FILE, SecretFileError, Settings

T = TypeVar("T")
app = typer.Typer(help="gridcall: case routing for grid-governance service hotlines.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(open311_app, name="open311-key")
app.add_typer(staff_app, name="staff")
app.add_typer(adapter_app, name="adapter")
app.add_typer(deadletter_app, name="deadletter")


class ServiceName(StrEnum):
    intake = "intake"
    dispatcher = "dispatcher"
    departments = "departments"
    notifier = "notifier"


def _logging(settings: Settings, service: str = "gridcall") -> None:
    logs.configure(service, settings.log_format)


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
    # log_config=None: uvicorn's own lines go through the root handler, as JSON when the rest are.
    config = uvicorn.Config(
        api,
        host=settings.host,
        port=port,
        log_level="info",
        log_config=None,
        access_log=False,
        loop=loop,
        http=http,
        timeout_graceful_shutdown=IN_FLIGHT_SECONDS,
        # A client's address is the peer's, unless the peer is a proxy named as trusted.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    server = Server(config, api.state.draining, settings.shutdown_drain)
    server.run()
    if not server.started:
        raise typer.Exit(3)  # as uvicorn.run: the port was taken, or the start-up failed


def _freeze_start_up_objects() -> None:
    """Keep what start-up built (modules, the app, its schemas and compiled statements: some
    150,000 objects that live as long as the process) out of the collector's way. Otherwise
    every full collection under load walks them all again: in intake that was a pause of about
    100 ms every half second, most of its p99."""
    gc.collect()
    gc.freeze()


def _server_parts() -> tuple[str, str]:
    """asyncio's event loop, and httptools (what uvicorn[standard] installs; h11 where it is
    missing), named rather than left to uvicorn's "auto", so the log says which ones run.

    Not uvloop: where asyncio drops a write to a connection that has just closed, uvloop raises
    RuntimeError, which aiokafka does not expect (aio-libs/aiokafka#1038, open). With the broker's
    connections reset, that error ended a consumer's fetcher task, and the consumer took nothing
    more until the process stopped, without a word: tests/faults, "broker connections reset",
    100 of 900 accepted reports never reached a handler in 5 runs (`make faults`). It can end a
    producer's sender or a group coordinator's task the same way. uvloop served intake 3% faster
    (1,033-1,054 against 990-1,028 reports a second), within the noise of a run."""
    found = importlib.util.find_spec
    return "asyncio", ("httptools" if found("httptools") else "h11")


@app.command()
def run(
    port: Annotated[int | None, typer.Option(help="HTTP port (default GRIDCALL_PORT or 8000)")] = None,
) -> None:
    """Embedded mode: all four services in one process, one port, on a local SQLite file."""
    settings = load_settings()
    _logging(settings)
    migrations.upgrade(settings.db_url)
    port = port or settings.port
    if "public_url" not in settings.model_fields_set:  # the links in messages lead back here
        settings = settings.model_copy(update={"public_url": f"http://{settings.host}:{port}"})
    _serve(settings, None, port, welcome=True)


@app.command()
def serve(
    service: ServiceName,
    port: Annotated[int | None, typer.Option(help="HTTP port (default GRIDCALL_PORT or 8000)")] = None,
) -> None:
    """Distributed mode: run one service in this process (run `gridcall migrate` first)."""
    settings = load_settings()
    _logging(settings, service.value)
    _serve(settings, [service.value], port or settings.port)


@app.command()
def migrate(
    service: Annotated[ServiceName | None, typer.Argument(help="only this service's tables")] = None,
) -> None:
    """Bring the database schema up to date."""
    settings = load_settings()
    migrations.upgrade_services(settings, service.value if service else None)
    typer.echo(f"gridcall: schema up to date ({service.value if service else 'all services'})")


@app.command()
def topics() -> None:
    """Create the bus's topics (the streams and the departments' adapter topics) with their
    partitions and replication, as the setup job does before the services start."""
    settings = load_settings()
    if settings.embedded:
        typer.echo("gridcall: embedded mode has no broker (set GRIDCALL_KAFKA_BOOTSTRAP_SERVERS)", err=True)
        raise typer.Exit(2)
    names = create_topics(settings)
    typer.echo(f"gridcall: {len(names)} topics with {settings.kafka_partitions} partitions each: {', '.join(names)}")


def _welcome(settings: Settings, port: int) -> None:
    j = load_jurisdiction(settings.jurisdiction_file)
    auth = authenticator_for(settings, j)
    grid = j.grids[0]
    community = j.community(grid.community_id)
    c = grid.shape.centroid
    url = f"http://{settings.host}:{port}"
    location = {"lat": round(c.y, 4), "lon": round(c.x, 4)}
    example = json.dumps({"category": "garbage", "description": "Bags piled in the stairwell", "location": location})

    async def demo_tokens(accounts: Accounts) -> tuple[str, str]:
        handler = await accounts.named(grid.unit_id, "Demo handler", create=True)
        supervisor = await accounts.named(community.unit_id, "Demo supervisor", create=True, role=StaffRole.SUPERVISOR)
        return accounts.token(handler), accounts.token(supervisor)

    handler, supervisor = with_database(lambda db: demo_tokens(Accounts(db, SystemClock(), auth, j)), "departments")
    typer.echo(
        f"""
gridcall (embedded) on {url}   data in {settings.var_dir.resolve()}
  API docs:       {url}/docs
  Staff console:  {url}/console   (paste a handler's or supervisor's token below to sign in)
  Ops board:      {url}/ops       (paste the ops token below)
  Public page:    {url}/public    (resolved cases, nothing personal)

File a report:
  curl -s -X POST {url}/v1/reports -H 'Content-Type: application/json' \\
    -d '{example}'
Follow it:
  curl -s {url}/v1/cases/CASE_ID -H 'X-Tracking-Token: TRACKING_TOKEN'

Demo handler of {grid.unit_id} (the unit of grid {grid.id}):
  {handler}
  curl -s {url}/v1/units/{grid.unit_id}/tickets -H 'Authorization: Bearer TOKEN'
Demo supervisor of {community.unit_id} (sees its grids' tickets):
  {supervisor}
Ops token:
  {auth.issue("ops", ttl=timedelta(days=30))}
More people: .venv/bin/gridcall staff add --unit UNIT_ID --name NAME [--role supervisor]   (units: GET {url}/v1/units)
Tokens are signed with {_secret_source(settings)}.
Messages to residents, staff and ops: {_channels(settings)}
"""
    )


def _channels(settings: Settings) -> str:
    """Which channels the notifier sends over, as `make run` says it."""
    on = [name for name, set_ in (("email", settings.smtp_host), ("SMS", settings.sms_url)) if set_]
    if settings.notifier_webhook_url:
        on.append("webhook")
    if not on:
        return "written to this log (development; set GRIDCALL_SMTP_HOST for email, GRIDCALL_SMS_URL for SMS)"
    return ", ".join(on)


def _secret_source(settings: Settings) -> str:
    if settings.secret_key is not None:
        return "GRIDCALL_SECRET_KEY"
    return f"the key in {(settings.var_dir / SECRET_FILE).resolve()} (made on first run; delete it to revoke them all)"


if __name__ == "__main__":
    app()
