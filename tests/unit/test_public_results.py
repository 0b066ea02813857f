"""公示 on the embedded stack with an injected clock: resolved cases of public categories appear
in the feed, the page and Open311's updates with their result and none of the resident's data;
private categories and one-key calls never do; pages cover everything once; filters and bad
input."""

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest

from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, case_in_status, file_report, open_ticket

NAME, PHONE = "Zhang Xiaoming", "13912345678"
G11 = {"lat": 30.505, "lon": 114.305}  # Maple Lane Grid 1, community C1
G21 = {"lat": 30.505, "lon": 114.315}  # Stone Bridge Grid 1, community C2


@pytest.fixture
async def stack(embedded_settings):
    async with running(embedded_settings, clock=frozen_clock(), handlers=True, timer_interval=0.05) as app:
        yield app.client, app.tokens, app.clock


def spot(place: dict[str, float], i: int) -> dict[str, float]:
    """Points 100 m apart: never taken for one problem reported twice."""
    return {
        "lat": round(place["lat"] + 0.0009 * (i // 5) - 0.004, 6),
        "lon": round(place["lon"] + 0.0009 * (i % 5) - 0.002, 6),
    }


async def resolved(client, tokens, clock, body, note="Heap cleared, corridor washed"):
    case = await file_report(client, body)
    unit = (await case_in_status(client, case, "assigned"))["unit_id"]
    worker = tokens(unit)
    ticket = await open_ticket(client, unit, worker, case["case_id"])
    for action, sent in (("claim", None), ("resolve", {"note": note})):
        r = await client.post(f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(worker), json=sent)
        assert r.status_code == 200, r.text
    await case_in_status(client, case, "resolved")
    clock.advance(timedelta(minutes=5))
    return case


async def results(client, **params):
    r = await client.get("/v1/public/results", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def garbage(place=G11, i=0, **extra):
    return {"category": "garbage", "description": f"rubbish heap {i}", "location": spot(place, i), **extra}


async def test_a_resolved_public_case_shows_its_result_and_nothing_personal(stack):
    client, tokens, clock = stack
    contact = {"name": NAME, "phone": PHONE}
    case = await resolved(client, tokens, clock, {**garbage(), "contact": contact})
    noise = await resolved(
        client, tokens, clock, {"category": "noise", "description": "loud", "location": spot(G11, 1)}
    )
    one_key = await resolved(client, tokens, clock, {**garbage(i=2), "channel": "one_key"})

    feed = await results(client)
    assert [r["case_id"] for r in feed["results"]] == [case["case_id"]]
    [shown] = feed["results"]
    assert shown["category"] == {
        "code": "garbage",
        "name": "Garbage piled in a corridor or public space",
        "name_zh": "垃圾堆放",
    }
    assert shown["community"]["id"] == "C1" and shown["community"]["name_zh"] == "枫林社区"
    assert shown["grid"] == {"id": "G11", "name": "Maple Lane Grid 1", "name_zh": "枫林社区第一网格"}
    assert shown["resolved_by"] == {
        "unit_id": "U-G11",
        "name": "Grid G11 workstation",
        "name_zh": "枫林社区第一网格工作站",
    }
    assert (shown["status"], shown["result_note"], shown["satisfaction"]) == (
        "resolved",
        "Heap cleared, corridor washed",
        None,
    )
    assert shown["resolved_at"].endswith("+08:00") and shown["closed_at"] is None
    assert set(shown) == {
        "case_id", "status", "category", "community", "grid", "reported_at", "resolved_at", "closed_at",
        "resolved_by", "result_note", "satisfaction",
    }  # fmt: skip

    r = await client.post(
        f"/v1/cases/{case['case_id']}/satisfaction",
        json={"answer": "satisfied", "comment": f"thanks, {NAME}"},
        headers={"X-Tracking-Token": case["tracking_token"]},
    )
    assert r.status_code == 202, r.text
    await case_in_status(client, case, "closed")
    [shown] = (await results(client))["results"]
    assert (shown["status"], shown["satisfaction"]) == ("closed", "satisfied") and shown["closed_at"]

    page = await client.get("/public")
    assert page.status_code == 200 and "Heap cleared, corridor washed" in page.text and "满意" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # the page runs no script at all
    [row] = re.findall(r'<tr class="result".*?</tr>', page.text, re.S)
    for chinese in ("垃圾堆放", "枫林社区 / 枫林社区第一网格", "枫林社区第一网格工作站"):
        assert chinese in row
    assert not re.search("[A-Za-z]{3,}", re.sub("<[^>]+>|Heap cleared, corridor washed", "", row))
    assert "石桥社区" in page.text  # the community filter
    english = await client.get("/public", params={"lang": "en"})
    assert "Satisfied" in english.text and "Maple Lane Community" in english.text
    [row] = re.findall(r'<tr class="result".*?</tr>', english.text, re.S)
    assert "Maple Lane Community / Maple Lane Grid 1" in row and "Grid G11 workstation" in row
    assert not re.search("[\u4e00-\u9fff]", english.text.split("</header>")[1])
    updates = await client.get("/open311/v2/servicerequestupdates.json")
    for text in (r.text for r in (await client.get("/v1/public/results"), page, english, updates)):
        for private in (NAME, PHONE, "rubbish heap", "30.505", "114.305"):
            assert private not in text
        assert noise["case_id"] not in text and one_key["case_id"] not in text


async def test_pages_cover_every_result_once_newest_first_and_filters_narrow_them(stack):
    client, tokens, clock = stack
    c1 = [await resolved(client, tokens, clock, garbage(i=i)) for i in range(4)]
    c2 = [await resolved(client, tokens, clock, garbage(G21, i)) for i in range(2)]
    seen, cursor = [], None
    while True:
        page = await results(client, limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["results"]) <= 2
        seen += page["results"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert [r["case_id"] for r in seen] == [c["case_id"] for c in reversed(c1 + c2)]
    assert [r["resolved_at"] for r in seen] == sorted((r["resolved_at"] for r in seen), reverse=True)

    in_c2 = await results(client, community="C2")
    assert {r["case_id"] for r in in_c2["results"]} == {c["case_id"] for c in c2}
    assert (await results(client, category="streetlight"))["results"] == []
    assert len((await results(client, category="garbage", community="C1", limit=100))["results"]) == 4

    html = await client.get("/public", params={"community": "C2", "category": "", "lang": "en"})
    assert html.status_code == 200 and html.text.count('class="result"') == 2 and "next-page" not in html.text
    paged = await client.get("/public", params={"limit": 3})
    assert paged.text.count('class="result"') == 3 and 'id="next-page"' in paged.text


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"community": "C99"}, "unknown community 'C99'"),
        ({"category": "nothing"}, "unknown category 'nothing'"),
        ({"category": "noise"}, "'noise' is not published"),
        ({"cursor": "not-a-cursor"}, "cursor is not one this API gave"),
        ({"cursor": "WyJ4Il0"}, "cursor is not one this API gave"),
        ({"limit": 0}, ""),
        ({"limit": 101}, ""),
    ],
)
async def test_bad_input_is_a_422_that_says_what_is_wrong(stack, params, says):
    client, _, _ = stack
    r = await client.get("/v1/public/results", params=params)
    assert r.status_code == 422, r.text
    assert says in r.text and r.json()["detail"][0]["msg"]
    if says:  # the page says it in the reader's words, not the API's
        page = await client.get("/public", params=params)
        assert (
            page.status_code == 422
            and "没有这个社区或类别" in page.text
            and says not in page.text.replace("&#39;", "'")
        )
        english = await client.get("/public", params={**params, "lang": "en"})
        assert "There is no such community or category" in english.text


