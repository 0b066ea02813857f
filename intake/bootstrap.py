from datetime import UTC, datetime

from fastapi import APIRouter

from intake import api, open311, tables
from intake.filing import ReportWriter
from intake.handlers import handlers, lock_views
from intake.keys import ApiKeys
from intake.public import api as public
from services.district.events import Stream
from services.runtime.context import Context, ServiceParts
from services.web.ratelimit import RateLimit

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
    rate_limit = RateLimit(ctx.settings.rate_limit, known_key=keys.known)
    changed = datetime.fromtimestamp(ctx.settings.policy_file.stat().st_mtime, UTC)
    residents = api.router(store, writer, ctx.jurisdiction, ctx.policy, ctx.authenticator, rate_limit)
    georeport = open311.router(store, writer, ctx.jurisdiction, ctx.policy, keys, rate_limit, changeset=changed)
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
        error_renderers={open311.PREFIX: open311.render_error},
    )
    parts.extras["reports"] = writer
    return parts
