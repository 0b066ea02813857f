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
from services.clock import SystemClock
from services.db import Database
from tests.support.cluster import SERVICES, distributed
from tests.support.fuzz import Run, fuzz_operation, operations, report, seed_world

pytestmark = pytest.mark.e2e

# Which process serves a path: the rest of a service's schema is only its own.
OWNER = [
    ("/v1/units", "departments"),
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
def tokens():  # the e2e conftest's, at module scope
    from datetime import timedelta

    from services.auth import Authenticator
    from tests.support.journey import TEST_SECRET

    auth = Authenticator(TEST_SECRET)
    return lambda unit=None: auth.issue(
        "staff" if unit else "ops", unit_id=unit, now=SystemClock().now(), ttl=timedelta(hours=1)
    )


@pytest.fixture(scope="module")
def topic_prefix() -> str:
    import uuid

    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def distributed_env(pg_url, broker, topic_prefix) -> dict[str, str]:
    from tests.support.journey import TEST_SECRET
    from tests.support.servers import kafka_is_tansu

    return {
        "GRIDCALL_ENV": "test",
        "GRIDCALL_SECRET_KEY": TEST_SECRET,
        "GRIDCALL_DATABASE_URL": pg_url,
        "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE": str(not kafka_is_tansu()).lower(),
        "GRIDCALL_KAFKA_PARTITIONS": "3",
        "GRIDCALL_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "GRIDCALL_KAFKA_REBALANCE_TIMEOUT_MS": "3000",
        "GRIDCALL_RATE_LIMIT": "1000000/minute",
        "GRIDCALL_TOPIC_PREFIX": topic_prefix,
        "GRIDCALL_RELAY_INTERVAL": "0.05",
    }


def test_no_operation_of_any_service_answers_a_5xx(distributed_run):
    assert distributed_run.seen, "nothing was sent"
    assert not distributed_run.server_errors, "\n".join(map(str, distributed_run.server_errors))


def test_every_answer_is_documented_and_fits_its_schema(distributed_run):
    print(report(distributed_run))
    assert not distributed_run.findings, f"{len(distributed_run.findings)} findings:\n{report(distributed_run)}"


def test_real_ids_and_tokens_got_past_the_door(distributed_run):
    ok = {op for (op, status), n in distributed_run.seen.items() if 200 <= status < 300}
    for operation in ("GET /v1/units/{unit_id}/tickets", "GET /v1/ops/cases/{case_id}", "GET /v1/notifications",
                      "GET /v1/cases/{case_id}", "GET /open311/v2/requests/{service_request_id}.{fmt}"):  # fmt: skip
        assert operation in ok, f"{operation}: {sorted(s for (o, s) in distributed_run.seen if o == operation)}"
