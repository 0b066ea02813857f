"""Who may do what: every staff endpoint against every kind of caller, on PostgreSQL and the
broker (the whole app in-process, tickets opened end to end from residents' reports). The
table below is the rules; a test per cell checks the answer's status, and that a refusal says
why without any of the ticket's data (its description, case, the resident's contact, its
notes, who claimed it). Where the caller may see the ticket, its `allowed_actions` named the
action exactly when the API then accepted it."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from gridcall.app import build_app
from services.district.clock import SystemClock
from services.web.auth import Authenticator
from tests.conftest import postgres_settings
from tests.support.apps import lifespan
from tests.support.journey import TEST_SECRET, bearer
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

UNIT, NEIGHBOUR = "U-G11", "U-G12"  # two grids of community U-C1 (street U-S1)
IN_G11 = {"lat": 30.505, "lon": 114.305}
POOL = "P-C1"  # the volunteer pool of community C1, above U-G11 (its supervisor sees the pool)

# fmt: off
CALLERS = (
    "anonymous",         # no Authorization header
    "garbage",           # "Bearer not-a-token"
    "expired",           # the handler's claims, signed right, past their exp
    "revoked",           # a U-G11 handler whose account ops revoked
    "other_handler",     # handler of U-G12, the grid next door
    "handler",           # handler of U-G11; the claimer of every claimed ticket below
    "coworker",          # another handler of U-G11
    "unit_supervisor",   # supervisor in U-G11 itself
    "supervisor",        # supervisor of U-C1, the community above U-G11
    "other_supervisor",  # supervisor of U-C2, another community's subtree
    "pool_member",       # a member of POOL
    "ops",               # ops token
)
# What each endpoint needs: "open" / "claimed" (by the handler): a fresh ticket of U-G11 per
# cell, with the resident's contact and a note on it; "seen": one shared claimed ticket that
# nobody changes; "account": a fresh account, for revoking.
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any] | None, str | None]] = {
    "me":         ("GET",  "/v1/me", None, None),
    "reach":      ("PUT",  "/v1/me/reach", {"email": "duty@example.cn", "channels": ["email"]}, None),
    "queue":      ("GET",  f"/v1/units/{UNIT}/tickets", None, "seen"),
    "summary":    ("GET",  f"/v1/units/{UNIT}/summary", None, "seen"),
    "ticket":     ("GET",  "/v1/tickets/{ticket}", None, "seen"),
    "claim":      ("POST", "/v1/tickets/{ticket}/claim", None, "open"),
    "unclaim":    ("POST", "/v1/tickets/{ticket}/unclaim", None, "claimed"),
    "notes":      ("POST", "/v1/tickets/{ticket}/notes", {"text": "Called the property office"}, "claimed"),
    "evidence":   ("POST", "/v1/tickets/{ticket}/evidence",
                   {"url": "https://example.org/after.jpg", "caption": "After"}, "claimed"),
    "resolve":    ("POST", "/v1/tickets/{ticket}/resolve", {"note": "Cleared"}, "claimed"),
    "return":     ("POST", "/v1/tickets/{ticket}/return",
                   {"reason_code": "not_our_jurisdiction", "reason": "Next grid's"}, "claimed"),
    "escalate":   ("POST", "/v1/tickets/{ticket}/escalate", {"reason": "Needs the community's van"}, "claimed"),
    "whistle":    ("POST", "/v1/tickets/{ticket}/whistle",
                   {"lead": "D-URBAN", "co": ["D-WATER"], "reason": "Joint"}, "claimed"),
    "reassign":   ("POST", "/v1/tickets/{ticket}/reassign", {"unit_id": NEIGHBOUR, "reason": "Nearer"}, "claimed"),
    "pool_queue": ("GET",  f"/v1/pools/{POOL}/tickets", None, None),
    "record":     ("GET",  f"/v1/pools/{POOL}/members/{{member}}/record", None, None),
    "add_staff":  ("POST", "/v1/staff", {"unit_id": "U-G13", "name": "{fresh}"}, None),
    "staff":      ("GET",  "/v1/staff", None, None),
    "revoke":     ("POST", "/v1/staff/{account}/revoke", None, "account"),
}
# Read across: the status each caller gets.  401: no standing token (before anything else).
# 403: a token that stands but may not (see or do this). 409/422: allowed
# in, refused by the ticket's state or the body (a grid's ticket cannot be whistled; a grid's
# supervisor has no other unit to reassign to).
#                 anon garb  exp  rev  G12  G11  G11' G11s C1s  C2s  pool ops
MATRIX: dict[str, tuple[int, ...]] = {
    "me":         (401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200, 200),
    "reach":      (401, 401, 401, 401, 200, 200, 200, 200, 200, 200, 200, 403),
    "queue":      (401, 401, 401, 401, 403, 200, 200, 200, 200, 403, 403, 200),
    "summary":    (401, 401, 401, 401, 403, 200, 200, 200, 200, 403, 403, 200),
    "ticket":     (401, 401, 401, 401, 403, 200, 200, 200, 200, 403, 403, 200),
    "claim":      (401, 401, 401, 401, 403, 200, 200, 200, 403, 403, 403, 403),
    "unclaim":    (401, 401, 401, 401, 403, 200, 403, 200, 403, 403, 403, 403),
    "notes":      (401, 401, 401, 401, 403, 200, 200, 200, 403, 403, 403, 403),
    "evidence":   (401, 401, 401, 401, 403, 200, 200, 200, 403, 403, 403, 403),
    "resolve":    (401, 401, 401, 401, 403, 200, 403, 200, 403, 403, 403, 403),
    "return":     (401, 401, 401, 401, 403, 200, 403, 200, 403, 403, 403, 403),
    "escalate":   (401, 401, 401, 401, 403, 200, 403, 200, 403, 403, 403, 403),
    "whistle":    (401, 401, 401, 401, 403, 409, 403, 409, 403, 403, 403, 403),
    "reassign":   (401, 401, 401, 401, 403, 403, 403, 422, 200, 403, 403, 403),
    "pool_queue": (401, 401, 401, 401, 403, 403, 403, 403, 200, 403, 200, 200),
    "record":     (401, 401, 401, 401, 403, 403, 403, 403, 200, 403, 200, 200),
    "add_staff":  (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 201),
    "staff":      (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 200),
    "revoke":     (401, 401, 401, 401, 403, 403, 403, 403, 403, 403, 403, 200),
}
# fmt: on
# The ticket actions, by the name `allowed_actions` gives each.
TICKET_ACTIONS = ("claim", "unclaim", "notes", "evidence", "resolve", "return", "escalate", "whistle", "reassign")
ACTIONS = {e: "note" if e == "notes" else e for e in TICKET_ACTIONS}
UNAUTHENTICATED = {"anonymous", "garbage", "expired", "revoked"}
OUTSIDERS = {"other_handler", "other_supervisor", "pool_member"}  # nothing of U-G11's is theirs to see
CELLS = [(endpoint, caller, MATRIX[endpoint][i]) for endpoint in ENDPOINTS for i, caller in enumerate(CALLERS)]
# (role, unit, name) of the accounts made through POST /v1/staff
PEOPLE = {
    "revoked": ("handler", UNIT, "Sun Revoked"),
    "other_handler": ("handler", NEIGHBOUR, "Zhou Neighbour"),
    "handler": ("handler", UNIT, "Li Claimer"),
    "coworker": ("handler", UNIT, "Wu Coworker"),
    "unit_supervisor": ("supervisor", UNIT, "Zheng Gridlead"),
    "supervisor": ("supervisor", "U-C1", "Wang Community"),
    "other_supervisor": ("supervisor", "U-C2", "Feng Otherside"),
    "pool_member": ("handler", POOL, "Chen Volunteer"),
}
RESIDENT = {"name": "Zhao Resident", "phone": "+86 138 0013 8000"}


def test_the_table_covers_every_caller_for_every_endpoint():
    assert set(MATRIX) == set(ENDPOINTS)
    assert all(len(row) == len(CALLERS) for row in MATRIX.values())


@dataclass
class Desk:
    client: httpx.AsyncClient
    headers: dict[str, dict[str, str]]  # caller -> its Authorization header (none: anonymous)
    staff_ids: dict[str, str]
    ops: dict[str, str]
    tickets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # state -> unused tickets
    secrets: dict[str, list[str]] = field(default_factory=dict)  # ticket id -> the data no refusal may show

    async def call(self, method: str, path: str, caller: str, body: dict[str, Any] | None) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers[caller], json=body)

    async def account(self, role: str, unit: str, name: str) -> dict[str, Any]:
        r = await self.client.post("/v1/staff", headers=self.ops, json={"unit_id": unit, "name": name, "role": role})
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def file(self, n: int, claimed: bool) -> list[dict[str, Any]]:
        """`n` fresh tickets of U-G11, each with the resident's contact and a note, claimed by
        the handler if asked."""
        marks = [uuid.uuid4().hex[:12] for _ in range(n)]
        filed = await asyncio.gather(*(self._report(m) for m in marks))
        wanted = {case["case_id"]: mark for case, mark in zip(filed, marks, strict=True)}

        async def all_open() -> list[dict[str, Any]] | None:
            r = await self.call("GET", f"/v1/units/{UNIT}/tickets?status=open&limit=200", "handler", None)
            assert r.status_code == 200, r.text
            found = [t for t in r.json()["tickets"] if t["case_id"] in wanted]
            return found if len(found) == n else None

        found = await eventually(all_open, timeout=60)
        await asyncio.gather(*(self._prepare(t, wanted[t["case_id"]], claimed) for t in found))
        return found

    async def _report(self, mark: str) -> dict[str, Any]:
        body = {
            "category": "garbage",
            "description": f"Bags of rubbish in the stairwell, mark {mark}",
            "location": IN_G11,
            "contact": RESIDENT,
            "insist": True,
        }
        r = await self.client.post("/v1/reports", json=body)
        assert r.status_code == 202, r.text
        return dict(r.json())

    async def _prepare(self, ticket: dict[str, Any], mark: str, claimed: bool) -> None:
        note = f"Internal note {mark}"
        url = f"/v1/tickets/{ticket['ticket_id']}"
        r = await self.call("POST", f"{url}/notes", "handler", {"text": note})
        assert r.status_code == 200, r.text
        if claimed:
            r = await self.call("POST", f"{url}/claim", "handler", None)
            assert r.status_code == 200, r.text
        secrets = [ticket["description"], ticket["case_id"], note, *RESIDENT.values()]
        if claimed:
            secrets.append(PEOPLE["handler"][2])
        self.secrets[ticket["ticket_id"]] = secrets

    def take(self, state: str) -> dict[str, Any]:
        return self.tickets[state].pop()


def expired_token(staff_id: str, role: str, unit: str, name: str) -> str:
    """Claims as the API issues them, signed with the deployment's secret, expired an hour ago."""
    past = datetime.now(UTC) - timedelta(hours=2)
    claims = {"iss": "gridcall", "role": "staff", "sub": staff_id, "unit": unit, "duty": role, "name": name}
    return jwt.encode({**claims, "iat": past, "exp": past + timedelta(hours=1)}, TEST_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
async def desk(pg_url, broker) -> AsyncIterator[Desk]:
    settings = postgres_settings(pg_url, broker, f"t{uuid.uuid4().hex[:10]}")
    app = build_app(settings)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall", timeout=30) as client,
    ):
        ops = bearer(Authenticator(TEST_SECRET, SystemClock()).issue("ops", ttl=timedelta(hours=1)))
        desk = Desk(client, {"anonymous": {}, "garbage": bearer("not-a-token"), "ops": ops}, {}, ops)
        for caller, (role, unit, name) in PEOPLE.items():
            account = await desk.account(role, unit, name)
            desk.headers[caller], desk.staff_ids[caller] = bearer(account["token"]), account["staff_id"]
        role, unit, name = PEOPLE["handler"]
        desk.headers["expired"] = bearer(expired_token(desk.staff_ids["handler"], role, unit, name))
        r = await client.post(f"/v1/staff/{desk.staff_ids['revoked']}/revoke", headers=ops)
        assert r.status_code == 200, r.text

        # A fresh ticket for every cell that may change one (callers with a standing token);
        # the others share one that nobody may change.
        needs = [ENDPOINTS[e][3] for e, caller, _ in CELLS if caller not in UNAUTHENTICATED]
        opened, claimed = needs.count("open") + 1, needs.count("claimed") + 1
        desk.tickets["open"] = await desk.file(opened, claimed=False)
        desk.tickets["claimed"] = await desk.file(claimed, claimed=True)
        desk.tickets["seen"] = [desk.take("claimed")]
        yield desk


