from datetime import timedelta

import pytest

from services.auth import Authenticator
from services.clock import SystemClock
from tests.support.journey import TEST_SECRET
from tests.support.servers import kafka_is_tansu


@pytest.fixture
def tokens():
    auth = Authenticator(TEST_SECRET)

    def issue(unit_id: str | None = None) -> str:
        role = "staff" if unit_id else "ops"
        return auth.issue(role, unit_id=unit_id, now=SystemClock().now(), ttl=timedelta(hours=1))

    return issue


@pytest.fixture
def distributed_env(pg_url, broker, topic_prefix) -> dict[str, str]:
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
