"""What every server-rendered page of gridcall shares: its security headers and its files.

A page is one Jinja2 template of a package and a few files of the package's `static/` folder,
served from `<prefix>/static/<name>` and named in the page with a digest of their content
(`?v=`), so a browser may keep them a day and still never runs an old script with a new page.
Nothing is loaded from elsewhere: no CDN, no build step."""

import hashlib
import re
from collections.abc import Mapping
from importlib.resources import files
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response
from jinja2 import Environment, PackageLoader, select_autoescape

from services.district.errors import NotFound

Lang = Literal["zh-CN", "en"]
LANGS: tuple[Lang, ...] = ("zh-CN", "en")  # Chinese first
# A page's words: per language, per key (the labels modules of the console, the board and /public).
Labels = Mapping[Lang, Mapping[str, str]]


def language(asked: str | None) -> Lang:
    """The language of a page: English when asked for (`en`, `en-GB`, `en_US`...), Chinese
    otherwise, also for a language gridcall lacks."""
    return "en" if asked and re.split("[-_]", asked.lower(), maxsplit=1)[0] == "en" else "zh-CN"


def other(lang: Lang) -> Lang:
    """The language a page's switch offers."""
    return "en" if lang == "zh-CN" else "zh-CN"


TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def csp(*, script: bool, frame_ancestors: str = "'none'") -> str:
    """A policy that allows the page's own files and nothing else: no inline script or style,
    no other origin; `script`: whether the page runs its own script (and calls its own API)."""
    parts = ["default-src 'none'"]
    if script:
        parts += ["script-src 'self'", "connect-src 'self'"]
    parts += ["style-src 'self'", "img-src 'self'", "base-uri 'none'", "form-action 'self'"]
    return "; ".join([*parts, f"frame-ancestors {frame_ancestors}"])


def headers(policy: str) -> dict[str, str]:
    """The headers of a page (never cached: it may change with the data or the language)."""
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def templates(package: str) -> Environment:
    env = Environment(loader=PackageLoader(package), autoescape=select_autoescape(default=True))
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}
    return env


class StaticFiles:
    """The named files of a package's `static/` folder, read once, each with its version."""

    def __init__(self, package: str, names: tuple[str, ...], prefix: str) -> None:
        self.prefix = prefix
        self._bodies = {name: (files(package) / "static" / name).read_bytes() for name in names}
        self.versions: Mapping[str, str] = {
            name: hashlib.sha256(body).hexdigest()[:12] for name, body in self._bodies.items()
        }

    def url(self, name: str) -> str:
        return f"{self.prefix}/static/{name}?v={self.versions[name]}"

    def router(self) -> APIRouter:
        api = APIRouter(include_in_schema=False)

        @api.get(f"{self.prefix}/static/{{name}}")
        async def asset(name: str) -> Response:
            if name not in self._bodies:
                raise NotFound(f"no file {name!r} under {self.prefix}/static")
            kind = TYPES[name[name.rindex(".") :]]
            cached = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=86400"}
            return Response(self._bodies[name], media_type=kind, headers=cached)

        return api