@pytest.mark.parametrize(("endpoint", "caller", "expected"), CELLS, ids=[f"{e}-{c}-{s}" for e, c, s in CELLS])
async def test_who_may(desk, endpoint, caller, expected):
    status, leaked, request = await _cell(desk, endpoint, caller)
    assert status == expected, request
    assert not leaked, f"the refusal shows the ticket's {leaked}: {request}"


async def _cell(desk: Desk, endpoint: str, caller: str) -> tuple[int, str, str]:
    method, path, body, needs = ENDPOINTS[endpoint]
    ticket = None
    if needs == "seen" or (needs in ("open", "claimed") and caller in UNAUTHENTICATED):
        ticket = desk.tickets["seen"][0]
    elif needs in ("open", "claimed"):
        ticket = desk.take(needs)
    fresh = f"Revokable {uuid.uuid4().hex[:8]}"
    account = await desk.account("handler", "U-G13", fresh) if needs == "account" else {}
    path = path.format(
        ticket=ticket["ticket_id"] if ticket else "",
        member=desk.staff_ids["pool_member"],
        account=account.get("staff_id", ""),
    )
    if body is not None:
        body = {k: v.format(fresh=f"New person {uuid.uuid4().hex[:8]}") if isinstance(v, str) else v
                for k, v in body.items()}  # fmt: skip
    allowed = None  # what the ticket said this caller may do, for a caller who may see it
    if ticket is not None and endpoint in ACTIONS and caller not in UNAUTHENTICATED:
        seen = await desk.call("GET", f"/v1/tickets/{ticket['ticket_id']}", caller, None)
        allowed = seen.json()["allowed_actions"] if seen.status_code == 200 else None
    r = await desk.call(method, path, caller, body)
    if allowed is not None:  # the page shows a button exactly when the API then accepts it
        assert (ACTIONS[endpoint] in allowed) == (r.status_code == 200), (allowed, r.status_code, r.text[:200])
    leaked = ""
    if 400 <= r.status_code < 500:
        shown = r.text + json.dumps(r.json(), ensure_ascii=False)
        secrets = desk.secrets[ticket["ticket_id"]] if ticket else [s for t in desk.secrets.values() for s in t]
        if "{ticket}" in ENDPOINTS[endpoint][1] and caller in OUTSIDERS:
            secrets = [*secrets, UNIT]  # nor which unit holds the ticket, to a caller who gave only its id
        leaked = ", ".join(repr(s) for s in secrets if s in shown)
        assert r.json().get("detail"), r.text  # a refusal says why
    elif "{ticket}" in ENDPOINTS[endpoint][1] and r.status_code == 200:
        assert r.json()["ticket_id"] == ticket["ticket_id"]
    return r.status_code, leaked, f"{method} {path} {json.dumps(body) if body else ''} -> {r.text[:300]}"


