"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) as a client sees it: every
resource in JSON and XML, the spec's fields and error format, in-process on the embedded stack."""

import asyncio
from datetime import UTC, timedelta
from xml.etree import ElementTree

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from gridcall.cli import app as cli
from intake.keys import create_api_key
from intake.tables import case_views
from services.district.clock import SystemClock
from tests.support.apps import running
from tests.support.clock import frozen_clock, local, local_midnight
from tests.support.journey import bearer, open_ticket
from tests.support.waiting import eventually

V2 = "/open311/v2"
REQUEST_FIELDS = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
]
W3 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$"


@pytest.fixture
async def open311(embedded_settings):
    async with running(embedded_settings, clock=frozen_clock(), handlers=True, timer_interval=0.05) as app:
        client, ctx = app.client, app.app.state.ctx
        client.clock, client.db, client.unit = app.clock, ctx.db, ctx.jurisdiction.unit  # type: ignore[attr-defined]
        client.staff = app.tokens  # type: ignore[attr-defined]
        client.key = await create_api_key(ctx.db, app.clock, "test app")  # type: ignore[attr-defined]
        yield client


def xml(r: httpx.Response) -> ElementTree.Element:
    assert r.headers["content-type"] == "text/xml; charset=utf-8"
    assert r.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ElementTree.fromstring(r.content)


def as_json(r: httpx.Response):
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    return r.json()


def spec_error(r: httpx.Response, status: int) -> str:
    """The spec's error format, in either format: [{code, description}] / <errors><error>."""
    assert r.status_code == status, r.text
    if r.headers["content-type"].startswith("text/xml"):
        (error,) = xml(r).findall("error")
        assert error.findtext("code") == str(status)
        return error.findtext("description") or ""
    [error] = as_json(r)
    assert set(error) == {"code", "description"} and error["code"] == status
    return error["description"]


async def post_request(client, fmt="json", **fields):
    form = {"api_key": client.key, "service_code": "garbage", "lat": "30.505", "long": "114.305", **fields}
    return await client.post(f"{V2}/requests.{fmt}", data={k: v for k, v in form.items() if v is not None})


async def cases(client) -> int:
    async with client.db.sessions() as s:
        return await s.scalar(select(func.count()).select_from(case_views))


