"""A resident's and a grid worker's journey, over HTTP, against any running gridcall."""

import secrets
from datetime import timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.district.clock import SystemClock
from services.web.auth import Authenticator
from tests.support.waiting import eventually

# Tests that issue tokens sign them with this run's own secret, set explicitly on every process.
TEST_SECRET = secrets.token_urlsafe(32)

IN_G11 = {"lat": 30.505, "lon": 114.305}  # grid G11 of community C1 (枫林社区第一网格)

STREETLIGHT_G11 = {
    "category": "garbage",
    "description": "Bags of rubbish piled in the stairwell of building 3",
    "location": {"lat": 30.505, "lon": 114.305},
}


def ops_token(name: str | None = None) -> str:
    """An hour's ops token, signed with this run's secret, naming the officer if given."""
    return Authenticator(TEST_SECRET, SystemClock()).issue("ops", name=name, ttl=timedelta(hours=1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def file_report(
    client: httpx.AsyncClient, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    r = await client.post("/v1/reports", json=body or STREETLIGHT_G11, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


async def case_in_status(
    client: httpx.AsyncClient, case: dict[str, Any], status: str, timeout: float = 30.0
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await client.get(f"/v1/cases/{case['case_id']}", headers={"X-Tracking-Token": case["tracking_token"]})
        assert r.status_code == 200, r.text
        view = r.json()
        return view if view["status"] == status else None

    return await eventually(probe, timeout=timeout)


async def open_ticket(
    client: httpx.AsyncClient, unit_id: str, token: str, case_id: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The case's open or claimed ticket in the unit's queue, looked for on every page."""
    return await queued(client, f"/v1/units/{unit_id}/tickets", token, case_id, timeout)


async def pool_ticket(
    client: httpx.AsyncClient, pool_id: str, token: str, case_id: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The case's open or claimed ticket in a volunteer pool's queue, as a member sees it."""
    return await queued(client, f"/v1/pools/{pool_id}/tickets", token, case_id, timeout)


async def queued(client: httpx.AsyncClient, queue: str, token: str, case_id: str, timeout: float) -> dict[str, Any]:
    """The case's ticket in the queue at `queue` (a unit's or a pool's tickets), on every page."""

    async def probe() -> dict[str, Any] | None:
        cursor = None
        while True:
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            r = await client.get(queue, headers=bearer(token), params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            if found := next((t for t in page["tickets"] if t["case_id"] == case_id), None):
                return found
            if (cursor := page["next_cursor"]) is None:
                return None

    return await eventually(probe, timeout=timeout)


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """The sum of a service's `/metrics` samples called `name` whose labels include `labels`."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    return sum(
        s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
