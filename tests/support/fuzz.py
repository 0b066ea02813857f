"""Schemathesis over every operation of a schema, aimed in part at real things: real case ids with
their tracking tokens, real ticket and unit ids, real staff and ops tokens, a real Open311 key.
Generated data alone would almost never get past a 401 or a 404, and would leave most of the code
unexercised. Used by the embedded (in-process) and the distributed (one process per service) runs."""

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.staff import demo_jurisdiction

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
# Operations where schema-valid data may rightly be refused with a 422 naming what to fix,
# because validity depends on data the schema cannot state: the policy's categories and their
# questions, the grid polygons (reports), the units that exist (return, whistle), a time zone
# on a date-time (the satisfaction rate).
DATA_DEPENDENT = {
    ("POST", "/v1/reports"),
    ("POST", "/v1/tickets/{ticket_id}/return"),
    ("POST", "/v1/tickets/{ticket_id}/whistle"),
    ("GET", "/v1/ops/satisfaction"),
    ("GET", "/v1/ops/stats"),  # and the streets, communities, units and categories that exist
    ("GET", "/v1/ops/stats/daily"),
    ("GET", "/v1/ops/breaches"),  # state=all: the window
    ("GET", "/open311/v2/requests.{fmt}"),  # start_date before end_date, at most 90 days apart
    ("GET", "/open311/v2/servicerequestupdates.{fmt}"),  # likewise
    ("GET", "/v1/public/results"),  # a community and a category the district has, a cursor it gave
}
# Text a database or a log line may choke on: aimed requests carry one now and then, in a real id,
# a query value or a body field, where generated data would take long to put it.
HOSTILE = ["\x00", "\x07\x08\x1b", "\u200b\u200b", "\n2026-01-01 00:00:00 INFO forged", "\x1b[31m", "x" * 5000]
REAL_REPORT = {"category": "garbage", "location": {"lat": 30.505, "lon": 114.305}, "insist": True}
# Three times in four, and the first choice Hypothesis tries and shrinks to (st.integers(0, 3)
# as a coin spent most of its early, simplest examples on the fourth case: unaimed requests).
MOSTLY = st.sampled_from([True, True, True, False])
EXAMPLES = int(os.environ.get("GRIDCALL_FUZZ_EXAMPLES", "40"))  # per operation; `make fuzz` asks for more


def fuzzing(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),  # one running app serves every example, by design
    )


@dataclass(frozen=True)
class Persona:
    """Who sends an aimed request: ops (no unit), or a handler or supervisor of one unit."""

    unit: str | None = None
    duty: str = "handler"


OPS = Persona()
# Paths whose operations want an ops token, and paths that are the staff's (a unit's person):
# an aimed request to one of them is sent by such a caller three times in four.
OPS_PATHS = ("/v1/ops", "/v1/staff", "/v1/notifications")
STAFF_PATHS = ("/v1/me", "/v1/units/", "/v1/tickets", "/v1/pools")
DEPARTMENTS = ["D-URBAN", "D-WATER", "D-BUS", "D-HOUSING"]


@dataclass
class World:
    """Real things to aim generated requests at."""

    cases: list[tuple[str, str]]  # (case id, its tracking token)
    tickets: dict[str, list[str]]  # unit id -> its tickets
    authorizations: dict[Persona, str]  # persona -> "Bearer …" (a real token of a real account)
    api_key: str
    staff: list[str] = field(default_factory=list)  # ids of real accounts nobody's requests depend on
    under: dict[str, list[str]] = field(default_factory=dict)  # a supervisor's unit -> units under it

    def values(self, name: str, persona: Persona = OPS) -> list[str]:
        """Real values for a parameter (or body field) of this name; for ids of a unit's things,
        the persona's unit's (and for a supervisor the units under it)."""
        ids = [c for c, _ in self.cases]
        all_tickets = [t for ts in self.tickets.values() for t in ts]
        units = sorted({p.unit for p in self.authorizations if p.unit})
        unit = persona.unit
        seen = [unit, *self.under.get(unit, [])] if unit and persona.duty == "supervisor" else [unit] if unit else []
        return {
            "case_id": ids,
            "service_request_id": ids,
            "ticket_id": [t for u in seen for t in self.tickets.get(u, [])] or all_tickets,
            "unit_id": seen or units,
            "unit": units,
            "staff_id": self.staff,
            "suggested_unit_id": units,
            "lead": DEPARTMENTS,
            "token": [t for _, t in self.cases],
            "service_code": ["garbage", "streetlight", "noise"],
            "category": ["garbage", "streetlight", "noise"],
            "fmt": ["json", "xml"],
            "street": ["S1", "S2"],
            "community": ["C1", "C2"],
            "api_key": [self.api_key],
        }.get(name, [])


@dataclass(frozen=True)
class Finding:
    operation: str
    check: str
    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.operation} -> {self.status}: {self.check}: {self.message}"


@dataclass
class Run:
    seen: Counter[tuple[str, int]] = field(default_factory=Counter)
    findings: set[Finding] = field(default_factory=set)
    examples: dict[Finding, str] = field(default_factory=dict)  # the first request that showed each

    @property
    def server_errors(self) -> list[Finding]:
        return sorted((f for f in self.findings if f.status >= 500), key=str)