async def test_discovery_names_the_spec_and_both_formats(open311):
    doc = as_json(await open311.get(f"{V2}/discovery.json"))
    assert set(doc) == {"changeset", "contact", "key_service", "endpoints"}
    [endpoint] = doc["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == "http://gridcall/open311/v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    root = xml(await open311.get(f"{V2}/discovery.xml"))
    assert root.tag == "discovery"
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == ["text/xml", "application/json"]


async def test_services_list_every_category_in_both_formats(open311):
    services = as_json(await open311.get(f"{V2}/services.json"))
    fields = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
    assert all(set(s) == fields and s["type"] == "realtime" for s in services)
    by_code = {s["service_code"]: s for s in services}
    assert by_code["elevator"]["metadata"] is True and by_code["garbage"]["metadata"] is False
    assert by_code["garbage"]["group"] == "Urban Management Bureau"
    assert "垃圾堆放" in by_code["garbage"]["keywords"]

    root = xml(await open311.get(f"{V2}/services.xml"))
    assert root.tag == "services"
    assert [s.findtext("service_code") for s in root.findall("service")] == list(by_code)
    elevator = next(s for s in root.findall("service") if s.findtext("service_code") == "elevator")
    assert [c.tag for c in elevator] == list(by_code["elevator"])
    assert elevator.findtext("metadata") == "true"


async def test_a_service_definition_lists_its_attributes(open311):
    definition = as_json(await open311.get(f"{V2}/services/elevator.json"))
    assert definition["service_code"] == "elevator"
    building, trapped = definition["attributes"]
    assert building == {
        "variable": True,
        "code": "building",
        "datatype": "string",
        "required": True,
        "datatype_description": None,
        "order": 1,
        "description": "Building and lift (e.g. 3-2)",
        "values": [],
    }
    assert (trapped["datatype"], trapped["order"]) == ("singlevaluelist", 2)
    assert trapped["values"] == [{"key": "yes", "name": "Yes"}, {"key": "no", "name": "No"}]

    root = xml(await open311.get(f"{V2}/services/elevator.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "elevator"
    attribute = root.findall("attributes/attribute")[1]
    assert attribute.findtext("required") == "true" and attribute.findtext("variable") == "true"
    assert [v.findtext("key") for v in attribute.findall("values/value")] == ["yes", "no"]
    assert root.find("attributes/attribute/datatype_description").text is None  # an empty element

    assert "bin_overflow" in spec_error(await open311.get(f"{V2}/services/bin_overflow.json"), 404)
    assert "bin_overflow" in spec_error(await open311.get(f"{V2}/services/bin_overflow.xml"), 404)


async def test_a_posted_request_is_a_case_with_every_field_the_spec_lists(open311):
    r = await post_request(
        open311,
        service_code="elevator",
        description="Lift stuck between floors 3 and 4",
        address_string="3 Maple Lane",
        email="wang@example.cn",
        first_name="Wei",
        last_name="Wang",
        phone="+86 138 0000 0000",
        account_id="acct-7",
        device_id="device-1",
        media_url="https://img.example.cn/lift.jpg",
        **{"attribute[building]": "3-2", "attribute[trapped]": "no"},
    )
    assert r.status_code == 200, r.text
    [answer] = as_json(r)
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}  # realtime: no token
    assert answer["account_id"] == "acct-7"
    assert "community tier" in answer["service_notice"]
    case_id = answer["service_request_id"]

    async def assigned():
        [req] = as_json(await open311.get(f"{V2}/requests/{case_id}.json"))
        return req if req["agency_responsible"] else None

    req = await eventually(assigned)
    assert list(req) == REQUEST_FIELDS
    assert req["status"] == "open"
    community = open311.unit("U-C1").name
    assert req["status_notes"] == f"Assigned to {community} (community tier)."
    assert (req["service_code"], req["service_name"]) == ("elevator", "Elevator out of service")
    assert req["description"] == "Lift stuck between floors 3 and 4"
    assert req["agency_responsible"] == community
    assert req["address"].startswith("3 Maple Lane, ")  # most specific first
    assert req["media_url"] == "https://img.example.cn/lift.jpg"
    assert (req["lat"], req["long"]) == (30.505, 114.305)
    for field in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert req[field] is not None and req[field].endswith("+08:00"), field
    assert req["requested_datetime"] == local().isoformat()
    assert "wang" not in r.text.lower() + str(req).lower()  # contact details are never published

    root = xml(await open311.get(f"{V2}/requests/{case_id}.xml"))
    assert root.tag == "service_requests"
    [request] = root.findall("request")
    assert [c.tag for c in request] == REQUEST_FIELDS
    assert request.findtext("status") == "open" and request.find("zipcode").text is None

    # the handler sees what the Open311 client sent
    ticket = await open_ticket(open311, "U-C1", open311.staff("U-C1"), case_id)
    assert ticket["details"]["attributes"] == {"building": "3-2", "trapped": "no"}


async def test_a_multivaluelist_takes_repeated_values(open311):
    r = await post_request(
        open311, service_code="noise", **{"attribute[when][]": ["night", "weekend"], "description": "Karaoke"}
    )
    assert r.status_code == 200, r.text
    r = await post_request(open311, service_code="noise", **{"attribute[when][]": ["night", "noon"]})
    assert "when" in spec_error(r, 400)


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"api_key": None}, 403, "api_key was not provided"),
        ({"api_key": "guessed"}, 403, "Invalid api_key"),
        ({"service_code": None}, 400, "service_code was not provided"),
        ({"service_code": "bin_overflow"}, 404, "'bin_overflow' was not found"),
        ({"lat": None, "long": None}, 400, "a location is required"),
        ({"long": None}, 400, "lat and long must both be sent"),
        ({"lat": "north"}, 400, "WGS84"),
        ({"lat": "10.0", "long": "10.0"}, 400, "outside every grid"),
        ({"lat": None, "long": None, "address_string": "99 Nowhere Road"}, 400, "not in the address table"),
        ({"lat": None, "long": None, "address_id": "545483"}, 400, "address_id is not known here"),
        ({"service_code": "elevator"}, 400, "'building': required"),
        ({"attribute[floor]": "2"}, 400, "unknown attribute"),
        ({"email": "not-an-address"}, 400, "email is not valid"),
        ({"media_url": "ftp://example.cn/x.jpg"}, 400, "http or https"),
        ({"description": "x" * 4001}, 400, "4,000 characters"),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_bad_requests_get_the_spec_error_and_leave_nothing_behind(open311, fields, status, says, fmt):
    r = await post_request(open311, fmt, **fields)
    assert says in spec_error(r, status)
    assert await cases(open311) == 0