async def test_open311_updates_list_each_public_step_in_the_window_in_json_and_xml(stack):
    client, tokens, clock = stack
    start = clock.now()
    case = await resolved(client, tokens, clock, garbage())
    await resolved(client, tokens, clock, {"category": "noise", "description": "loud", "location": spot(G11, 1)})
    params = {"start_date": start.isoformat(), "end_date": clock.now().isoformat()}

    r = await client.get("/open311/v2/servicerequestupdates.json", params=params)
    assert r.status_code == 200, r.text
    updates = r.json()
    assert {u["service_request_id"] for u in updates} == {case["case_id"]}
    steps = [(u["status"], u["description"]) for u in updates]
    assert steps[0] == ("open", "Received; being routed to the responsible grid.")
    assert steps[-1][0] == "closed" and steps[-1][1].startswith("Resolved by")
    assert [u["updated_datetime"] for u in updates] == sorted(u["updated_datetime"] for u in updates)
    assert all(u["updated_datetime"].endswith("+08:00") and u["media_url"] is None for u in updates)
    assert len({u["update_id"] for u in updates}) == len(updates)

    xml = await client.get("/open311/v2/servicerequestupdates.xml", params=params)
    assert xml.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(xml.content)
    assert root.tag == "service_requests_updates"
    assert [u.findtext("update_id") for u in root.findall("request_update")] == [u["update_id"] for u in updates]

    later = {"start_date": (clock.now() + timedelta(hours=1)).isoformat()}
    assert (await client.get("/open311/v2/servicerequestupdates.json", params=later)).json() == []
    for bad, says in (
        ({"start_date": "yesterday"}, "start_date must be a w3 date-time"),
        ({"start_date": "2026-11-01T00:00:00"}, "must include a time zone"),
        ({"start_date": "2026-11-02T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"}, "after end_date"),
        ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-11-01T00:00:00Z"}, "more than 90 days"),
    ):
        r = await client.get("/open311/v2/servicerequestupdates.json", params=bad)
        assert r.status_code == 400 and says in r.json()[0]["description"], r.text


async def test_an_unsatisfied_answer_takes_the_case_off_the_feed_until_it_is_resolved_again(stack):
    client, tokens, clock = stack
    case = await resolved(client, tokens, clock, garbage(), note="swept")
    r = await client.post(
        f"/v1/cases/{case['case_id']}/satisfaction",
        json={"answer": "unsatisfied", "comment": "still there"},
        headers={"X-Tracking-Token": case["tracking_token"]},
    )
    assert r.status_code == 202, r.text
    await case_in_status(client, case, "assigned")
    assert (await results(client))["results"] == []

    worker = tokens("U-G11")
    ticket = await open_ticket(client, "U-G11", worker, case["case_id"])
    for action, sent in (("claim", None), ("resolve", {"note": "removed by truck"})):
        r = await client.post(f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(worker), json=sent)
        assert r.status_code == 200, r.text
    await case_in_status(client, case, "resolved")
    [shown] = (await results(client))["results"]
    assert (shown["result_note"], shown["satisfaction"], shown["status"]) == ("removed by truck", None, "resolved")
