"""The public results page (公示) in a real headless browser against gridcall running as a
process: a resident reports with a name and phone, the grid's handler resolves the case, and
the page shows the result, filters by community, switches language, and shows nothing personal.

`make chromium` installs the browser; without it this test fails, it is never skipped."""

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support.browser import waiting
from tests.support.cluster import embedded, embedded_env
from tests.support.journey import IN_G11, bearer, case_in_status, file_report, open_ticket, ops_token

pytestmark = pytest.mark.e2e

NAME, PHONE = "王小明", "13912345678"
DESCRIPTION = "5号楼门口垃圾堆了三天"
RESULT = "已清运，门口已冲洗干净"


async def test_the_public_page_shows_a_resolved_case_and_nothing_personal(tmp_path, browser):
    env = embedded_env(tmp_path / "var")
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            body = {"category": "garbage", "description": DESCRIPTION, "location": IN_G11}
            case = await file_report(client, {**body, "contact": {"name": NAME, "phone": PHONE}})
            await case_in_status(client, case, "assigned")
            r = await client.post(
                "/v1/staff", headers=bearer(ops_token()), json={"unit_id": "U-G11", "name": "Li Wei", "role": "handler"}
            )
            assert r.is_success, r.text
            token = r.json()["token"]
            handler = bearer(token)
            ticket = await open_ticket(client, "U-G11", token, case["case_id"])  # once departments has it
            for action, sent in (("claim", None), ("resolve", {"note": RESULT})):
                r = await client.post(f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=handler, json=sent)
                assert r.status_code == 200, r.text
            await case_in_status(client, case, "resolved")

        row = f'tr.result[data-case="{case["case_id"]}"]'
        try:
            browser.get(f"{gridcall.url}/public")
            assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
            shown = browser.find_element(By.CSS_SELECTOR, row).text
            assert RESULT in shown and "垃圾堆放" in shown and "枫林社区" in shown and "回访中" in shown
            assert "枫林社区 / 枫林社区第一网格" in shown and "枫林社区第一网格工作站" in shown
            # the style sheet loaded under the page's CSP: the header bar is coloured
            bar = browser.find_element(By.CSS_SELECTOR, "header.bar").value_of_css_property("background-color")
            assert bar not in ("rgba(0, 0, 0, 0)", "transparent")
            browser.save_screenshot(str(tmp_path / "public.png"))

            Select(browser.find_element(By.NAME, "community")).select_by_value("C2")
            browser.find_element(By.CSS_SELECTOR, "#filters button").click()
            waiting(browser).until(lambda d: d.find_elements(By.ID, "empty"))
            assert "community=C2" in browser.current_url and not browser.find_elements(By.CSS_SELECTOR, row)

            browser.get(f"{gridcall.url}/public?community=C1")
            browser.find_element(By.ID, "lang-switch").click()
            waiting(browser).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
            shown = browser.find_element(By.CSS_SELECTOR, row).text
            assert (
                "Maple Lane Community" in shown and "Awaiting answer" in shown and "community=C1" in browser.current_url
            )
            assert "Maple Lane Community / Maple Lane Grid 1" in shown and "Grid G11 workstation" in shown
            for private in (NAME, PHONE, DESCRIPTION):
                assert private not in browser.page_source
        finally:
            browser.save_screenshot(str(tmp_path / "public-last.png"))
    assert (tmp_path / "public.png").stat().st_size > 0
