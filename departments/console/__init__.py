"""The staff console: one server-rendered page at /console and its script and style sheet.

The page is static apart from its language, so both languages are rendered once, when the
router is built. Everything else (who is signed in, the queue, the actions) the script asks
the JSON API for, with the bearer token the person pasted, from the same origin."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from departments.console.labels import DEFAULT_STATUSES, LABELS, STATUSES
from services.district.events import ReturnReason
from services.district.policy import Policy
from services.web import pages

PACKAGE = "departments.console"
# The page loads nothing from elsewhere and runs no inline script; evidence links may point anywhere.
HEADERS = pages.headers(pages.csp(script=True))


def _page(env: Environment, lang: pages.Lang, policy: Policy, static: pages.StaticFiles) -> str:
    labels = LABELS[lang]
    categories = {c.code: (c.name_zh or c.name) if lang == "zh-CN" else c.name for c in policy.categories}
    data: dict[str, Any] = {
        "lang": lang,
        "labels": labels,
        "categories": categories,
        "statuses": STATUSES,
        "default_statuses": DEFAULT_STATUSES,
    }
    return env.get_template("console.html").render(
        lang=lang,
        other=pages.other(lang),
        t=labels,
        data=data,
        statuses=STATUSES,
        default_statuses=DEFAULT_STATUSES,
        reasons=[r.value for r in ReturnReason],
        static=static,
    )


def router(policy: Policy) -> APIRouter:
    static = pages.StaticFiles(PACKAGE, ("console.js", "console.css"), "/console")
    env = pages.templates(PACKAGE)
    rendered = {lang: _page(env, lang, policy, static) for lang in pages.LANGS}
    api = APIRouter(include_in_schema=False)

    @api.get("/console")
    async def console(lang: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
        """工单台: the staff console; Chinese unless `?lang=en`."""
        return HTMLResponse(rendered[pages.language(lang)], headers=HEADERS)

    api.include_router(static.router())
    return api
