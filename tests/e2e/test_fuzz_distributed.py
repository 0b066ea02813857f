"""Every operation of every service fuzzed in distributed mode: each service its own OS process
on PostgreSQL and the broker, each fuzzed from the schema it serves, with real ids and real staff
and ops tokens mixed in (tests/support/fuzz.py). The embedded run is
tests/unit/test_whole_api_fuzz.py; `make fuzz` runs both with more examples."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import schemathesis

from intake.keys import create_api_key
from services.district.clock import SystemClock
from services.storage.db import Database
from tests.support.cluster import SERVICES, distributed
from tests.support.fuzz import (
    Run,
    assert_documented,
    assert_no_server_error,
    assert_reached,
    fuzz_operation,
    operations,
    report,
    seed_world,
)

pytestmark = pytest.mark.e2e

# Which process serves a path: the rest of a service's schema is only its own.
OWNER = [
    ("/v1/units", "departments"),
    ("/v1/me", "departments"),
    ("/v1/staff", "departments"),
    ("/v1/pools", "departments"),
    ("/v1/tickets", "departments"),
    ("/v1/ops", "dispatcher"),
    ("/v1/notifications", "notifier"),
    ("/", "intake"),
]


async def _api_key(url: str) -> str:
    db = Database(url)
    try:
        return await create_api_key(db, SystemClock(), "fuzz")
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def distributed_run(request, tmp_path_factory) -> Iterator[Run]:
    env = request.getfixturevalue("distributed_env")
    issue = request.getfixturevalue("tokens")
    key = asyncio.run(_api_key(env["GRIDCALL_DATABASE_URL"]))
    with distributed(env, tmp_path_factory.mktemp("logs")) as cluster:
        clients = {name: httpx.Client(base_url=cluster[name].url, timeout=10) for name in SERVICES}

        def send(method: str, path: str, **kw):
            owner = next(name for prefix, name in OWNER if path.startswith(prefix))
            return clients[owner].request(method, path, **kw)

        try:
            world = seed_world(send, issue, key)
        finally:
            for c in clients.values():
                c.close()
        run = Run()
        for name in SERVICES:
            schema = schemathesis.openapi.from_url(f"{cluster[name].url}/openapi.json")
            for operation in operations(schema):
                fuzz_operation(operation, world, run)
        yield run


@pytest.fixture(scope="module")
def tokens(pg_url):  # the e2e conftest's, at module scope
    from tests.support.journey import TEST_SECRET
    from tests.support.staff import enrol_now

    return enrol_now(pg_url, TEST_SECRET)


@pytest.fixture(scope="module")
def topic_prefix() -> str:
    import uuid

    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def distributed_env(pg_url, broker, topic_prefix) -> dict[str, str]:
    from tests.support.cluster import distributed_settings

    return distributed_settings(pg_url, broker.bootstrap, topic_prefix)


def test_no_operation_of_any_service_answers_a_5xx(distributed_run):
    assert_no_server_error(distributed_run)


def test_every_answer_is_documented_and_fits_its_schema(distributed_run):
    print(report(distributed_run))
    assert_documented(distributed_run)


def test_real_ids_and_tokens_got_past_the_door(distributed_run):
    assert_reached(distributed_run)
