"""The resident API fuzzed from its own OpenAPI schema (schemathesis + Hypothesis), against the
real embedded app in-process: SQLite, local bus, every service with its relay and consumers.

Every response must be a documented status code (never a 5xx), with the documented content type
and a body that fits the documented schema. Generated data alone rarely names a real category or
place, so the report test mixes real ones in (and asserts that reports really got filed), and the
case test aims part of its requests at real cases with their tracking tokens."""

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.python import asgi

from gridcall.app import build_app
from tests.support.fuzz import CHECKS, NEGATIVE, POSITIVE, from_app
from tests.support.journey import STREETLIGHT_G11, bearer
from tests.support.staff import enrol_now
from tests.support.waiting import eventually_sync

# A report's validity depends on data the schema cannot state: the category codes and each
# category's questions (GET /v1/categories), the grid polygons, the address table, and "exactly
# one of lat+lon, address, grid_id". A schema-valid report may rightly be a 422 that names the
# field to fix, so "schema-valid data is accepted" does not apply to POST /v1/reports.
REPORT_CHECKS = [c for c in CHECKS if c is not positive_data_acceptance]


def fuzzing(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        # The app is shared by the examples of a test (its state grows as they run), which is the point.
        suppress_health_check=list(HealthCheck),
    )


RESIDENT_API = r"^/v1/(categories|grids|reports|cases/\{case_id\}(/satisfaction|/cancel)?)$"


@pytest.fixture
def app(embedded_settings) -> FastAPI:
    return build_app(embedded_settings)


@pytest.fixture
def resident_api(app) -> Iterator[schemathesis.BaseSchema]:
    """The resident operations of the app's schema. Loading it over ASGI starts the app's lifespan
    (bus, relays, consumers, workers), which keeps running for the test and is stopped after it."""
    schema = from_app(app)
    try:
        yield schema.include(path_regex=RESIDENT_API)
    finally:
        asgi.shutdown_lifespans()


@pytest.fixture
def http(resident_api) -> Iterator[requests.Session]:
    """A plain client of the same running app, for setting the scene."""
    with asgi.get_client(resident_api.app) as client:
        yield client


@pytest.fixture
def staff(embedded_settings) -> Callable[[str], str]:
    return enrol_now(embedded_settings.db_url, embedded_settings.secret_key.get_secret_value())


def tracked(resident_api, case_id: str, token: str) -> dict[str, Any]:
    """The resident's view of a case, itself checked against the schema."""
    case = resident_api["/v1/cases/{case_id}"]["GET"].Case(
        path_parameters={"case_id": case_id}, headers={"X-Tracking-Token": token}
    )
    response = case.call()
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == 200, response.text
    return response.json()


def in_status(resident_api, case: dict[str, Any], status: str) -> dict[str, Any]:
    return eventually_sync(
        lambda: (view := tracked(resident_api, case["case_id"], case["tracking_token"]))["status"] == status and view
    )


