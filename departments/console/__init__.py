"""The staff console: one server-rendered page at /console and its script and style sheet.

The page is static apart from its language, so both languages are rendered once, when the
router is built, with the names of the district's units and of the categories in that
language. Everything else (who is signed in, the queue, the actions) the script asks the JSON
API for, with the bearer token the person pasted, from the same origin."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from departments.console.labels import DEFAULT_STATUSES, LABELS, STATUSES
from services.district.events import Priority, ReturnReason, Tier
from services.district.jurisdiction import Jurisdiction, UnitKind, label
from services.district.policy import Attribute, Policy
from services.web import pages

PACKAGE = "departments.console"
# The page loads nothing from elsewhere and runs no inline script; evidence links may point anywhere.
HEADERS = pages.headers(pages.csp(script=True))


def _attribute(a: Attribute, lang: pages.Lang) -> dict[str, Any]:
    """A category's question as the detail panel names it and its answers, in `lang`."""
    asked = (a.description_zh if lang.startswith("zh") else None) or a.description
    return {"code": a.code, "label": asked, "values": {v.key: label(v, lang) for v in a.values}}


def _working_limits(policy: Policy) -> dict[str, dict[str, dict[str, list[str]]]]:
    """category → priority → tier → the limits there ("response", "resolution") that count
    working time only; the rest count calendar time, and are left out."""
    found: dict[str, dict[str, dict[str, list[str]]]] = {}
    for c in policy.categories:
        for priority in Priority:
            for tier in Tier:
                sla = policy.tier_sla(c.code, priority, tier)
                working = [
                    name
                    for name, limit in (("response", sla.response), ("resolution", sla.resolution))
                    if limit.working
                ]
                if working:
                    found.setdefault(c.code, {}).setdefault(priority.value, {})[tier.value] = working
    return found


def _page(env: Environment, lang: pages.Lang, j: Jurisdiction, policy: Policy, static: pages.StaticFiles) -> str:
    labels = LABELS[lang]
    data: dict[str, Any] = {
        "lang": lang,
        "labels": labels,
        "units": {u.id: label(u, lang) for u in j.units},
        "grids": {g.id: label(g, lang) for g in j.grids},
        "shapes": {g.id: g.polygon for g in j.grids},  # [lon, lat] corners, drawn with the case's place
        "categories": {c.code: label(c, lang) for c in policy.categories},
        "attributes": {c.code: [_attribute(a, lang) for a in c.attributes] for c in policy.categories if c.attributes},
        "statuses": STATUSES,
        "default_statuses": DEFAULT_STATUSES,
        "timezone": policy.calendar.timezone,
        "working": _working_limits(policy),
    }
    return env.get_template("console.html").render(
        lang=lang,
        other=pages.other(lang),
        t=labels,
        data=data,
        statuses=STATUSES,
        default_statuses=DEFAULT_STATUSES,
        reasons=[r.value for r in ReturnReason],
        units=data["units"],
        departments={u.id: label(u, lang) for u in j.units if u.kind is UnitKind.DEPARTMENT},
        static=static,
    )


def router(j: Jurisdiction, policy: Policy) -> APIRouter:
    static = pages.StaticFiles(PACKAGE, ("console.js", "console.css"), "/console")
    env = pages.templates(PACKAGE)
    rendered = {lang: _page(env, lang, j, policy, static) for lang in pages.LANGS}
    api = APIRouter(include_in_schema=False)

    @api.get("/console")
    async def console(lang: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
        """工单台: the staff console; Chinese unless `?lang=en`."""
        return HTMLResponse(rendered[pages.language(lang)], headers=HEADERS)

    api.include_router(static.router())
    return api
