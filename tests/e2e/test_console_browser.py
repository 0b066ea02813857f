"""The staff console in a real browser (Debian's chromium, driven by Selenium through Debian's
chromedriver) against gridcall running as a process: a resident reports, the grid's handler
signs in to /console, claims the ticket and resolves it, and the resident's case view says so.

`make chromium` installs the browser; without it this test fails, it is never skipped."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from services.district.clock import SystemClock
from services.web.auth import Authenticator
from tests.support.cluster import embedded, embedded_env
from tests.support.journey import TEST_SECRET, bearer, case_in_status, file_report

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
IN_G11 = {"lat": 30.505, "lon": 114.305}
DESCRIPTION = "3号楼楼道堆满垃圾袋"
RESULT = "已清运，楼道已打扫干净"


@pytest.fixture
def browser(monkeypatch) -> Iterator[WebDriver]:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "no chromium: run `make chromium`"
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for a driver to download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def waiting(driver: WebDriver, timeout: float = 20) -> WebDriverWait[WebDriver]:
    """Waits that ride over the queue being re-rendered under them."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def listed(driver: WebDriver, selector: str, timeout: float = 30) -> None:
    """Wait for a row to appear, asking the console to refresh rather than waiting its 20 s."""

    def there(d: WebDriver) -> bool:
        if d.find_elements(By.CSS_SELECTOR, selector):
            return True
        d.find_element(By.ID, "refresh").click()
        return False

    WebDriverWait(driver, timeout, poll_frequency=0.5).until(there)


def ops_token() -> str:
    return Authenticator(TEST_SECRET, SystemClock()).issue("ops", ttl=timedelta(hours=1))


def attribute(driver: WebDriver, selector: str, name: str) -> str | None:
    return driver.find_element(By.CSS_SELECTOR, selector).get_attribute(name)


async def test_a_grid_worker_claims_and_resolves_a_report_in_the_console(tmp_path, browser):
    env = embedded_env(tmp_path / "var")
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            case = await file_report(client, {"category": "garbage", "description": DESCRIPTION, "location": IN_G11})
            await case_in_status(client, case, "assigned")
            r = await client.post(
                "/v1/staff", headers=bearer(ops_token()), json={"unit_id": "U-G11", "name": "Li Wei", "role": "handler"}
            )
            assert r.is_success, r.text
            handler = r.json()["token"]

            wait = waiting(browser)
            row = f'#queue tr[data-case-id="{case["case_id"]}"]'
            try:
                browser.get(f"{gridcall.url}/console")
                assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
                browser.find_element(By.ID, "token").send_keys(handler)
                browser.find_element(By.ID, "sign-in").click()
                wait.until(lambda d: d.find_element(By.ID, "me-name").text == "Li Wei")
                assert not browser.find_element(By.ID, "token").is_displayed()
                assert browser.find_element(By.ID, "me-unit").text == "枫林社区第一网格工作站 · 网格"

                listed(browser, row)
                assert DESCRIPTION in browser.find_element(By.CSS_SELECTOR, row).text
                assert attribute(browser, row, "data-status") == "open"
                assert browser.find_element(By.CSS_SELECTOR, f"{row} [data-field=category]").text == "垃圾堆放"
                # The clock counts down in the browser, between the console's refreshes.
                clock = f"{row} [data-clock]"
                first = int(attribute(browser, clock, "data-seconds-left") or 0)
                wait.until(lambda d: int(attribute(d, clock, "data-seconds-left") or 0) < first)
                assert "剩余" in browser.find_element(By.CSS_SELECTOR, clock).text

                assert not browser.find_elements(By.CSS_SELECTOR, f"{row} button[data-action=unclaim]")  # not hers
                browser.find_element(By.CSS_SELECTOR, f"{row} button[data-action=claim]").click()
                wait.until(lambda d: attribute(d, row, "data-status") == "claimed")
                wait.until(lambda d: attribute(d, "#detail", "data-status") == "claimed")
                # Only what the API says she may do now (allowed_actions): no claim, no reassign (a handler's)
                shown = {
                    e.get_attribute("data-action")
                    for e in browser.find_elements(By.CSS_SELECTOR, "#detail [data-action]")
                    if e.is_displayed()
                }
                assert {"unclaim", "note", "resolve", "return", "escalate"} <= shown, shown
                assert not shown & {"claim", "reassign", "whistle"}, shown
                assert browser.find_element(By.CSS_SELECTOR, f"{row} [data-field=claimed-by]").text == "Li Wei"
                fields = ("grid", "unit")
                where = [browser.find_element(By.CSS_SELECTOR, f"#detail [data-field={f}]").text for f in fields]
                assert where == ["枫林社区第一网格", "枫林社区第一网格工作站"]
                browser.save_screenshot(str(tmp_path / "console-claimed.png"))

                browser.find_element(By.ID, "resolve-note").send_keys(RESULT)
                browser.find_element(By.CSS_SELECTOR, "#detail button[data-action=resolve]").click()
                wait.until(lambda d: attribute(d, "#detail", "data-status") == "resolved")
                wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))  # off the open + claimed queue
                assert not browser.find_element(By.ID, "error").is_displayed()

                browser.find_element(By.ID, "lang-switch").click()  # still signed in: the token is the tab's
                wait.until(lambda d: d.find_element(By.ID, "me-unit").text == "Grid G11 workstation · grid")
                [option] = browser.find_elements(By.CSS_SELECTOR, "#unit-select option")
                assert option.text == "Grid G11 workstation · grid"
            finally:
                browser.save_screenshot(str(tmp_path / "console.png"))

            view = await case_in_status(client, case, "resolved")
            assert view["timeline"][-1]["result"] == RESULT
    assert (tmp_path / "console.png").stat().st_size > 0
