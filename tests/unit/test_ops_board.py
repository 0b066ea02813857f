"""The live board at /ops and its breach stream, on the embedded app with a frozen clock.

The stream is read over a real socket (uvicorn in this process): httpx's ASGI transport
gathers a whole response before it answers, and an event stream has no end."""

import asyncio
import json
import re
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx
import pytest

from departments.adapters.asyncapi import SENT
from dispatcher.board.streams import PER_PERSON
from notifier.messages import Channel, Kind
from services.delivery.tables import State
from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, file_report, open_ticket

IN_G11 = {"lat": 30.505, "lon": 114.305}


@pytest.fixture
async def stack(embedded_settings):
    async with running(embedded_settings, clock=frozen_clock(), handlers=True, served=True, timer_interval=0.05) as app:
        yield app.client, app.tokens, app.clock


async def test_the_board_renders_in_both_languages_with_its_own_files_only(stack):
    client, _, _ = stack
    zh = await client.get("/ops")
    assert zh.status_code == 200 and '<html lang="zh-CN">' in zh.text and "超时督办看板" in zh.text
    assert "default-src 'none'" in zh.headers["content-security-policy"]
    en = await client.get("/ops", params={"lang": "en"})
    assert '<html lang="en">' in en.text and "Breach board" in en.text
    chinese, english = board_data(zh.text), board_data(en.text)
    assert (chinese["units"]["U-G11"], english["units"]["U-G11"]) == ("枫林社区第一网格工作站", "Grid G11 workstation")
    assert (chinese["units"]["P-C1"], english["units"]["P-C1"]) == ("枫林社区志愿者队伍", "Maple Lane volunteers")
    assert (chinese["grids"]["G21"], english["grids"]["G21"]) == ("石桥社区第一网格", "Stone Bridge Grid 1")
    assert (chinese["streets"][0], english["streets"][0]["name"]) == ({"id": "S1", "name": "青河街道"}, "Qinghe Street")
    assert chinese["communities"][1]["name"] == "石桥社区" and chinese["categories"]["garbage"] == "垃圾堆放"
    assert not re.search("[\u4e00-\u9fff]", json.dumps({**english, "labels": None}, ensure_ascii=False))
    assert not re.search(r"(src|href)=\"(https?:)?//", zh.text + en.text)
    for name, kind in (("ops.js", "javascript"), ("ops.css", "css")):
        [link] = re.findall(rf'"(/ops/static/{re.escape(name)}\?v=[0-9a-f]+)"', zh.text)
        r = await client.get(link)
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
    assert (await client.get("/ops/static/ops.py")).status_code == 404


async def test_the_failed_deliveries_panel_has_words_for_every_kind_in_both_languages(stack):
    client, _, _ = stack
    zh, en = (await client.get("/ops")).text, (await client.get("/ops", params={"lang": "en"})).text
    assert "投递失败" in zh and 'id="failed-panel"' in zh and "Failed deliveries" in en
    chinese, english = board_data(zh), board_data(en)
    kinds = {k.value for k in Kind} | {kind for _, kind, _ in SENT}  # the notifier's, and units' systems'
    assert set(chinese["kinds"]) == set(english["kinds"]) == kinds
    assert set(chinese["channels"]) == set(english["channels"]) == {c.value for c in Channel}
    assert all(re.search("[\u4e00-\u9fff]", word) for word in chinese["kinds"].values())
    states = {State.DEAD, State.PERMANENT_FAILURE}  # the two the panel lists
    assert all(chinese["labels"][s] and english["labels"][s] for s in states)


def board_data(page: str) -> dict:
    [blob] = re.findall(r'<script id="board-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(blob)


async def test_the_stream_wants_an_ops_token_or_a_ticket(stack):
    client, token, _ = stack
    url = "/v1/ops/breaches/stream"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=bearer("not-a-token"))).status_code == 401
    assert (await client.get(url, params={"ticket": "forged"})).status_code == 401
    assert (await client.get(url, headers=bearer(token("U-G11")))).status_code == 403
    tickets = "/v1/ops/breaches/stream-tickets"
    assert (await client.post(tickets, headers=bearer(token("U-G11")))).status_code == 403
    ticket = (await client.post(tickets, headers=bearer(token()))).json()["ticket"]
    # a ticket opens the stream and nothing else
    assert (await client.get("/v1/ops/breaches", headers=bearer(ticket))).status_code == 401
    assert (await client.get(url, params={"ticket": token()})).status_code == 401


async def events(response: httpx.Response):
    event, data = None, None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and event:
            yield event, data
            event, data = None, None


async def test_a_breach_is_streamed_as_it_is_recorded(stack):
    client, token, clock = stack
    case = await file_report(client, {"category": "bus_stop", "description": "a problem", "location": IN_G11})
    await open_ticket(client, "D-BUS", token("D-BUS"), case["case_id"])
    ticket = (await client.post("/v1/ops/breaches/stream-tickets", headers=bearer(token()))).json()["ticket"]
    async with client.stream("GET", "/v1/ops/breaches/stream", params={"ticket": ticket}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        stream = events(r)
        assert await anext(stream) == ("snapshot", [])
        clock.advance(timedelta(days=3))  # far past the bureau's response limit: supervised (督办)
        event, breach = await asyncio.wait_for(anext(stream), timeout=10)
    assert event == "breach"
    assert (breach["case_id"], breach["unit_id"], breach["tier"], breach["clock"]) == (
        case["case_id"],
        "D-BUS",
        "bureau",
        "response",
    )
    assert breach["supervised"] and breach["late_seconds"] > 0 and breach["breach_id"]
    async with client.stream("GET", "/v1/ops/breaches/stream", headers=bearer(token())) as r:
        event, snapshot = await anext(events(r))
    assert event == "snapshot" and [b["case_id"] for b in snapshot] == [case["case_id"]]


async def test_a_ticket_opens_one_stream_and_a_person_holds_only_a_few(stack):
    """A leaked or replayed ticket opens nothing more, and one officer cannot hold hundreds of
    streams (each was a poll of the database a second); closed streams free their places."""
    client, token, _ = stack
    url = "/v1/ops/breaches/stream"
    ticket = (await client.post("/v1/ops/breaches/stream-tickets", headers=bearer(token()))).json()["ticket"]
    async with client.stream("GET", url, params={"ticket": ticket}) as first:
        reading = events(first)  # kept: a reader let go of closes its stream
        assert first.status_code == 200 and (await anext(reading))[0] == "snapshot"
        again = await client.get(url, params={"ticket": ticket})
        assert again.status_code == 401 and "opened its stream already" in again.json()["detail"]
    assert (await client.get(url, params={"ticket": ticket})).status_code == 401  # spent for good

    async with AsyncExitStack() as held:
        readers = []
        for _ in range(PER_PERSON):
            r = await held.enter_async_context(client.stream("GET", url, headers=bearer(token())))
            readers.append(events(r))
            assert r.status_code == 200 and (await anext(readers[-1]))[0] == "snapshot"
        over = await client.get(url, headers=bearer(token()))
        assert over.status_code == 429 and "close a board first" in over.json()["detail"]
    async with client.stream("GET", url, headers=bearer(token())) as r:  # the places were freed
        assert r.status_code == 200
