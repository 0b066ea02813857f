from datetime import timedelta

import pytest

from services.auth import Authenticator
from services.clock import SystemClock
from tests.support.cluster import distributed_settings
from tests.support.journey import TEST_SECRET


@pytest.fixture
def tokens():
    auth = Authenticator(TEST_SECRET)

    def issue(unit_id: str | None = None) -> str:
        role = "staff" if unit_id else "ops"
        return auth.issue(role, unit_id=unit_id, now=SystemClock().now(), ttl=timedelta(hours=1))

    return issue


@pytest.fixture
def distributed_env(pg_url, broker, topic_prefix) -> dict[str, str]:
    return distributed_settings(pg_url, broker.bootstrap, topic_prefix)
