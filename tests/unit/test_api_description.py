"""The API description (/openapi.json) is enough to build a client from, for every audience and
on every service: each operation documents the answers it can give with their bodies, the
answers really fit what is documented, and a newcomer finds the way from `/`."""

from typing import Any

import httpx
import jsonschema_rs  # comes with schemathesis
import pytest

from gridcall.app import build_app
from gridcall.services import BOOTSTRAP
from intake.keys import create_api_key
from services.district.clock import SystemClock
from services.web.auth import Authenticator
from tests.support.apps import lifespan
from tests.support.journey import bearer, case_in_status, file_report
from tests.support.waiting import eventually

APPS = [None, *BOOTSTRAP]  # the embedded app, then each service alone
RATE_LIMITED = {
    ("post", "/v1/reports"),
    ("get", "/v1/cases/{case_id}"),
    ("post", "/v1/cases/{case_id}/satisfaction"),
    ("post", "/v1/cases/{case_id}/cancel"),
}
PROBLEM = {"detail": "a sentence", "code": "a_code"}


async def served_description(settings, service: str | None) -> dict[str, Any]:
    app = build_app(settings, [service] if service else None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as client:
        r = await client.get("/openapi.json")
        assert r.status_code == 200
        return r.json()


def operations(doc: dict[str, Any]):
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def validator(doc: dict[str, Any], schema: dict[str, Any]):
    """Checks a value against a schema of the description, its $refs resolved in the description."""
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


def json_schema(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["content"]["application/json"]["schema"]


@pytest.mark.parametrize("service", APPS, ids=[s or "embedded" for s in APPS])
async def test_every_operation_documents_every_answer_it_can_give_with_its_body(embedded_settings, service):
    doc = await served_description(embedded_settings, service)
    assert doc["paths"], "no operations"
    for method, path, operation in operations(doc):
        where = f"{method.upper()} {path}"
        answers = operation["responses"]
        implied = {"413", "422", "503"}
        if operation.get("security"):
            implied |= {"401", "403"}
        if (method, path) in RATE_LIMITED or path.startswith("/open311/"):
            implied.add("429")
        assert implied <= set(answers), f"{where} does not document {sorted(implied - set(answers))}"
        for status, answer in answers.items():
            assert answer.get("description"), f"{where} {status} has no description"
            schema = json_schema(answer)
            assert schema, f"{where} {status} has an untyped body"
            if status.startswith("2"):
                continue
            body = {"422": {"detail": [{"loc": ["body", "x"], "msg": "say what", "type": "value_error"}]}}.get(
                status, [{"code": int(status), "description": "what"}] if path.startswith("/open311/") else PROBLEM
            )
            if path == "/healthz" and status == "503":
                body = {"status": "unavailable", "database": "connection refused"}
            if path == "/readyz" and status == "503":
                body = {"status": "not ready", "failing": {"database": "not answering: refused"}, "degraded": {}}
            assert validator(doc, schema).is_valid(body), f"{where} {status}: {schema}"
        if operation.get("security"):  # a bearer scheme says so; a webhook's signature has no such scheme
            assert "WWW-Authenticate" in answers["401"]["headers"]
        for status in ("429", "503"):
            if status in answers and path not in ("/healthz", "/readyz"):  # a probe's answer, not a client's
                assert "Retry-After" in answers[status]["headers"], f"{where} {status}"


async def test_the_embedded_description_keeps_the_names_clients_were_generated_from(embedded_settings):
    """Models of the same name in two services are told apart by module in the embedded
    document; moving a model to another module must not rename what clients already use."""
    names = set((await served_description(embedded_settings, None))["components"]["schemas"])
    published = {
        "departments__api__UnitRef",
        "intake__public__api__UnitRef",
        "dispatcher__api__Satisfaction",
        "notifier__api__Delivery",
        "departments__adapters__ops__Delivery",
    }
    assert published <= names, published - names


async def test_the_ops_case_and_the_notifications_are_typed_and_their_answers_fit(embedded_settings):
    doc = await served_description(embedded_settings, None)
    case = json_schema(doc["paths"]["/v1/ops/cases/{case_id}"]["get"]["responses"]["200"])
    assert case == {"$ref": "#/components/schemas/OpsCase"}
    ops_case = doc["components"]["schemas"]["OpsCase"]
    assert {"assignments", "history", "status", "tier", "unit_id"} <= set(ops_case["required"])
    notifications = json_schema(doc["paths"]["/v1/notifications"]["get"]["responses"]["200"])
    assert notifications["items"] == {"$ref": "#/components/schemas/Notification"}

    app = build_app(embedded_settings)
    ops = bearer(Authenticator(embedded_settings.signing_key(), SystemClock()).issue("ops"))
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as client,
    ):
        filed = await file_report(client)
        await case_in_status(client, filed, "assigned")
        r = await client.get(f"/v1/ops/cases/{filed['case_id']}", headers=ops)
        assert r.status_code == 200, r.text
        assert validator(doc, case).is_valid(r.json())
        assert r.json()["assignments"][0]["unit_id"] == "U-G11"

        async def told() -> Any:
            r = await client.get("/v1/notifications", params={"case_id": filed["case_id"]}, headers=ops)
            assert r.status_code == 200, r.text
            return r.json()

        listed = await eventually(told)
        assert validator(doc, notifications).is_valid(listed)
        assert listed[0]["deliveries"][0]["channel"] == "log"


async def test_location_states_its_one_of_three_rule_in_the_schema(embedded_settings):
    doc = await served_description(embedded_settings, "intake")
    location = {"$ref": "#/components/schemas/LocationIn"}
    assert len(doc["components"]["schemas"]["LocationIn"]["oneOf"]) == 3
    check = validator(doc, location)
    for good in ({"lat": 30.5, "lon": 114.3}, {"address": "3 Maple Lane"}, {"grid_id": "G11", "address": None}):
        assert check.is_valid(good), good
    for bad in ({}, {"lat": 30.5}, {"lat": 30.5, "lon": 114.3, "grid_id": "G11"}, {"address": "x", "grid_id": "G11"}):
        assert not check.is_valid(bad), bad


async def test_open311_operations_describe_their_format_arguments_and_answers(embedded_settings):
    doc = await served_description(embedded_settings, "intake")
    open311 = [(m, p, o) for m, p, o in operations(doc) if p.startswith("/open311/")]
    assert len(open311) == 8
    for _, path, operation in open311:
        [fmt] = [p for p in operation["parameters"] if p["name"] == "fmt"]
        assert fmt["schema"]["enum"] == ["json", "xml"], path
        ok = operation["responses"]["200"]["content"]
        assert set(ok) == {"application/json", "text/xml"} and ok["application/json"]["schema"], path
        for status in ("404", "413", "429", "503"):
            errors = json_schema(operation["responses"][status])
            assert errors["items"] == {"$ref": "#/components/schemas/SpecError"}, (path, status)
            assert "text/xml" in operation["responses"][status]["content"]

    listing = doc["paths"]["/open311/v2/requests.{fmt}"]
    assert {p["name"] for p in listing["get"]["parameters"] if p["in"] == "query"} == {
        "service_request_id",
        "service_code",
        "start_date",
        "end_date",
        "status",
        "jurisdiction_id",
    }
    form = listing["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert set(form["required"]) == {"api_key", "service_code"}
    assert {"lat", "long", "address_string", "description", "media_url", "email", "account_id"} <= set(
        form["properties"]
    )
    [attribute] = form["patternProperties"]
    assert jsonschema_rs.validator_for({"type": "string", "pattern": attribute}).is_valid("attribute[trapped]")
    assert listing["post"]["responses"]["400"] and listing["post"]["responses"]["403"]


async def test_open311_answers_fit_their_documented_schemas(embedded_settings):
    app = build_app(embedded_settings)
    doc = app.openapi()
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall/open311/v2") as client,
    ):
        key = await create_api_key(app.state.ctx.db, SystemClock(), "test app")

        async def fits(path: str, response: httpx.Response) -> Any:
            method = response.request.method.lower()
            documented = doc["paths"][f"/open311/v2{path}"][method]["responses"][str(response.status_code)]
            assert validator(doc, json_schema(documented)).is_valid(response.json()), response.text
            return response.json()

        await fits("/discovery.{fmt}", await client.get("/discovery.json"))
        await fits("/services.{fmt}", await client.get("/services.json"))
        await fits("/services/{service_code}.{fmt}", await client.get("/services/elevator.json"))
        await fits("/services/{service_code}.{fmt}", await client.get("/services/nope.json"))
        form = {"api_key": key, "service_code": "garbage", "lat": "30.505", "long": "114.305", "account_id": "7"}
        [created] = await fits("/requests.{fmt}", await client.post("/requests.json", data=form))
        await fits("/requests.{fmt}", await client.post("/requests.json", data={**form, "api_key": "made-up"}))
        await fits("/requests.{fmt}", await client.post("/requests.json", data={**form, "lat": "north"}))
        await fits(
            "/requests/{service_request_id}.{fmt}", await client.get(f"/requests/{created['service_request_id']}.json")
        )
        await fits("/requests.{fmt}", await client.get("/requests.json", params={"status": "open"}))
        await fits("/requests.{fmt}", await client.get("/requests.json", params={"status": "shut"}))
        await fits("/tokens/{token}.{fmt}", await client.get("/tokens/nope.json"))
        r = await client.get("/services.xml")
        assert r.headers["content-type"].startswith("text/xml")


@pytest.mark.parametrize("service", APPS, ids=[s or "embedded" for s in APPS])
async def test_every_service_lists_the_units_with_their_kind_and_parent(embedded_settings, service):
    app = build_app(embedded_settings, [service] if service else None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as client:
        units = (await client.get("/v1/units")).json()
        by_id = {u["id"]: u for u in units}
        assert len(by_id) == len(units) == len(app.state.ctx.jurisdiction.units)
        assert by_id["U-G11"] == {**by_id["U-G11"], "kind": "grid", "parent": "U-C1", "area_id": "G11"}
        assert by_id["U-C1"] == {**by_id["U-C1"], "kind": "community", "parent": "U-S1", "area_id": "C1"}
        assert by_id["U-S1"] == {**by_id["U-S1"], "kind": "street", "parent": None, "area_id": "S1"}
        assert by_id["D-BUS"] == {**by_id["D-BUS"], "kind": "department", "parent": None, "area_id": None}
        assert all(u["name"] and u["name_zh"] for u in units)
        assert (by_id["U-G11"]["name_zh"], by_id["U-C1"]["name_zh"]) == ("枫林社区第一网格工作站", "枫林社区居委会")
        departments = (await client.get("/v1/units", params={"kind": "department"})).json()
        assert departments and {u["kind"] for u in departments} == {"department"}
        assert {u["id"] for u in departments} == {u["id"] for u in units if u["kind"] == "department"}
        r = await client.get("/v1/units", params={"kind": "planet"})
        assert r.status_code == 422 and "grid" in r.text


@pytest.mark.parametrize("service", APPS, ids=[s or "embedded" for s in APPS])
async def test_the_root_points_to_the_docs(embedded_settings, service):
    app = build_app(embedded_settings, [service] if service else None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as client:
        r = await client.get("/")
        assert r.status_code == 200
        assert r.json() == {**r.json(), "docs": "/docs", "openapi": "/openapi.json"}
        page = await client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.headers["content-type"].startswith("text/html")
        assert 'href="/docs"' in page.text and 'href="/openapi.json"' in page.text
        assert (await client.get(r.json()["docs"])).status_code == 200


async def test_what_lists_units_and_grids_documents_their_chinese_names(embedded_settings):
    schemas = (await served_description(embedded_settings, None))["components"]["schemas"]
    for name in ("UnitOut", "GridOut", "GridRef", "CommunityRef", "intake__public__api__UnitRef"):
        assert {"name", "name_zh"} <= set(schemas[name]["required"]), name
        assert schemas[name]["properties"]["name_zh"], name
