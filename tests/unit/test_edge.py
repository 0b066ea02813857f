"""The kernel's edge without a database: request size limits before parsing, strict JSON errors,
log lines user text cannot forge, events that cannot be stored, one error mapping per app."""

import asyncio
import json
import logging
import math
import re
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from departments.domain import TicketConflict, TicketNotFound
from departments.usecases.tickets import Desk
from gridcall.app import build_app
from notifier.channels import LogSender
from services.delivery.sender import Item
from services.district.events import CaseResolved, Stream
from services.district.text import printable, strict_json, words
from services.messaging.bus import Record
from services.messaging.consumer import Consumer
from services.messaging.envelope import Envelope
from services.runtime.context import build_context
from services.web.messages import PROBLEMS
from tests.support.apps import lifespan, running
from tests.support.journey import STREETLIGHT_G11

FORGED = "cleared\n2026-01-01 00:00:00,000 INFO gridcall.notifications: forged"
ANSI = "\x1b[31mred\x1b[0m"


@pytest.fixture
async def client(embedded_settings):
    async with running(embedded_settings) as app:
        yield app.client


# --- user text in log lines ---------------------------------------------------------------


@pytest.mark.parametrize("note", [FORGED, ANSI, "line\u2028separator", "back\\slash\r"])
async def test_a_note_cannot_forge_a_log_line_or_colour_the_terminal(caplog, note):
    caplog.set_level(logging.INFO, logger="gridcall.notifications")
    body = json.dumps({"audience": "resident", "subject": f"resolved {note}", "text": f"resolved: {note}"})
    await LogSender().send(Item(1, "m1", "log", "follower:1", "case-1", "case.resolved", body, 0))
    [record] = caplog.records
    line = record.getMessage()
    assert not any(c in line for c in "\n\r\x1b\u2028"), line
    assert "forged" not in note or "\\n2026-01-01" in line  # escaped, still readable


def test_printable_escapes_control_characters_and_cuts_long_text():
    assert printable("a\nb\x1b[31m\\") == "a\\nb\\x1b[31m\\\\"
    assert printable("x" * 1000, limit=10) == "x" * 10 + "…(+990)"


# --- free text ----------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", "   ", "\u200b\u200b", "\ufeff\u2060\u200d", "\n\t \u3000"])
def test_text_of_only_invisible_characters_is_blank(blank):
    assert words(blank) == ""


@pytest.mark.parametrize("bad", ["\u0007\u0008\u001b", "ok\x00", "a\x1b[31m", "a\x7f", "a\x85"])
def test_control_characters_other_than_newline_and_tab_are_refused(bad):
    with pytest.raises(ValueError, match="U\\+00"):
        words(bad)


def test_free_text_is_stripped_and_keeps_its_lines():
    assert words("\u200b  two\r\nlines\tand a tab \u200b") == "two\nlines\tand a tab"


def test_strict_json_never_writes_nan():
    body = strict_json({"input": math.nan, "more": [math.inf, -math.inf], "text": "\ud800"})
    assert json.loads(body, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "input": "NaN",
        "more": ["Infinity", "-Infinity"],
        "text": "\ud800",  # escaped as JSON escapes it, read back as sent
    }


# --- events -------------------------------------------------------------------------------


def test_an_event_whose_text_carries_a_nul_fails_validation():
    data = {"case_id": "c1", "assignment_id": "a1", "unit_id": "U-G11", "note": "bags\x00here"}
    with pytest.raises(ValueError, match="note: contains U\\+0000"):
        CaseResolved(**data)
    with pytest.raises(ValueError, match="data.note: contains U\\+0000"):  # the envelope refuses it too
        Envelope(id="e1", type=CaseResolved.type, source="/d", time="2026-01-01T00:00:00Z", subject="c1", data=data)


async def test_a_consumed_event_with_a_nul_is_dead_lettered_before_its_handler_runs(embedded_settings):
    ctx = build_context(embedded_settings)
    await ctx.bus.start()
    try:
        from notifier.bootstrap import bootstrap as notifier_bootstrap

        store = notifier_bootstrap(ctx).store
        handled: list[str] = []

        async def handler(tx, envelope, event):
            handled.append(event.case_id)

        consumer = Consumer("nul-test", store, ctx.bus, {CaseResolved: handler}, [Stream.CASES])
        topic = ctx.settings.topic(Stream.CASES)
        case_id = str(uuid.uuid4())
        bad = {"id": str(uuid.uuid4()), "type": CaseResolved.type, "source": "/dispatcher",
               "time": "2026-01-01T00:00:00Z", "subject": case_id, "specversion": "1.0",
               "data": {"case_id": case_id, "assignment_id": "a", "unit_id": "U-G11", "note": "x\u0000y"}}  # fmt: skip
        record = Record(topic, 0, 0, case_id, json.dumps(bad).encode())
        assert await asyncio.wait_for(consumer.handle_batch([record]), timeout=20)
        assert handled == []
        [parked] = await store.parking.parked("nul-test")
        assert parked.case_id == case_id and "U+0000" in parked.error
    finally:
        await ctx.bus.stop()
        await ctx.db.dispose()


