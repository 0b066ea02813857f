"""The staff console: one server-rendered page at /console and its script and style sheet.

The page is static apart from its language, so both languages are rendered once, when the
router is built. Everything else (who is signed in, the queue, the actions) the script asks
the JSON API for, with the bearer token the person pasted, from the same origin."""

import hashlib
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from departments.console.labels import DEFAULT_STATUSES, LABELS, STATUSES, Lang, language
from services.errors import NotFound
from services.events import ReturnReason
from services.policy import Policy

PACKAGE = "departments.console"
STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}

# The page loads nothing from elsewhere and runs no inline script; evidence links may point anywhere.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(env: Environment, lang: Lang, policy: Policy, versions: dict[str, str]) -> str:
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
    static = {name: (files(PACKAGE) / "static" / name).read_bytes() for name in STATIC}
    # The page names its files with a digest of their content, so a browser may keep them.
    versions = {name: hashlib.sha256(body).hexdigest()[:12] for name, body in static.items()}
    env = Environment(loader=PackageLoader(PACKAGE), autoescape=select_autoescape(default=True))
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}
    pages = {lang: _page(env, lang, policy, versions) for lang in LABELS}
    api = APIRouter(prefix="/console", include_in_schema=False)

    @api.get("")
    async def console(lang: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
        """工单台: the staff console; Chinese unless `?lang=en`."""
        return HTMLResponse(pages[language(lang)], headers=HEADERS)

    @api.get("/static/{name}")
    async def asset(name: str) -> Response:
        if name not in static:
            raise NotFound(f"no console file {name!r}")
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"}
        return Response(static[name], media_type=STATIC[name], headers=headers)

    return api