def _aim(case: Any, world: World, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
    """Replace some generated values with real ones (the rest stay generated), as one person
    would send them: ops, or the staff of one unit with that unit's tickets; now and then spoil
    one of them with hostile text. Either can turn a request the schema refuses into one it
    accepts, or the other way round, so an aimed request is no longer known to be either."""
    persona = _persona(case.operation.path, world, draw)
    params = case.path_parameters or {}
    for name in list(params):
        if (real := world.values(name, persona)) and draw(MOSTLY):
            params[name] = draw(st.sampled_from(real))
    if "case_id" in params and world.cases and draw(st.booleans()):  # a case with its own token, or another's
        case_id, token = draw(st.sampled_from(world.cases))
        params["case_id"] = case_id
        case.headers = {**(case.headers or {}), "x-tracking-token": token}
    query = case.query if isinstance(case.query, dict) else None
    if query is not None:
        for name in list(query):
            if (real := world.values(name, persona)) and draw(MOSTLY):
                query[name] = draw(st.sampled_from(real))
    if draw(MOSTLY):  # mostly a real token: generated ones only ever reach the 401
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = {**headers, "Authorization": world.authorizations[persona]}
    if case.operation.path == "/v1/reports" and isinstance(case.body, dict) and draw(st.booleans()):
        case.body.update(REAL_REPORT)  # a report that gets filed, when the rest of it is valid
    elif isinstance(case.body, dict):  # real units (to add a person to, reassign or return to), departments
        for name in list(case.body):
            if (real := world.values(name, persona)) and draw(MOSTLY):
                case.body[name] = draw(st.sampled_from(real))
    if draw(MOSTLY):
        return
    places = [(params, k) for k in params] + [(query, k) for k in (query or {})]
    if isinstance(case.body, dict):
        places += [(case.body, k) for k, v in case.body.items() if isinstance(v, str)]
    if places:
        where, name = draw(st.sampled_from(places))
        where[name] = f"{where[name]}{draw(st.sampled_from(HOSTILE))}"


def _persona(path: str, world: World, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Persona:
    """Ops for the ops routes and one unit's person for the staff routes (three times in four
    each, so that the refusals are sent too); either, half and half, elsewhere."""
    people = [p for p in world.authorizations if p != OPS]
    if draw(MOSTLY):
        if path.startswith(OPS_PATHS):
            return OPS
        if path.startswith(STAFF_PATHS):
            return draw(st.sampled_from(people))  # type: ignore[no-any-return]
    return OPS if draw(st.booleans()) else draw(st.sampled_from(people))


def fuzz_operation(operation: Any, world: World, run: Run, *, max_examples: int = EXAMPLES, **call: Any) -> None:
    """Generated requests (valid and invalid by the schema), most of them aimed at real things;
    every answer checked, every finding recorded (not only the first)."""
    key = (operation.method.upper(), operation.path)
    checks = [c for c in CHECKS if not (key in DATA_DEPENDENT and c is positive_data_acceptance)]
    # An aimed request was generated valid or invalid, and may now be either: check the answer alone.
    aimed_checks = [c for c in checks if c not in (positive_data_acceptance, negative_data_rejection)]

    @fuzzing(max_examples)
    @given(case=operation.as_strategy(POSITIVE) | operation.as_strategy(NEGATIVE), data=st.data())
    def fuzz(case: Any, data: Any) -> None:
        if aimed := bool(data.draw(MOSTLY)):  # three in four
            _aim(case, world, data.draw)
        response = case.call(**call)
        run.seen[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=aimed_checks if aimed else checks)
        except (AssertionError, BaseExceptionGroup) as exc:  # one Failure, or a group of them
            for failure in getattr(exc, "exceptions", [exc]):
                title = getattr(failure, "title", type(failure).__name__)
                message = (str(getattr(failure, "message", failure)).splitlines() or [""])[0][:200]
                finding = Finding(operation.label, title, response.status_code, message)
                run.findings.add(finding)
                run.examples.setdefault(finding, f"{case.as_curl_command()}\n  -> {response.text[:300]}")

    fuzz()


def from_app(app: Any) -> schemathesis.BaseSchema:
    """The app's schema over ASGI (which starts its lifespan). Without schemathesis's analysis of
    the app's source for constants: that pool made generation differ between a test case and its
    replay (FlakyStrategyDefinition) once the source held a number both as int and as float."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.analysis.constants.enabled = False
    return schema


# A stream answers for as long as it is open (minutes): request-and-answer fuzzing would wait
# on it. Its answers, refusals included, are tested in tests/unit/test_ops_board.py.
STREAMS = {("GET", "/v1/ops/breaches/stream")}


def operations(schema: schemathesis.BaseSchema) -> list[Any]:
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if (op.method.upper(), op.path) not in STREAMS]


# Operations that must have reached their handler with real ids and tokens (a 2xx) in a run.
REACHED = (
    "GET /v1/units/{unit_id}/tickets",
    "GET /v1/ops/cases/{case_id}",
    "GET /v1/notifications",
    "GET /v1/cases/{case_id}",
    "GET /open311/v2/requests/{service_request_id}.{fmt}",
    "GET /v1/me",
    "GET /v1/units/{unit_id}/summary",
    "GET /v1/tickets/{ticket_id}",
    "POST /v1/tickets/{ticket_id}/notes",
    "POST /v1/tickets/{ticket_id}/evidence",
    "GET /v1/staff",
    "POST /v1/staff",
    "POST /v1/staff/{staff_id}/revoke",
)


def assert_no_server_error(run: Run) -> None:
    assert run.seen, "nothing was sent"
    assert not run.server_errors, "\n".join(map(str, run.server_errors))


def assert_documented(run: Run) -> None:
    assert not run.findings, f"{len(run.findings)} findings:\n{report(run)}"


def assert_reached(run: Run) -> None:
    """The aim works: real tokens and ids reach the handlers, not only 401s and 404s."""
    ok = {op for (op, status) in run.seen if 200 <= status < 300}
    for operation in REACHED:
        assert operation in ok, f"{operation}: {sorted(s for (o, s) in run.seen if o == operation)}"
    # every staff operation, the ones whose state a run uses up included, was sent a token that stood
    staff = {op for (op, _) in run.seen if op.split(" ")[1].startswith((*STAFF_PATHS, "/v1/staff"))}
    past_the_door = {op for (op, status) in run.seen if status != 401}
    assert staff and staff <= past_the_door, sorted(staff - past_the_door)


def report(run: Run, *, examples: bool = True) -> str:
    return "\n".join(f"{f}\n  {run.examples[f]}" if examples else str(f) for f in sorted(run.findings, key=str))


def seed_world(request: Callable[..., Any], issue: Callable[[str | None], str], api_key: str) -> World:
    """File reports and move some along, through the public API: `request(method, path, **kw)`
    sends to whichever process serves the path; `issue(unit)` signs a staff token (ops for None)."""
    import time

    def bearer(unit: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue(unit)}"}

    filed = []
    here = {"lat": 30.505, "lon": 114.305}  # grid G11, community C1, street S1
    for category, description, unit in [
        ("garbage", "Bags by the gate", "U-G11"),
        ("garbage", "Bags in the hall", "U-G11"),
        ("garbage", "Bags on the lawn", "U-G11"),
        ("garbage", "Bags by the bins", "U-G11"),
        ("road_damage", "Pothole", "U-S1"),
        ("road_damage", "Cracked kerb", "U-S1"),
        ("bus_stop", "Broken shelter", "D-BUS"),
        ("bus_stop", "Timetable missing", "D-BUS"),
    ]:
        body = {"category": category, "description": description, "location": here}
        r = request("POST", "/v1/reports", json={**body, "insist": True})
        assert r.status_code == 202, r.text
        filed.append((r.json(), unit))
    tickets: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while len(tickets) < len(filed):
        assert time.monotonic() < deadline, f"tickets not opened in time: {tickets}"
        for case, unit in filed:
            r = request("GET", f"/v1/units/{unit}/tickets", headers=bearer(unit))
            assert r.status_code == 200, r.text
            tickets.update(
                {t["case_id"]: t["ticket_id"] for t in r.json()["tickets"] if t["case_id"] == case["case_id"]}
            )
        time.sleep(0.1)
    (claimed, _), (resolved, _) = filed[0], filed[1]
    for case, action, body in [
        (claimed, "claim", None),
        (resolved, "claim", None),
        (resolved, "resolve", {"note": "Cleared"}),
    ]:
        r = request("POST", f"/v1/tickets/{tickets[case['case_id']]}/{action}", headers=bearer("U-G11"), json=body)
        assert r.status_code == 200, r.text
    by_unit: dict[str, list[str]] = {}
    for case, unit in filed:
        by_unit.setdefault(unit, []).append(tickets[case["case_id"]])

    def account(unit: str, name: str, duty: str = "handler") -> dict[str, Any]:
        r = request("POST", "/v1/staff", headers=bearer(None), json={"unit_id": unit, "name": name, "role": duty})
        assert r.status_code == 201, r.text
        return dict(r.json())

    authorizations = {Persona(u): f"Bearer {issue(u)}" for u in ("U-G11", "U-C1", "U-S1", "D-BUS")}
    authorizations[OPS] = f"Bearer {issue(None)}"
    for unit in ("U-C1", "U-S1"):
        made = account(unit, "Fuzz supervisor", "supervisor")
        authorizations[Persona(unit, "supervisor")] = f"Bearer {made['token']}"
    j = demo_jurisdiction()
    return World(
        cases=[(c["case_id"], c["tracking_token"]) for c, _ in filed],
        tickets=by_unit,
        authorizations=authorizations,
        api_key=api_key,
        staff=[account("U-G13", f"Fuzz spare {i}")["staff_id"] for i in range(2)],  # theirs to revoke
        under={u: sorted(j.units_under(u) - {u}) for u in ("U-C1", "U-S1")},
    )