# --- sizes --------------------------------------------------------------------------------


async def _call(app: FastAPI, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes, int]:
    """One raw ASGI request: the status, the body, and how many body chunks the app pulled."""
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/reports", "raw_path": b"/v1/reports", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"gridcall"), *headers], "client": ("127.0.0.1", 1), "server": ("gridcall", 80),
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), timeout=20)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


FIFTY_MB = 50 * 1024 * 1024


async def test_a_50_mb_body_is_a_413_before_a_byte_of_it_is_read(embedded_settings):
    app = build_app(embedded_settings)
    async with lifespan(app):
        chunk = b"x" * 65536
        declared = [(b"content-type", b"application/json"), (b"content-length", str(FIFTY_MB).encode())]
        status, body, pulled = await _call(app, declared, [chunk] * 800)
        assert (status, pulled) == (413, 0)
        assert json.loads(body) == {"detail": "a request body is limited to 256 KB", "code": "too_large"}
        # sent without a length (chunked): refused once the count passes the limit
        chunked = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
        status, body, pulled = await _call(app, chunked, [chunk] * 800)
        assert status == 413 and pulled == 5  # 5 x 64 KB > 256 KB: the other 795 chunks are never read
        # a form body has the form limit, and Open311 answers in its own format
        form = [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", str(FIFTY_MB).encode())]
        status, body, pulled = await _call(app, form, [chunk])
        assert (status, pulled) == (413, 0)


async def test_a_body_within_the_limit_still_arrives_whole_when_chunked(client):
    payload = json.dumps({**STREETLIGHT_G11, "description": "d" * 3000}).encode()

    async def pieces():
        for start in range(0, len(payload), 100):
            yield payload[start : start + 100]

    r = await client.post("/v1/reports", content=pieces(), headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text


async def test_huge_headers_are_refused_and_header_values_are_capped(client):
    r = await client.post("/v1/reports", json=STREETLIGHT_G11, headers={"Idempotency-Key": "k" * 1024 * 1024})
    assert r.status_code == 431 and "16 KB" in r.json()["detail"]
    r = await client.post("/v1/reports", json=STREETLIGHT_G11, headers={"Idempotency-Key": "k" * 5000})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["header", "idempotency-key"] and len(problem["input"]) < 120
    r = await client.get("/v1/cases/x", headers={"X-Tracking-Token": "t" * 5000})
    assert r.status_code == 422


async def test_an_error_echoes_only_a_short_excerpt_of_the_input(client):
    r = await client.post("/v1/reports", json={**STREETLIGHT_G11, "description": "d" * 200_000})
    assert r.status_code == 422 and len(r.content) < 1000, len(r.content)
    [problem] = r.json()["detail"]
    assert problem["input"].startswith("d" * 80) and "200000 characters" in problem["input"]


# --- strict JSON --------------------------------------------------------------------------


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
async def test_nan_and_infinity_are_refused_by_name_in_strict_json(client, number):
    body = b'{"category": "garbage", "description": "d", "location": {"lat": %s, "lon": 114.3}}' % number
    r = await client.post("/v1/reports", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    detail = json.loads(r.content, parse_constant=lambda c: pytest.fail(f"bare {c} in the body"))["detail"]
    [problem] = detail
    assert problem["loc"] == ["body", "location", "lat"]
    assert "NaN and Infinity" in problem["msg"] and "less than" not in problem["msg"]
    assert problem["input"] == number.decode() and number.decode() in problem["msg"]


# --- one error mapping --------------------------------------------------------------------


async def test_a_ticket_error_subclass_nobody_listed_still_gets_its_parents_status(
    client, embedded_settings, monkeypatch
):
    class TicketGone(TicketNotFound):
        """A kind of ticket error the API has never heard of."""

    class TicketFrozen(TicketConflict):
        pass

    from tests.support.staff import enrol

    tokens = await enrol(embedded_settings.db_url, embedded_settings.secret_key.get_secret_value(), ["U-G11"])
    token = tokens("U-G11")
    for error, status in ((TicketGone("archived"), 404), (TicketFrozen("frozen for audit"), 409)):

        async def refuse(self, ticket_id, staff, error=error):
            raise error

        monkeypatch.setattr(Desk, "claim", refuse)
        r = await client.post("/v1/tickets/t1/claim", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status and r.json() == {"detail": str(error), "code": error.code}


async def test_an_unexpected_failure_is_a_500_in_json_never_a_traceback(embedded_settings):
    from services.runtime.app import create_app
    from services.runtime.context import ServiceParts

    ctx = build_context(embedded_settings)
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    app = create_app(ctx, [ServiceParts("x", router, store=None)], title="t")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/boom")
    assert r.status_code == 500 and "secret" not in r.text and r.json()["detail"]
    await ctx.db.dispose()


# --- refusals a client can act on, in Chinese when asked ----------------------------------------


async def test_every_refusal_has_a_stable_code_and_chinese_when_the_client_asks_for_it(client):
    zh = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    forged = {"Authorization": "Bearer not.a.token", **zh}
    r = await client.get("/v1/me", headers=forged)
    assert r.status_code == 401
    assert r.json()["code"] == "token_invalid" and r.json()["message"] == "令牌无效，请重新登录"
    assert r.json()["detail"].startswith("invalid token")  # the English, as before
    r = await client.get("/v1/me", headers={"Authorization": "Bearer not.a.token"})
    assert r.json()["code"] == "token_invalid" and "message" not in r.json()  # English only, unless asked

    too_long = {**STREETLIGHT_G11, "description": "楼" * 4001}
    r = await client.post("/v1/reports", json=too_long, headers=zh)
    assert r.status_code == 422 and r.json()["code"] == "invalid" and r.json()["message"] == "填写的内容有误"
    [problem] = r.json()["detail"]
    assert problem["type"] == "string_too_long" and problem["message"] == "description：最多 4000 个字"
    r = await client.post("/v1/reports", json={**STREETLIGHT_G11, "category": None}, headers=zh)
    assert "category：须为文字" in [p["message"] for p in r.json()["detail"]]


async def test_the_services_own_refusals_are_said_in_chinese_too(client):
    """Not only pydantic's: a place in two forms, blank words, a point outside every grid, an
    unknown community on the public feed each have a kind of their own and its Chinese."""
    zh = {"Accept-Language": "zh-CN"}

    async def said(method: str, path: str, **kwargs) -> list[tuple[str, str]]:
        r = await client.request(method, path, headers=zh, **kwargs)
        assert r.status_code == 422, r.text
        return [(p["type"], p["message"]) for p in r.json()["detail"]]

    both = {**STREETLIGHT_G11, "location": {"lat": 30.505, "lon": 114.305, "grid_id": "G11"}}
    assert await said("POST", "/v1/reports", json=both) == [
        ("one_location", "location：位置只能用一种方式给出：经纬度、地址或网格编号，三选一")
    ]
    half = {**STREETLIGHT_G11, "location": {"lat": 30.505}}
    assert ("lat_and_lon", "location：经度和纬度须同时填写") in await said("POST", "/v1/reports", json=half)
    blank = {**STREETLIGHT_G11, "description": " \u200b "}
    assert await said("POST", "/v1/reports", json=blank) == [("blank", "description：不能为空，请用文字说明")]
    afar = {**STREETLIGHT_G11, "location": {"lat": 1.0, "lon": 1.0}}
    assert await said("POST", "/v1/reports", json=afar) == [
        ("outside_jurisdiction", "location：这个位置不在本区任何网格内，请检查坐标")
    ]
    assert await said("GET", "/v1/public/results", params={"community": "NOPE"}) == [
        ("unknown_community", "community：没有这个社区，请从列表中选择")
    ]


def test_every_kind_of_refusal_the_code_raises_has_its_chinese():
    """Every kind named where a refusal is raised (`refused(kind, …)`, `Invalid(…, kind=…)`, a
    rejected report's kind) is in the Chinese table: none falls back to its English."""

    root = Path(__file__).resolve().parents[2]
    sources = [
        p for d in ("services", "intake", "dispatcher", "departments", "notifier") for p in (root / d).rglob("*.py")
    ]
    named = re.compile(r'refused\(\s*"(\w+)"|kind="(\w+)"|ReportRejected\([^)]*?"(\w+)"\s*\)', re.S)
    kinds = {k for p in sources for m in named.finditer(p.read_text()) for k in m.groups() if k}
    assert {"blank", "one_location", "unknown_category", "invalid_attribute", "needs_time_zone"} <= kinds
    assert sorted(kinds - set(PROBLEMS)) == []
