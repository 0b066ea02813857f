import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridcall.migrate import upgrade
from services.runtime.settings import Settings
from tests.support.journey import TEST_SECRET
from tests.support.servers import Broker, admin_postgres, kafka_broker, kafka_is_tansu, scratch_database

# Tests poll case views many times a second; the rate limit has a test of its own.
TESTS_POLL_FREELY = "1000000/minute"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    with admin_postgres() as admin:
        yield admin


@pytest.fixture(scope="module")
def pg_url(pg_admin: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test module's own: a dispatcher started by one
    module never sees (and fires) the SLA timers another module left behind."""
    with scratch_database(pg_admin) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    with kafka_broker() as b:
        yield b


@pytest.fixture
def topic_prefix() -> str:
    """Topics of a test's own, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_settings(pg_url: str, broker: Broker, topic_prefix: str) -> Settings:
    return postgres_settings(pg_url, broker, topic_prefix)


def postgres_settings(pg_url: str, broker: Broker, topic_prefix: str) -> Settings:
    """Distributed-mode settings on the test's database and topics (a module-scoped fixture
    builds its own with a topic prefix of its own)."""
    return Settings(
        env="test",
        database_url=pg_url,
        kafka_bootstrap_servers=broker.bootstrap,
        kafka_enable_idempotence=not kafka_is_tansu(),
        kafka_partitions=3,
        kafka_session_timeout_ms=6_000,
        kafka_rebalance_timeout_ms=3_000,
        topic_prefix=topic_prefix,
        relay_interval=0.05,
        rate_limit=TESTS_POLL_FREELY,
        secret_key=TEST_SECRET,
    )


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """Embedded mode on a fresh SQLite file and local bus."""
    settings = Settings(
        env="test",
        var_dir=tmp_path / "var",
        relay_interval=0.05,
        rate_limit=TESTS_POLL_FREELY,
        secret_key=TEST_SECRET,
    )
    upgrade(settings.db_url)
    return settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of modules that run on the suite's frozen clock carry the `frozen_clock` marker:
    `make test` runs them once more with the clock moved the other way (tests/support/clock.py)."""
    for item in items:
        if hasattr(getattr(item, "module", None), "frozen_clock"):
            item.add_marker(pytest.mark.frozen_clock)
