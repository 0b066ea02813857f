"""The forms a report can take: where (coordinates, address, grid), what (category attributes,
media), and who (contact or anonymous). Each bad form is a 422 that names what to fix."""

import pytest

from tests.support.apps import running
from tests.support.journey import case_in_status, open_ticket

BASE = {"category": "elevator", "description": "The lift is stuck", "attributes": {"building": "3-2", "trapped": "no"}}


@pytest.fixture
async def client(embedded_settings):
    async with running(embedded_settings, handlers=True) as app:
        app.client.staff = app.tokens  # type: ignore[attr-defined]
        yield app.client


async def filed(client, **body):
    r = await client.post("/v1/reports", json={**BASE, **body})
    assert r.status_code == 202, r.text
    return r.json()


@pytest.mark.parametrize(
    ("location", "grid"),
    [
        ({"address": "8 maple lane"}, "G12"),
        ({"address": " 9, Lotus Pond   Street "}, "G32"),
        ({"grid_id": "G43"}, "G43"),
    ],
)
async def test_an_address_or_a_grid_id_locates_the_report(client, location, grid):
    case = await filed(client, location=location, category="garbage", attributes={})
    view = await case_in_status(client, case, "assigned")
    assert view["unit_id"] == f"U-{grid}"


async def test_the_handler_sees_the_attributes_media_and_address(client):
    case = await filed(
        client, location={"address": "3 Maple Lane"}, media_urls=["https://img.example/lift.jpg"], anonymous=True
    )
    ticket = await open_ticket(client, "U-C1", client.staff("U-C1"), case["case_id"])
    assert ticket["details"] == {
        "address": "3 Maple Lane",
        "attributes": {"building": "3-2", "trapped": "no"},
        "media_urls": ["https://img.example/lift.jpg"],
    }


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"location": {"address": "99 Nowhere Road"}}, "location", "not in the address table"),
        ({"location": {"grid_id": "G99"}}, "location", "no grid 'G99'"),
        ({"location": {"lat": 30.5, "lon": 114.3, "grid_id": "G11"}}, "location", "exactly one of"),
        ({"location": {"lat": 30.5}}, "location", "both lat and lon"),
        ({"attributes": {"building": "3-2"}}, "attributes.trapped", "required: Is anyone trapped"),
        ({"attributes": {"building": "3-2", "trapped": "maybe"}}, "attributes.trapped", "one of ['yes', 'no']"),
        ({"attributes": {**BASE["attributes"], "colour": "red"}}, "attributes.colour", "unknown attribute"),
        ({"media_urls": ["ftp://files.example/a.jpg"]}, "media_urls", "URL scheme should be 'http' or 'https'"),
        ({"media_urls": [f"https://img.example/{i}.jpg" for i in range(6)]}, "media_urls", "at most 5"),
        ({"anonymous": True, "contact": {"name": "Li"}}, "body", "anonymous report cannot carry contact"),
    ],
)
async def test_bad_forms_are_422_naming_what_to_fix(client, change, field, message):
    body = {**BASE, "location": {"lat": 30.505, "lon": 114.305}, **change}
    r = await client.post("/v1/reports", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(field in ".".join(map(str, e["loc"])) and message in e["msg"] for e in errors), errors


async def test_categories_publish_their_questions(client):
    cats = {c["code"]: c for c in (await client.get("/v1/categories")).json()}
    trapped = next(a for a in cats["elevator"]["attributes"] if a["code"] == "trapped")
    assert trapped["required"] and [v["key"] for v in trapped["values"]] == ["yes", "no"]
    assert cats["garbage"]["attributes"] == []


async def test_a_resident_sees_only_the_cases_whose_token_they_hold(client):
    mine = await filed(client, location={"grid_id": "G11"}, contact={"phone": "+86 138 0000 0001"})
    theirs = await filed(client, location={"grid_id": "G12"}, contact={"phone": "+86 138 0000 0001"})
    # no listing by contact (or any other way) for residents
    r = await client.get("/v1/cases", params={"contact": "+86 138 0000 0001"})
    assert r.status_code in (404, 405) and theirs["case_id"] not in r.text
    # a token opens its own case, and looks like "no such case" on any other
    own = await client.get(f"/v1/cases/{mine['case_id']}", headers={"X-Tracking-Token": mine["tracking_token"]})
    assert own.status_code == 200 and "contact" not in own.json()
    other = await client.get(f"/v1/cases/{theirs['case_id']}", headers={"X-Tracking-Token": mine["tracking_token"]})
    missing = await client.get("/v1/cases/no-such-case", headers={"X-Tracking-Token": mine["tracking_token"]})
    assert other.status_code == missing.status_code == 404 and other.json() == missing.json()
