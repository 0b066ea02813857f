"""Hostile input on every service's endpoints, in both modes' storage: the whole app in-process
on SQLite (embedded) and on PostgreSQL with the broker (distributed settings). Text no column
can hold is refused at the edge, free text must hold words, 422s have one shape, Open311
answers in its own format, and a database outage is a 503, never a 4xx that blames the client."""

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from gridcall.migrate import upgrade
from intake.keys import create_api_key
from intake.tables import case_views, reports
from services.district.clock import SystemClock
from services.runtime.settings import Settings
from services.web.auth import Authenticator
from tests.conftest import TESTS_POLL_FREELY
from tests.support.apps import running
from tests.support.journey import STREETLIGHT_G11, TEST_SECRET, bearer, file_report, open_ticket
from tests.support.servers import kafka_is_tansu

pytestmark = pytest.mark.integration
V2 = "/open311/v2"
NUL = "\u0000"


@dataclass
class Stack:
    backend: str
    app: FastAPI
    client: httpx.AsyncClient
    auth: Authenticator
    api_key: str

    tokens: Callable[..., str]

    def token(self, unit_id: str | None = None) -> dict[str, str]:
        return bearer(self.tokens(unit_id))

    async def count(self, table: Any = reports) -> int:
        async with self.app.state.ctx.db.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def settings(request, tmp_path_factory) -> Settings:
    """Embedded storage (SQLite, local bus) or distributed (PostgreSQL, the broker)."""
    if request.param == "sqlite":
        settings = Settings(env="test", var_dir=tmp_path_factory.mktemp("var"), secret_key=TEST_SECRET)
        upgrade(settings.db_url)
    else:
        broker = request.getfixturevalue("broker")
        settings = Settings(
            env="test",
            secret_key=TEST_SECRET,
            database_url=request.getfixturevalue("pg_url"),
            kafka_bootstrap_servers=broker.bootstrap,
            kafka_enable_idempotence=not kafka_is_tansu(),
            kafka_partitions=1,
            kafka_session_timeout_ms=6_000,
            kafka_rebalance_timeout_ms=3_000,
            topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        )
    return settings.model_copy(update={"rate_limit": TESTS_POLL_FREELY, "relay_interval": 0.05})


@pytest.fixture(scope="module")
async def stack(settings) -> AsyncIterator[Stack]:
    async with running(settings, handlers=True) as app:
        key = await create_api_key(app.app.state.ctx.db, SystemClock(), "hostile tests")
        auth = Authenticator(TEST_SECRET, SystemClock())
        yield Stack(settings.db_url.split(":")[0], app.app, app.client, auth, key, app.tokens)


@pytest.fixture(scope="module")
async def claimed(stack) -> dict[str, Any]:
    """A real case with its ticket claimed by its grid worker: notes reach a real row."""
    case = await file_report(stack.client, {**STREETLIGHT_G11, "insist": True})
    ticket = await open_ticket(stack.client, "U-G11", stack.token("U-G11")["Authorization"][7:], case["case_id"])
    r = await stack.client.post(f"/v1/tickets/{ticket['ticket_id']}/claim", headers=stack.token("U-G11"))
    assert r.status_code == 200, r.text
    return {**case, "ticket_id": ticket["ticket_id"]}


def problem(r: httpx.Response, loc: list[Any]) -> str:
    """The one 422 shape: a list naming the field; returns its message."""
    assert r.status_code == 422, r.text
    [found] = [p for p in r.json()["detail"] if p["loc"] == loc] or [r.json()["detail"]]
    assert set(found) >= {"loc", "msg", "type"}
    return str(found["msg"])


def spec_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    [error] = r.json()
    assert set(error) == {"code", "description"} and error["code"] == status
    return str(error["description"])


# --- 1. NUL and lone surrogates, everywhere -----------------------------------------------


async def test_a_nul_in_a_report_is_a_422_naming_the_field_and_nothing_is_stored(stack):
    before = await stack.count()
    r = await stack.client.post("/v1/reports", json={**STREETLIGHT_G11, "description": f"bags{NUL}here"})
    assert "U+0000" in problem(r, ["body", "description"])
    r = await stack.client.post("/v1/reports", json={**STREETLIGHT_G11, "attributes": {f"k{NUL}": "v"}})
    problem(r, ["body", "attributes", f"k{NUL}"])
    r = await stack.client.post(
        "/v1/reports", json={**STREETLIGHT_G11, "category": "water_leak", "attributes": {"floor": 2, "note": "a\x00"}}
    )
    assert "U+0000" in problem(r, ["body", "attributes", "note"])
    body = b'{"category": "garbage", "description": "dark \\ud800", "location": {"grid_id": "G11"}}'
    r = await stack.client.post("/v1/reports", content=body, headers={"Content-Type": "application/json"})
    assert "surrogate" in problem(r, ["body", "description"])
    r = await stack.client.post("/v1/reports", json=STREETLIGHT_G11, headers={"Idempotency-Key": f"k{NUL}1"})
    problem(r, ["header", "idempotency-key"])
    assert await stack.count() == before