async def test_requests_are_listed_with_the_specs_filters_and_defaults(open311):
    clock = open311.clock
    old = as_json(await post_request(open311, description="Old bags"))[0]["service_request_id"]
    clock.advance(timedelta(days=100))
    light = as_json(await post_request(open311, service_code="streetlight", lat="30.515", long="114.305"))
    garbage = as_json(await post_request(open311, description="New bags", lat="30.525", long="114.305"))
    light, garbage = light[0]["service_request_id"], garbage[0]["service_request_id"]

    async def listed(**query):
        r = await open311.get(f"{V2}/requests.json", params=query)
        assert r.status_code == 200, r.text
        return [q["service_request_id"] for q in r.json()]

    assert await listed() == [garbage, light]  # the last 90 days, newest first
    assert await listed(service_code="streetlight,noise") == [light]
    assert await listed(status="open") == [garbage, light] and await listed(status="closed") == []
    assert await listed(service_request_id=f"{old},{light}", status="closed") == [light, old]  # overrides the rest
    window = {"start_date": local_midnight(-1).astimezone(UTC).isoformat(), "end_date": local_midnight(1).isoformat()}
    assert await listed(**window) == [old]
    assert await listed(end_date=local(8).astimezone(UTC).isoformat()) == [old]
    r = await open311.get(f"{V2}/requests.xml", params={"start_date": local(101).astimezone(UTC).isoformat()})
    assert [q.findtext("service_request_id") for q in xml(r).findall("request")] == []

    bad = [
        ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}, "more than 90 days"),
        ({"start_date": "2026-03-01T00:00:00Z", "end_date": "2026-02-01T00:00:00Z"}, "after end_date"),
        ({"start_date": "yesterday"}, "w3 date-time"),
        ({"end_date": "2026-02-01T00:00:00"}, "time zone"),
        ({"status": "pending"}, "'pending' is not one of: open, closed"),
    ]
    for query, says in bad:
        assert says in spec_error(await open311.get(f"{V2}/requests.json", params=query), 400)


async def test_status_follows_the_case_resolved_is_closed_and_a_reopened_case_is_open(open311):
    """Open311's `closed` is "it has been resolved"; the resident's unsatisfied answer reopens it."""
    r = await open311.post(
        "/v1/reports", json={"category": "garbage", "description": "Bags", "location": {"grid_id": "G11"}}
    )
    case = r.json()
    ticket = await open_ticket(open311, "U-G11", open311.staff("U-G11"), case["case_id"])
    for action, body in (("claim", None), ("resolve", {"note": "Cleared by the grid team"})):
        r = await open311.post(
            f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(open311.staff("U-G11")), json=body
        )
        assert r.status_code == 200, r.text

    async def request_when(status: str, notes: str):
        [req] = as_json(await open311.get(f"{V2}/requests/{case['case_id']}.json"))
        return req if (req["status"], req["status_notes"]) == (status, notes) else None

    grid_unit = open311.unit("U-G11").name
    req = await eventually(lambda: request_when("closed", f"Resolved by {grid_unit}."))  # staff notes stay inside
    assert req["agency_responsible"] == grid_unit
    r = await open311.post(
        f"/v1/cases/{case['case_id']}/satisfaction",
        headers={"X-Tracking-Token": case["tracking_token"]},
        json={"answer": "unsatisfied", "comment": "Still there"},
    )
    assert r.status_code == 202, r.text
    # reopened, and handed back to the unit that resolved it
    await eventually(lambda: request_when("open", f"Assigned to {open311.unit('U-G11').name} (grid tier)."))


async def test_a_tracking_token_resolves_to_its_request(open311):
    r = await open311.post(
        "/v1/reports", json={"category": "garbage", "description": "Bags", "location": {"grid_id": "G12"}}
    )
    case = r.json()
    [found] = as_json(await open311.get(f"{V2}/tokens/{case['tracking_token']}.json"))
    assert found == {"service_request_id": case["case_id"], "token": case["tracking_token"]}
    assert "token" in spec_error(await open311.get(f"{V2}/tokens/not-a-token.xml"), 404)


async def test_unknown_resources_and_formats_are_spec_errors(open311):
    assert "csv" in spec_error(await open311.get(f"{V2}/services.csv"), 404)
    assert "no such resource" in spec_error(await open311.get(f"{V2}/reports.json"), 404)
    assert "not found" in spec_error(await open311.get(f"{V2}/requests/nope.json"), 404)
    assert "PUT" in spec_error(await open311.put(f"{V2}/requests.json"), 405)
    # one jurisdiction is served, so jurisdiction_id is ignored, as the spec allows
    assert (await open311.get(f"{V2}/services.json?jurisdiction_id=lanxi.gov.cn")).status_code == 200