OPERATIONS = [
    ("GET", "/v1/categories"),
    ("GET", "/v1/grids"),
    ("POST", "/v1/reports"),
    ("GET", "/v1/cases/{case_id}"),
    ("POST", "/v1/cases/{case_id}/satisfaction"),
    ("POST", "/v1/cases/{case_id}/cancel"),
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_generated_requests_get_documented_answers(resident_api, method, path):
    operation = resident_api[path][method]
    checks = REPORT_CHECKS if path == "/v1/reports" else CHECKS
    seen: Counter[int] = Counter()

    @fuzzing(max_examples=60)
    @given(case=operation.as_strategy(POSITIVE) | operation.as_strategy(NEGATIVE))
    def fuzz(case):
        response = case.call()
        seen[response.status_code] += 1
        case.validate_response(response, checks=checks)

    fuzz()
    assert seen, "nothing was sent"


def real_report_parts(categories: list[dict[str, Any]], grids: list[dict[str, Any]]) -> st.SearchStrategy:
    """A real category with answers to its required questions, and a place inside a real grid."""

    def answer(attribute: dict[str, Any]) -> st.SearchStrategy:
        keys = [v["key"] for v in attribute["values"]]
        if attribute["datatype"] == "singlevaluelist":
            return st.sampled_from(keys)
        if attribute["datatype"] == "multivaluelist":
            return st.lists(st.sampled_from(keys), min_size=1, unique=True)
        if attribute["datatype"] == "number":
            return st.integers(0, 1000)
        return st.text(min_size=1, max_size=20).filter(str.strip)

    def of(category: dict[str, Any]) -> st.SearchStrategy:
        required = {a["code"]: answer(a) for a in category["attributes"] if a["required"]}
        return st.fixed_dictionaries(
            {"category": st.just(category["code"]), "attributes": st.fixed_dictionaries(required)}
        )

    place = st.sampled_from(grids).flatmap(
        lambda g: st.sampled_from(
            [{"grid_id": g["grid_id"]}, {"lat": g["centroid"]["lat"], "lon": g["centroid"]["lon"]}]
        )
    )
    return st.tuples(st.sampled_from(categories).flatmap(of), place).map(lambda cp: {**cp[0], "location": cp[1]})


def test_generated_reports_are_filed_or_refused_as_documented(resident_api, http, staff):
    categories = http.get("/v1/categories").json()
    grids = http.get("/v1/grids").json()
    operation = resident_api["/v1/reports"]["POST"]
    authorization = st.sampled_from([None, bearer(staff("U-G11")), bearer(staff("U-C1"))])
    seen: Counter[int] = Counter()
    filed: list[dict[str, Any]] = []

    @fuzzing(max_examples=200)
    @given(
        case=operation.as_strategy(POSITIVE) | operation.as_strategy(NEGATIVE),
        real=st.none() | real_report_parts(categories, grids),
        authorization=authorization,
    )
    def fuzz(case, real, authorization):
        if real and case.meta.generation.mode is POSITIVE:
            case.body.update(real)
        if authorization:  # a real staff token instead of a generated one (a grid worker's may flag households)
            generated = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            case.headers = {**generated, **authorization}
        response = case.call()
        seen[response.status_code] += 1
        case.validate_response(response, checks=REPORT_CHECKS)
        if response.status_code == 202:
            filed.append(response.json())

    fuzz()
    assert seen[202] >= 10, f"too few generated reports were accepted to mean much: {seen}"  # ~1 in 10
    assert seen[422] and seen[403], seen
    # The reports are really in: the relay and the dispatcher route the first one to a unit.
    view = eventually_sync(
        lambda: (v := tracked(resident_api, filed[0]["case_id"], filed[0]["tracking_token"]))["unit_id"] and v
    )
    assert view["status"] != "received"


def test_generated_requests_about_real_cases_get_documented_answers(resident_api, http, staff):
    def report(description: str) -> dict[str, Any]:
        r = http.post("/v1/reports", json={**STREETLIGHT_G11, "description": description, "insist": True})
        assert r.status_code == 202, r.text
        return r.json()

    fresh, done = report("Rubbish in the stairwell"), report("Rubbish by the gate")
    # `done` is resolved by its grid worker, so that its resident can answer the satisfaction visit
    worker = bearer(staff("U-G11"))
    in_status(resident_api, done, "assigned")
    # the departments service opens the ticket from the same event that marks the case assigned
    ticket = eventually_sync(
        lambda: next(
            (
                t["ticket_id"]
                for t in http.get("/v1/units/U-G11/tickets", headers=worker).json()["tickets"]
                if t["case_id"] == done["case_id"]
            ),
            None,
        )
    )
    assert http.post(f"/v1/tickets/{ticket}/claim", headers=worker).status_code == 200
    assert http.post(f"/v1/tickets/{ticket}/resolve", headers=worker, json={"note": "Cleared"}).status_code == 200
    in_status(resident_api, done, "resolved")

    aims = [
        {"case_id": fresh["case_id"], "token": fresh["tracking_token"]},
        {"case_id": done["case_id"], "token": done["tracking_token"]},
        {"case_id": fresh["case_id"], "token": done["tracking_token"]},  # another case's token: 404
        {"case_id": done["case_id"], "token": None},  # no token or a generated one: 404
    ]
    strategies = []
    for path, method in [
        ("/v1/cases/{case_id}", "GET"),
        ("/v1/cases/{case_id}/satisfaction", "POST"),
        ("/v1/cases/{case_id}/cancel", "POST"),
    ]:
        operation = resident_api[path][method]
        for mode in (POSITIVE, NEGATIVE):
            strategies.append(operation.as_strategy(mode))
            for aim in aims:
                headers = {"x-tracking-token": aim["token"]} if aim["token"] else None
                strategies.append(
                    operation.as_strategy(mode, path_parameters={"case_id": aim["case_id"]}, headers=headers)
                )
    seen: Counter[tuple[str, int]] = Counter()

    @fuzzing(max_examples=200)
    @given(case=st.one_of(strategies))
    def fuzz(case):
        response = case.call()
        seen[(case.operation.path.rsplit("/", 1)[-1], response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    fuzz()
    for expected in [
        ("{case_id}", 200),
        ("{case_id}", 404),
        ("satisfaction", 202),
        ("satisfaction", 404),
        ("satisfaction", 409),
        ("satisfaction", 422),
        ("cancel", 202),
        ("cancel", 404),
        ("cancel", 409),
        ("cancel", 422),
    ]:
        assert seen[expected], f"no {expected[1]} from {expected[0]}: {seen}"


def test_a_lone_surrogate_in_a_json_string_is_a_422_not_a_500(http):
    body = b'{"category": "garbage", "description": "dark \\ud800", "location": {"grid_id": "G11"}}'
    r = http.post("/v1/reports", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    [error] = r.json()["detail"]  # the input comes back escaped, as the JSON sent it
    assert error["loc"] == ["body", "description"] and error["input"] == "dark \ud800"
