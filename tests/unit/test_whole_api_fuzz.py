"""Every operation of every service, fuzzed from the app's own OpenAPI schema in embedded mode:
the whole app in-process on SQLite and the local bus, with real ids and real staff and ops tokens
mixed into the generated requests (tests/support/fuzz.py). The distributed run is
tests/e2e/test_fuzz_distributed.py. `make fuzz` runs both with more examples."""

import asyncio
from collections.abc import Iterator

import pytest
from schemathesis.python import asgi

from gridcall.app import build_app
from intake.keys import create_api_key
from services.district.clock import SystemClock
from services.storage.db import Database
from tests.support.fuzz import (
    Run,
    assert_documented,
    assert_no_server_error,
    assert_reached,
    from_app,
    fuzz_operation,
    operations,
    report,
    seed_world,
)
from tests.support.journey import TEST_SECRET
from tests.support.staff import enrol_now


async def _api_key(url: str) -> str:
    db = Database(url)
    try:
        return await create_api_key(db, SystemClock(), "fuzz")
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory) -> Iterator[Run]:
    from gridcall.migrate import upgrade
    from services.runtime.settings import Settings
    from tests.conftest import TESTS_POLL_FREELY

    settings = Settings(env="test", var_dir=tmp_path_factory.mktemp("var"), relay_interval=0.05,
                        rate_limit=TESTS_POLL_FREELY, secret_key=TEST_SECRET)  # fmt: skip
    upgrade(settings.db_url)
    key = asyncio.run(_api_key(settings.db_url))
    issue = enrol_now(settings.db_url, TEST_SECRET)
    app = build_app(settings)

    schema = from_app(app)  # starts the app's lifespan
    try:
        with asgi.get_client(app) as client:
            world = seed_world(lambda method, path, **kw: client.request(method, path, **kw), issue, key)
        run = Run()
        for operation in operations(schema):
            fuzz_operation(operation, world, run)
        yield run
    finally:
        asgi.shutdown_lifespans()


def test_no_operation_of_any_service_answers_a_5xx(embedded_run):
    assert_no_server_error(embedded_run)


def test_every_answer_is_documented_and_fits_its_schema(embedded_run):
    print(report(embedded_run))
    assert_documented(embedded_run)


def test_real_ids_and_tokens_got_past_the_door(embedded_run):
    assert_reached(embedded_run)
