"""Intake's wiring: one store, the consumer of the cases stream, the report writer (a group
commit), the Open311 keys and the rate limit, and the routes of its three faces: the residents'
API, Open311 GeoReport v2 and the public results."""

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter

from intake import api, tables
from intake.handlers import handlers, lock_views
from intake.keys import ApiKeys
from intake.open311 import formats as open311_formats
from intake.open311 import routes as open311
from intake.public import api as public
from intake.usecases import ReportWriter
from services.district.events import Stream
from services.runtime.context import Context, ServiceParts
from services.web.ratelimit import MovingWindow, RateLimit, Window
from services.web.ratewindow import DatabaseWindow

NAME = "intake"


def bootstrap(ctx: Context) -> ServiceParts:
    store = ctx.store(f"/{NAME}", outbox=tables.outbox, inbox=tables.inbox, deadletters=tables.deadletters)
    consumer = ctx.consumer(NAME, store, handlers(), [Stream.CASES], lock=lock_views)
    writer = ReportWriter(
        store,
        ctx.jurisdiction,
        ctx.policy,
        max_batch=ctx.settings.group_commit_batch,
        linger=ctx.settings.group_commit_linger,
    )
    keys = ApiKeys(ctx.db)
    rate_limit = RateLimit(ctx.settings.rate_limit, known_key=keys.known, window=rate_window(ctx))
    changed = datetime.fromtimestamp(ctx.settings.policy_file.stat().st_mtime, UTC)
    residents = api.router(store, writer, ctx.jurisdiction, ctx.policy, ctx.authenticator, rate_limit)
    georeport = open311.router(
        open311.GeoReport(store, writer, ctx.jurisdiction, ctx.policy, keys, rate_limit, changeset=changed)
    )
    # One router holding both faces' routes rather than one including the other two: FastAPI
    # matches a request once more at every level of included routers.
    results = public.router(store, ctx.jurisdiction, ctx.policy, rate_limit)
    routes = APIRouter(routes=[*residents.routes, *georeport.routes, *results.routes])
    parts = ServiceParts(
        NAME,
        routes,
        store,
        consumers=[consumer],
        group_commits=[writer.commits],
        error_renderers={open311_formats.PREFIX: open311_formats.render_error},
    )
    parts.extras["reports"] = writer
    return parts


def rate_window(ctx: Context) -> Callable[[int, float], Window]:
    """Where the rate limit counts: in intake's database, shared by its replicas (on PostgreSQL
    unless GRIDCALL_RATE_LIMIT_STORE=memory), or in the process's memory."""
    store = ctx.settings.rate_limit_store
    if store == "memory" or (store == "auto" and not ctx.db.is_postgres):
        return MovingWindow
    return lambda limit, seconds: DatabaseWindow(tables.rate_windows, ctx.db, ctx.clock, limit, seconds)
