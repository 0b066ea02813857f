"""The resident's tracking page in a real headless browser, opened by the link their first
message carries (which the notifier's record of it leaves out): the case's status, unit and timeline in Chinese, then
in English (the token kept in the fragment across the switch), at a phone's width; a link
without its token, or with a wrong one, says so and shows nothing of the case.

`make chromium` installs the browser; without it this test fails, it is never skipped."""

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.support.browser import waiting
from tests.support.cluster import embedded, embedded_env
from tests.support.journey import IN_G11, bearer, case_in_status, file_report, ops_token
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_the_link_in_the_received_message_opens_the_case(tmp_path, browser):
    env = embedded_env(tmp_path / "var")
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            body = {"category": "garbage", "description": "楼道堆满垃圾", "location": IN_G11}
            case = await file_report(client, {**body, "contact": {"email": "resident@example.cn"}})
            await case_in_status(client, case, "assigned")

            async def received() -> dict | None:
                r = await client.get(
                    "/v1/notifications", params={"case_id": case["case_id"]}, headers=bearer(ops_token())
                )
                return next((n for n in r.json() if n["kind"] == "case.received"), None)

            # the link goes to the resident alone: what is kept (and logged) has no token in it
            record = await eventually(received)
            assert case["tracking_token"] not in str(record)
        page = f"{gridcall.url}/track/{case['case_id']}#{case['tracking_token']}"
        try:
            browser.set_window_size(390, 844)
            browser.get(page)
            waiting(browser).until(lambda d: d.find_element(By.ID, "status").text)
            assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
            assert browser.find_element(By.ID, "status").text == "已派单"
            assert browser.find_element(By.ID, "unit").text == "枫林社区第一网格工作站"
            assert browser.find_element(By.ID, "category").text == "垃圾堆放"
            assert "已受理" in browser.find_element(By.ID, "timeline").text
            assert "月" in browser.find_element(By.ID, "respond").text  # a local time, written the Chinese way
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, width  # nothing wider than the phone
            browser.save_screenshot(str(tmp_path / "track-phone.png"))

            browser.set_window_size(1366, 900)
            browser.find_element(By.ID, "lang-switch").click()
            waiting(browser).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
            waiting(browser).until(lambda d: d.find_element(By.ID, "status").text == "assigned")
            assert browser.find_element(By.ID, "unit").text == "Grid G11 workstation"

            browser.get(page.split("#")[0])
            waiting(browser).until(lambda d: "链接不完整" in d.find_element(By.ID, "state").text)
            browser.get("about:blank")  # a new fragment alone would not load the page again
            browser.get(page.split("#")[0] + "#not-the-token")
            waiting(browser).until(lambda d: "未找到" in d.find_element(By.ID, "state").text)
            assert not browser.find_element(By.ID, "unit").text
        finally:
            browser.save_screenshot(str(tmp_path / "track-last.png"))
