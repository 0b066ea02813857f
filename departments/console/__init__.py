"""The staff console: one server-rendered page at /console and its script and style sheet.

The page is static apart from its language, so both languages are rendered once, when the
router is built. Everything else (who is signed in, the queue, the actions) the script asks
the JSON API for, with the bearer token the person pasted, from the same origin."""

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from departments.console.labels import DEFAULT_STATUSES, LABELS, STATUSES, Lang, language
from services.district.events import ReturnReason
from services.district.policy import Policy
from services.web import pages

PACKAGE = "departments.console"
# The page loads nothing from elsewhere and runs no inline script; evidence links may point anywhere.
HEADERS = pages.headers(pages.csp(script=True))


def _page(env: Environment, lang: Lang, policy: Policy, versions: Mapping[str, str]) -> str:
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
        other="en" if lang == "zh-CN" else "zh-CN",
        t=labels,
        data=data,
        statuses=STATUSES,
        default_statuses=DEFAULT_STATUSES,
        reasons=[r.value for r in ReturnReason],
        versions=versions,
    )


def router(policy: Policy) -> APIRouter:
    static = pages.StaticFiles(PACKAGE, ("console.js", "console.css"), "/console")
    env = pages.templates(PACKAGE)
    rendered = {lang: _page(env, lang, policy, static.versions) for lang in LABELS}
    api = APIRouter(include_in_schema=False)

    @api.get("/console")
    async def console(lang: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
        """工单台: the staff console; Chinese unless `?lang=en`."""
        return HTMLResponse(rendered[language(lang)], headers=HEADERS)

    api.include_router(static.router())
    return api
