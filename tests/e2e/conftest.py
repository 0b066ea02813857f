from collections.abc import Iterator

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.browser import chromium
from tests.support.cluster import distributed_settings
from tests.support.journey import TEST_SECRET
from tests.support.staff import enrol_now


@pytest.fixture
def tokens(pg_url):
    """A handler in every unit, made in the test's database before the services start."""
    return enrol_now(pg_url, TEST_SECRET)


@pytest.fixture
def distributed_env(pg_url, broker, topic_prefix) -> dict[str, str]:
    return distributed_settings(pg_url, broker.bootstrap, topic_prefix)


@pytest.fixture
def browser(monkeypatch) -> Iterator[WebDriver]:
    """Headless Debian chromium (tests/support/browser.py)."""
    yield from chromium(monkeypatch)