async def test_the_cli_issues_a_key_that_works_until_it_is_revoked(embedded_settings, monkeypatch):
    monkeypatch.setenv("GRIDCALL_VAR_DIR", str(embedded_settings.var_dir))

    async def gridcall(*args: str):  # the CLI runs its own event loop: give it a thread
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args))

    made = await gridcall("open311-key", "create", "Lanxi app")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    again = await gridcall("open311-key", "create", "Lanxi app")
    assert again.exit_code == 2 and "exists already" in again.output
    form = {"api_key": key, "service_code": "garbage", "lat": "30.505", "long": "114.305"}

    async with running(embedded_settings) as started:
        c = started.client
        assert (await c.post(f"{V2}/requests.json", data=form)).status_code == 200
        assert (await gridcall("open311-key", "revoke", "Lanxi app")).exit_code == 0
        assert "Invalid api_key" in spec_error(await c.post(f"{V2}/requests.json", data=form), 403)
    assert (await gridcall("open311-key", "revoke", "Lanxi app")).exit_code == 1


FORM_KEYS = [
    "api_key",
    "service_code",
    "lat",
    "long",
    "address_string",
    "address_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "description",
    "media_url",
    "account_id",
    "device_id",
    "jurisdiction_id",
    "attribute[building]",
    "attribute[trapped]",
    "attribute[when][]",
    "attribute[]",
    "attribute[floor",
]
GOOD = {
    "service_code": ["garbage", "elevator", "noise", "streetlight", ""],
    "lat": ["30.505", "30.5", "-91", "nan", "1e309"],
    "long": ["114.305", "114.3", "181", "inf"],
    "address_string": ["3 Maple Lane", "  "],
    "attribute[trapped]": ["yes", "no", "maybe"],
    "attribute[when][]": ["night", "weekend", "noon"],
    "media_url": ["https://img.example.cn/a.jpg", "javascript:alert(1)"],
}


VALUE = st.one_of(st.text(max_size=30), st.sampled_from(sorted({v for vs in GOOD.values() for v in vs})))
BASE = {"service_code": "garbage", "lat": "30.505", "long": "114.305"}
CHANGES = st.dictionaries(st.sampled_from(FORM_KEYS), VALUE, max_size=6)
FORMS = st.tuples(CHANGES, st.sets(st.sampled_from(sorted(BASE)))).map(
    lambda cd: {k: v for k, v in {**BASE, **cd[0]}.items() if k not in cd[1]}
)


async def test_any_form_gets_an_answer_or_a_spec_error_never_a_500(open311):
    """Random POST requests forms, with the valid key or not: 200 with a request, or 400/403/404
    in the spec's error format; nothing else."""
    loop, seen = asyncio.get_running_loop(), set()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(form=FORMS, keyed=st.booleans(), fmt=st.sampled_from(["json", "xml"]))
    def post(form, keyed, fmt):  # Hypothesis drives from a thread; the app runs on this loop
        data = {**form, "api_key": open311.key} if keyed else form
        r = asyncio.run_coroutine_threadsafe(open311.post(f"{V2}/requests.{fmt}", data=data), loop).result()
        seen.add(r.status_code)
        if r.status_code == 200:
            [answer] = as_json(r) if fmt == "json" else [{c.tag: c.text for c in xml(r).find("request")}]
            assert set(answer) == {"service_request_id", "service_notice", "account_id"}
        else:
            assert r.status_code in (400, 403, 404), r.text
            assert spec_error(r, r.status_code)

    await asyncio.to_thread(post)
    assert {200, 400, 403} <= seen, seen  # the forms reached every branch, not only the first check


async def test_an_open311_client_over_its_rate_gets_429_in_the_spec_format(embedded_settings):
    async with running(embedded_settings, rate_limit="3/minute") as started:
        app, c = started.app, started.client
        key = await create_api_key(app.state.ctx.db, SystemClock(), "busy app")
        for _ in range(3):
            assert (await c.get(f"{V2}/services.xml")).status_code == 200
        r = await c.get(f"{V2}/services.xml")
        assert "at most 3 per 1 minute" in spec_error(r, 429)
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        # a POST counts against its API key, not the address it comes from
        form = {"api_key": key, "service_code": "garbage", "lat": "30.505", "long": "114.305"}
        assert (await c.post(f"{V2}/requests.json", data=form)).status_code == 200


