"""Every endpoint, when the database drops a connection: the request is run once more on a fresh
connection; when the database is really away, the answer is 503 with Retry-After, never a 500."""

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy.exc import DBAPIError

from gridcall.app import build_app
from services.district.clock import SystemClock
from services.runtime.settings import Settings
from services.web import edge
from services.web.auth import Authenticator
from tests.support.journey import STREETLIGHT_G11, TEST_SECRET, bearer
from tests.support.servers import free_port
from tests.support.staff import signed


class Dropped(Exception):
    """What the asyncpg dialect wraps when PostgreSQL terminates a connection mid-statement."""

    sqlstate = "08003"


def flaky_app(failures: int) -> tuple[FastAPI, list[bytes]]:
    app = FastAPI()
    bodies: list[bytes] = []

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        bodies.append(await request.body())
        if len(bodies) <= failures:
            raise DBAPIError("INSERT", {}, Dropped("connection was closed in the middle of operation"))
        return await request.json()

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a bug is no reason to try again")

    edge.install(app, {})
    return app, bodies


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_dropped_connection_is_retried_once_with_the_same_body():
    app, bodies = flaky_app(failures=1)
    async with client(app) as c:
        r = await c.post("/echo", json={"report": "bags"})
    assert r.status_code == 200 and r.json() == {"report": "bags"}
    assert bodies == [b'{"report":"bags"}'] * 2


async def test_a_database_still_away_on_the_second_try_is_a_503_with_retry_after():
    app, bodies = flaky_app(failures=2)
    async with client(app) as c:
        r = await c.post("/echo", json={"report": "bags"})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert "database is not answering" in r.json()["detail"]
    assert len(bodies) == 2


async def test_any_other_failure_is_not_retried():
    app, _ = flaky_app(failures=0)
    async with client(app) as c:
        assert (await c.get("/bug")).status_code == 500


@pytest.fixture
def nowhere(tmp_path) -> Settings:
    """gridcall on a PostgreSQL that is not there."""
    return Settings(
        env="test",
        var_dir=tmp_path / "var",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone",
        rate_limit="1000/minute",
        secret_key=TEST_SECRET,
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "unit"),
    [
        ("POST", "/v1/reports", STREETLIGHT_G11, None),
        ("GET", "/v1/cases/some-case", None, None),
        ("GET", "/v1/units/U-G11/tickets", None, "U-G11"),
        ("POST", "/v1/tickets/some-ticket/claim", None, "U-G11"),
        ("GET", "/v1/ops/cases/some-case", None, "ops"),
        ("GET", "/v1/notifications?case_id=some-case", None, "ops"),
        ("GET", "/v1/ops/deadletters", None, "ops"),
    ],
)
async def test_every_service_answers_503_when_the_database_is_away(nowhere, method, path, body, unit):
    auth = Authenticator(TEST_SECRET, SystemClock())
    headers = {"X-Tracking-Token": "t"}
    if unit:
        role = "ops" if unit == "ops" else "staff"
        headers |= bearer(signed(auth, None if role == "ops" else unit))
    async with client(build_app(nowhere)) as c:
        r = await c.request(method, path, json=body, headers=headers)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] and r.json()["detail"]