async def test_a_nul_in_a_path_id_is_a_404_like_any_missing_id(stack, claimed):
    c = stack.client
    missing = await c.get("/v1/cases/no-such-case", headers={"X-Tracking-Token": "x"})
    nul = await c.get("/v1/cases/abc%00", headers={"X-Tracking-Token": "x"})
    assert nul.status_code == missing.status_code == 404 and nul.json() == missing.json()
    for path in ("satisfaction", "cancel"):
        r = await c.post(f"/v1/cases/abc%00/{path}", headers={"X-Tracking-Token": "x"}, json={})
        assert r.status_code == 404, r.text
    assert (await c.get("/v1/units/U-G11%00/tickets", headers=stack.token())).status_code == 404
    assert (await c.get("/v1/ops/cases/abc%00", headers=stack.token())).status_code == 404
    r = await c.post("/v1/tickets/t%00/claim", headers=stack.token("U-G11"))
    assert r.status_code == 404
    spec_error(await c.get(f"{V2}/requests/abc%00.json"), 404)
    spec_error(await c.get(f"{V2}/services/garbage%00.json"), 404)
    spec_error(await c.get(f"{V2}/tokens/abc%00.json"), 404)


async def test_a_nul_in_a_query_parameter_is_a_422_naming_it(stack):
    c, ops = stack.client, stack.token()
    assert "U+0000" in problem(await c.get("/v1/ops/breaches?street=S1%00", headers=ops), ["query", "street"])
    problem(await c.get("/v1/ops/satisfaction?unit=U%00", headers=ops), ["query", "unit"])
    problem(await c.get("/v1/notifications?case_id=abc%00", headers=ops), ["query", "case_id"])
    problem(await c.get("/v1/units/U-G11/tickets?status=open%00", headers=ops), ["query", "status"])
    assert "service_code" in spec_error(await c.get(f"{V2}/requests.json?service_code=garbage%00"), 400)
    assert "service_request_id" in spec_error(await c.get(f"{V2}/requests.json?service_request_id=a%00"), 400)


async def test_a_nul_in_a_note_is_a_422_on_every_staff_and_resident_action(stack, claimed):
    c, staff = stack.client, stack.token("U-G11")
    ticket, track = claimed["ticket_id"], {"X-Tracking-Token": claimed["tracking_token"]}
    for action, body, field in [
        ("resolve", {"note": f"done{NUL}"}, "note"),
        ("escalate", {"reason": f"van{NUL}"}, "reason"),
        ("return", {"reason_code": "other", "reason": f"not ours{NUL}"}, "reason"),
        ("return", {"reason_code": "other", "reason": "x", "suggested_unit_id": f"U-C1{NUL}"}, "suggested_unit_id"),
        ("whistle", {"lead": f"D-URBAN{NUL}", "reason": "joint"}, "lead"),
    ]:
        r = await c.post(f"/v1/tickets/{ticket}/{action}", headers=staff, json=body)
        assert "U+0000" in problem(r, ["body", field]), action
    r = await c.post(f"/v1/cases/{claimed['case_id']}/cancel", headers=track, json={"reason": f"a{NUL}"})
    problem(r, ["body", "reason"])
    answer = {"answer": "unsatisfied", "comment": f"no{NUL}"}
    r = await c.post(f"/v1/cases/{claimed['case_id']}/satisfaction", headers=track, json=answer)
    problem(r, ["body", "comment"])
    r = await c.get("/v1/units/U-G11/tickets", headers=staff)
    assert next(t for t in r.json()["tickets"] if t["ticket_id"] == ticket)["status"] == "claimed"  # nothing changed