async def test_the_public_listing_shows_a_residents_words_only_where_they_are_public(open311):
    """Open311 reports of public problems show what the resident wrote; reports from other
    channels show only the grid; problems inside homes, between neighbours, from flagged
    households or one-key calls are not listed at all, and their details never show."""
    own = as_json(await post_request(open311, description="Bags by the gate", media_url="https://x.cn/a.jpg"))
    own = own[0]["service_request_id"]
    private = as_json(await post_request(open311, service_code="noise", description="Neighbour's karaoke"))
    private = private[0]["service_request_id"]
    app_body = {"category": "garbage", "description": "Mattress dumped", "location": {"lat": 30.515, "lon": 114.305}}
    app = (await open311.post("/v1/reports", json=app_body)).json()["case_id"]
    one_key = {**app_body, "category": "one_key_help", "channel": "one_key", "location": {"grid_id": "G21"}}
    assert (await open311.post("/v1/reports", json=one_key)).status_code == 202
    flagged = {**app_body, "household_flag": "blue", "location": {"grid_id": "G22"}}
    r = await open311.post("/v1/reports", json=flagged, headers=bearer(open311.staff("U-G22")))
    assert r.status_code == 202, r.text

    listed = {q["service_request_id"]: q for q in as_json(await open311.get(f"{V2}/requests.json"))}
    assert set(listed) == {own, app}
    assert listed[own]["description"] == "Bags by the gate" and listed[own]["media_url"] == "https://x.cn/a.jpg"
    assert (listed[own]["lat"], listed[own]["long"]) == (30.505, 114.305)
    assert listed[app]["description"] is None and listed[app]["media_url"] is None
    assert (listed[app]["lat"], listed[app]["long"]) == (30.515, 114.305)  # the grid's centre, not the point
    assert listed[app]["address"].startswith("Maple Lane Grid 2, ")
    assert "Mattress" not in str(listed) and "karaoke" not in str(listed)

    [kept] = as_json(await open311.get(f"{V2}/requests/{private}.json"))  # its id still finds it
    assert kept["status"] == "open" and kept["description"] is None and "karaoke" not in str(kept)
    assert as_json(await open311.get(f"{V2}/requests.json", params={"service_request_id": private})) == []


async def test_text_that_xml_cannot_carry_does_not_break_the_xml_listing(open311):
    # control characters are refused in free text (see below); noncharacters are not, and XML cannot carry them
    assert (await post_request(open311, description="bell\uffff and\ufffe not-XML")).status_code == 200
    [request] = xml(await open311.get(f"{V2}/requests.xml")).findall("request")
    assert request.findtext("description") == "bell and not-XML"


async def test_control_characters_in_free_text_are_a_400_naming_the_field(open311):
    r = await post_request(open311, description="bell\x07 and\x01 \x1b[31m")
    assert "description contains U+0007" in spec_error(r, 400)
    r = await post_request(open311, description="x", address_string="Maple\x1b[31m Lane")
    assert "address_string contains U+001B" in spec_error(r, 400)
    assert await cases(open311) == 0


async def test_out_of_range_input_is_a_400_not_a_500(open311):
    for query in ({"start_date": "9999-12-31T00:00:00Z"}, {"end_date": "0001-01-01T00:00:00Z"}):
        assert "between the years 1900 and 2199" in spec_error(
            await open311.get(f"{V2}/requests.json", params=query), 400
        )
    r = await post_request(open311, service_code="water_leak", **{"attribute[floor]": "nan"})
    assert "must be a number" in spec_error(r, 400)
    # JSON as Python reads it allows NaN; the v1 API refuses it as well
    body = b'{"category": "water_leak", "description": "drip", "location": {"grid_id": "G11"}, '
    body += b'"attributes": {"floor": NaN}}'
    r = await open311.post("/v1/reports", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert await cases(open311) == 0


async def test_a_multivaluelist_may_come_as_repeated_plain_keys_and_empty_values_are_not_sent(open311):
    r = await post_request(open311, service_code="noise", **{"attribute[when]": ["night", "weekend"]})
    assert r.status_code == 200, r.text
    assert (await post_request(open311, service_code="noise", **{"attribute[when][]": ""})).status_code == 200


async def test_dates_with_an_unencoded_plus_are_read_as_offsets(open311):
    r = await open311.get(f"{V2}/requests.json?start_date=2026-11-01T00:00:00+08:00&end_date=2026-11-03T00:00:00+08:00")
    assert r.status_code == 200, r.text


async def test_invented_api_keys_do_not_get_their_own_rate_window(embedded_settings):
    async with running(embedded_settings, rate_limit="3/minute") as started:
        c = started.client
        for n in range(3):
            assert (await c.get(f"{V2}/services.json", params={"api_key": f"x{n}"})).status_code == 200
        assert (await c.get(f"{V2}/services.json", params={"api_key": "x9"})).status_code == 429
        form = {"api_key": "guessed", "service_code": "garbage", "lat": "30.505", "long": "114.305"}
        spec_error(await c.post(f"{V2}/requests.json", data=form), 429)  # floods without a key are limited too
