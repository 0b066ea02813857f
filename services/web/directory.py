"""What every service answers besides its own routes: `/`, which points to the API description,
`GET /v1/units`, the handling units of the jurisdiction, and (in the runtime) `/healthz`.

The unit list is served by every service rather than by intake alone: each loads the
jurisdiction anyway, and a client finds the ids it needs on the host it already talks to (a
resident app on intake, a staff app on departments, ops on the dispatcher); in embedded mode
the one app answers it once."""

from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from services.district.jurisdiction import Jurisdiction, UnitKind


class UnitOut(BaseModel):
    id: str = Field(description="what staff tokens name (gridcall token issue --unit) and tickets carry")
    name: str
    name_zh: str
    kind: UnitKind
    parent: str | None = Field(
        description="the office that supervises it (grid, pool or property company → community office → street "
        "office); null for street offices and departments"
    )
    area_id: str | None = Field(
        description="the grid, community or street it handles (a pool: its community or street; a property "
        "company: the community of its first compound); null for departments"
    )


def units_of(j: Jurisdiction) -> list[UnitOut]:
    """Every unit, in the district file's order, with the unit above it in the tree."""
    street_unit = {s.id: s.unit_id for s in j.streets}
    community_unit = {c.id: c.unit_id for c in j.communities}
    placed: dict[str, tuple[str | None, str | None]] = {}  # unit id -> (area id, parent unit id)
    for s in j.streets:
        placed.setdefault(s.unit_id, (s.id, None))
    for c in j.communities:
        placed.setdefault(c.unit_id, (c.id, street_unit[c.street_id]))
    for g in j.grids:
        placed.setdefault(g.unit_id, (g.id, community_unit[g.community_id]))
    for p in j.pools:
        level, area_id = p.area
        placed.setdefault(p.id, (area_id, (community_unit if level == "community" else street_unit)[area_id]))
    for x in j.compounds:
        placed.setdefault(x.property_unit_id, (x.community_id, community_unit[x.community_id]))
    out = []
    for u in j.units:
        area, parent = placed.get(u.id, (None, None))
        out.append(UnitOut(id=u.id, name=u.name, name_zh=u.name_zh, kind=u.kind, parent=parent, area_id=area))
    return out


class Welcome(BaseModel):
    service: str
    docs: str = "/docs"
    openapi: str = "/openapi.json"
    health: str = "/healthz"


class Health(BaseModel):
    status: Literal["ok"]
    services: list[str]
    deadletters: int = Field(
        description="records parked because a consumer could not handle them (GET /v1/ops/deadletters)"
    )


class Unhealthy(BaseModel):
    status: Literal["unavailable"]
    database: str


# The pages' icon: a grid of nine cells, the one in the middle marked. Inline, so no page loads
# it from elsewhere; served at /favicon.ico too, for what asks there without reading the page.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#b3261e"/>'
    '<path d="M11 5v22M21 5v22M5 11h22M5 21h22" stroke="#fff" stroke-width="2"/>'
    '<rect x="12.5" y="12.5" width="7" height="7" fill="#fff"/></svg>'
)


def directory(j: Jurisdiction, title: str) -> APIRouter:
    api = APIRouter()
    units = units_of(j)

    @api.get("/favicon.svg", include_in_schema=False)
    @api.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    @api.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        """Where to start: a short page for a browser, JSON for anything else."""
        welcome = Welcome(service=title)
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(
                f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>"
                f'<p>The API: <a href="{welcome.docs}">{welcome.docs}</a> (interactive), '
                f'<a href="{welcome.openapi}">{welcome.openapi}</a> (OpenAPI). '
                f'Health: <a href="{welcome.health}">{welcome.health}</a>.</p>'
            )
        return JSONResponse(welcome.model_dump())

    @api.get("/v1/units", tags=["units"], response_model=list[UnitOut])
    async def list_units(
        kind: Annotated[UnitKind | None, Query(description="only units of this kind")] = None,
    ) -> list[Any]:
        """Every handling unit: grid workers, volunteer pools, property companies, community and
        street offices, departments."""
        return [u for u in units if kind is None or u.kind is kind]

    return api