async def test_a_nul_in_an_open311_form_is_a_400_in_the_spec_format(stack):
    form = {"api_key": stack.api_key, "service_code": "garbage", "lat": "30.505", "long": "114.305"}
    before = await stack.count()
    for field in ("description", "address_string", "first_name", "email", "account_id", "attribute[x]"):
        r = await stack.client.post(f"{V2}/requests.json", data={**form, field: f"a{NUL}b"})
        assert field in spec_error(r, 400) and "U+0000" in r.text, field
    assert await stack.count() == before


# --- 2. blank in all but name -------------------------------------------------------------


@pytest.mark.parametrize("blank", ["\u0007\u0008\u001b", "\u200b\u200b", "\ufeff \u2060"])
async def test_control_or_zero_width_only_text_is_refused(stack, claimed, blank):
    c = stack.client
    r = await c.post("/v1/reports", json={**STREETLIGHT_G11, "description": blank})
    problem(r, ["body", "description"])
    for action, body in [("resolve", {"note": blank}), ("escalate", {"reason": blank})]:
        r = await c.post(f"/v1/tickets/{claimed['ticket_id']}/{action}", headers=stack.token("U-G11"), json=body)
        problem(r, ["body", list(body)[0]])


async def test_control_characters_inside_words_are_refused(stack):
    r = await stack.client.post("/v1/reports", json={**STREETLIGHT_G11, "description": "red \x1b[31m light"})
    assert "U+001B" in problem(r, ["body", "description"])


# --- 5. one 422 shape ---------------------------------------------------------------------


async def test_every_422_is_a_list_naming_the_field(stack, claimed):
    c, ops = stack.client, stack.token()
    r = await c.get("/v1/ops/satisfaction?since=2026-01-01T00:00:00", headers=ops)
    assert "time zone" in problem(r, ["query", "since"])
    body = {"reason_code": "other", "reason": "x", "suggested_unit_id": "U-NOPE"}
    r = await c.post(f"/v1/tickets/{claimed['ticket_id']}/return", headers=stack.token("U-G11"), json=body)
    assert "U-NOPE" in problem(r, ["body", "suggested_unit_id"])
    r = await c.post("/v1/reports", json={**STREETLIGHT_G11, "category": "ufo"})
    assert "unknown category" in problem(r, ["body", "category"])


# --- 6. Open311: what is too long; the database away ---------------------------------------


async def test_open311_says_what_is_too_long(stack):
    form = {"api_key": stack.api_key, "service_code": "garbage", "lat": "30.505", "long": "114.305"}
    r = await stack.client.post(f"{V2}/requests.json", data={**form, "description": "d" * 10_000})
    assert "description is limited to 4,000 characters; this one has 10,000" in spec_error(r, 400)
    r = await stack.client.post(f"{V2}/requests.xml", data={**form, "description": "d" * 2_000_000})
    assert r.status_code == 413 and r.headers["content-type"].startswith("text/xml")
    assert "form body is limited to 1024 KB" in r.text
    r = await stack.client.post(f"{V2}/requests.json", data={**form, "description": "d" * 2_000_000})
    assert "limited to 1024 KB" in spec_error(r, 413)


async def test_a_database_outage_is_a_503_in_each_faces_format(stack):
    db = stack.app.state.ctx.db
    working = db.sessions
    dead = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none", pool_pre_ping=False)
    db.sessions = async_sessionmaker(dead, expire_on_commit=False)
    try:
        form = {"api_key": "k", "service_code": "garbage", "lat": "30.505", "long": "114.305"}
        r = await stack.client.post(f"{V2}/requests.json", data=form)
        assert "database" in spec_error(r, 503) and r.headers["Retry-After"]
        r = await stack.client.get(f"{V2}/requests.json")
        spec_error(r, 503)
        r = await stack.client.get("/v1/cases/x", headers={"X-Tracking-Token": "x"})
        assert r.status_code == 503 and r.headers["Retry-After"] and "database" in r.json()["detail"]
    finally:
        db.sessions = working
        await dead.dispose()
    assert (await stack.client.get(f"{V2}/requests.json")).status_code == 200


async def test_a_report_is_still_accepted_after_all_this(stack):
    r = await stack.client.post(
        "/v1/reports", json={**STREETLIGHT_G11, "description": "two\r\nlines\u200b ", "insist": True}
    )
    assert r.status_code == 202, r.text
    async with stack.app.state.ctx.db.sessions() as s:
        stored = await s.scalar(select(reports.c.description).where(reports.c.case_id == r.json()["case_id"]))
        assert await s.scalar(select(func.count()).select_from(case_views)) >= 1
    assert stored == "two\nlines"