@pytest.mark.parametrize("caller", ["anonymous", "handler", "supervisor", "ops"])
async def test_an_unknown_ticket_or_unit_is_a_404_once_the_token_stands(desk, caller):
    expected = 401 if caller in UNAUTHENTICATED else 404
    for method, path in [
        ("GET", "/v1/tickets/no-such-ticket"),
        ("POST", "/v1/tickets/no-such-ticket/claim"),
        ("GET", "/v1/units/U-NOPE/tickets"),
        ("GET", "/v1/units/U-NOPE/summary"),
        ("POST", "/v1/staff/st-nobody/revoke"),
    ]:
        r = await desk.call(method, path, caller, None)
        want = 403 if path.startswith("/v1/staff") and caller not in ("ops", *UNAUTHENTICATED) else expected
        assert r.status_code == want, f"{method} {path}: {r.text}"


async def test_the_residents_contact_shows_only_to_the_handling_units_staff(desk):
    ticket_id = desk.tickets["seen"][0]["ticket_id"]
    for caller, contact in [("handler", RESIDENT), ("coworker", RESIDENT), ("supervisor", None), ("ops", None)]:
        r = await desk.call("GET", f"/v1/tickets/{ticket_id}", caller, None)
        assert r.status_code == 200, r.text
        assert r.json()["contact"] == contact, caller
