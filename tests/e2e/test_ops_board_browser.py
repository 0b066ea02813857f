"""The ops board in a real browser (Debian's chromium through Debian's chromedriver) against
gridcall run as a process, with a policy whose grid response limit for garbage is 2 s: a
report breaches its limit and shows on the board; a second one shows without a reload.

`make chromium` installs the browser; without it this test fails, it is never skipped."""

from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.browser import click, english_words, laid_out, text, waiting
from tests.support.cluster import embedded, embedded_env
from tests.support.journey import bearer, file_report, ops_token
from tests.support.policies import demo_policy_with

pytestmark = pytest.mark.e2e

GARBAGE = {"category": "garbage", "location": {"lat": 30.505, "lon": 114.305}}
POWER_OUTAGE = {"category": "power_outage", "location": {"lat": 30.505, "lon": 114.305}}
QUICK_GARBAGE = {
    "garbage": {"grid": {"response": "2s", "resolution": "1h"}},
    "power_outage": {"bureau": {"response": "2s", "resolution": "1h"}},  # the top tier: 督办, late until met
}


def late_seconds(driver: WebDriver, row: str) -> int:
    return int(driver.find_element(By.CSS_SELECTOR, f"{row} td.late").get_attribute("data-late-seconds") or 0)


async def test_a_token_that_is_not_an_ops_token_is_refused_at_sign_in_saying_why(tmp_path: Path, browser):
    env = embedded_env(tmp_path / "var")
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            r = await client.post(
                "/v1/staff", headers=bearer(ops_token()), json={"unit_id": "U-G11", "name": "Li Wei", "role": "handler"}
            )
            assert r.is_success, r.text
            handler = r.json()["token"]
        try:
            browser.get(f"{gridcall.url}/ops")
            browser.find_element(By.ID, "token").send_keys(handler)
            browser.find_element(By.ID, "sign-in").click()
            waiting(browser).until(lambda d: d.find_element(By.ID, "error").is_displayed())
            assert "这不是运维令牌" in browser.find_element(By.ID, "error").text
            assert browser.find_element(By.ID, "token").is_displayed()  # still at the sign-in, not an empty board
            assert not browser.find_element(By.ID, "board").is_displayed()
            assert browser.execute_script("return sessionStorage.length") == 0  # the token is not kept
        finally:
            browser.save_screenshot(str(tmp_path / "ops-refused.png"))


async def test_breaches_appear_on_the_board_as_they_happen(tmp_path: Path, browser):
    env = embedded_env(
        tmp_path / "var",
        GRIDCALL_TIMER_INTERVAL="0.1",
        GRIDCALL_POLICY_FILE=str(demo_policy_with(tmp_path / "policy.yaml", QUICK_GARBAGE)),
    )
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            wait = waiting(browser, timeout=15)
            try:
                browser.get(f"{gridcall.url}/ops")
                assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
                browser.find_element(By.ID, "token").send_keys(ops_token("值班员陈静"))
                browser.find_element(By.ID, "sign-in").click()
                wait.until(lambda d: d.find_element(By.ID, "live").text == "实时连接中")
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart svg polyline[data-series=opened]"))
                dated = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#chart svg text[data-day]")]
                assert len(dated) == 3 and all(t.endswith("日") for t in dated), dated  # a dated axis
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#rates tr[data-place=S1]"))
                browser.execute_script("window.notReloaded = true;")

                first = await file_report(client, {**GARBAGE, "description": "楼道垃圾"})
                row = f'#breaches tr[data-case-id="{first["case_id"]}"]'
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
                # One row per case: its category and words, its place, the path it took, what it waits on.
                said = text(browser, row)
                assert "垃圾堆放" in said and "楼道垃圾" in said and first["case_id"] not in said
                assert text(browser, f"{row} [data-field=grid]") == "枫林社区第一网格"
                assert text(browser, f"{row} [data-field=path]") == "枫林社区第一网格工作站 → 枫林社区居委会"
                assert text(browser, f"{row} [data-field=waiting]").startswith("等待枫林社区居委会接单")
                assert "响应超时" in text(browser, f"{row} [data-field=late]")

                # insist: not a duplicate of the first, which is still open nearby
                second = await file_report(client, {**GARBAGE, "description": "路口垃圾", "insist": True})
                later = f'#breaches tr[data-case-id="{second["case_id"]}"]'
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, later))
                order = waiting(browser).until(
                    lambda d: [
                        r.get_attribute("data-case-id") for r in d.find_elements(By.CSS_SELECTOR, "#breaches tr")
                    ]
                )
                assert order[:2] == [second["case_id"], first["case_id"]]
                assert browser.execute_script("return window.notReloaded === true;")

                # A case late now (the bureau's limit missed, under supervision) grows later between
                # two looks, while the grid's breach, escalated at once, stays as late as it was.
                outage = await file_report(client, {**POWER_OUTAGE, "description": "3号楼停电"})
                supervised = f'#breaches tr[data-case-id="{outage["case_id"]}"]'
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{supervised} td[data-due]"))
                before = late_seconds(browser, supervised)
                wait.until(lambda d: late_seconds(d, supervised) >= before + 2)
                assert not browser.find_elements(By.CSS_SELECTOR, f"{row} td[data-due]")
                assert len(browser.find_elements(By.CSS_SELECTOR, supervised)) == 1  # one row per case

                # Ops take the supervision up: the row says who, and the button is gone.
                click(browser, f"{supervised} button.acknowledge")
                wait.until(lambda d: "值班员陈静 已跟进督办" in text(d, f"{supervised} [data-field=case]"))
                assert not browser.find_elements(By.CSS_SELECTOR, f"{supervised} button.acknowledge")

                # ...and open the case's ticket: the console, in a new tab, signed in with the board's token.
                board = browser.current_window_handle
                click(browser, f"{supervised} button.open-ticket")
                wait.until(lambda d: len(d.window_handles) == 2)
                browser.switch_to.window(next(h for h in browser.window_handles if h != board))
                wait.until(lambda d: d.find_element(By.ID, "detail-body").is_displayed())
                ticket_id = browser.find_element(By.ID, "detail").get_attribute("data-ticket-id")
                assert "停电" in browser.find_element(By.ID, "detail-body").text
                shown = browser.find_elements(By.CSS_SELECTOR, "#detail-body button[data-action]")
                assert not [b.get_attribute("data-action") for b in shown if b.is_displayed()]  # ops act on none
                browser.close()
                browser.switch_to.window(board)

                laid_out(browser, tmp_path, "ops-board-zh", row)
                assert english_words(browser, ["English"]) == []

                click(browser, f"{row} .case-link")
                # The history in sentences, in the page's language and the policy's zone: no event types, no ISO times.
                wait.until(lambda d: "超过响应时限" in d.find_element(By.ID, "case-history").text)
                history = browser.find_element(By.ID, "case-history").text
                assert "派给枫林社区第一网格工作站（网格）" in history
                assert "由枫林社区第一网格工作站上报至枫林社区居委会（社区）" in history
                assert "case." not in history and "T0" not in history, history
                assert "枫林社区第一网格工作站" in browser.find_element(By.ID, "case-history").text
                assert not browser.find_element(By.ID, "error").is_displayed()

                # The power company resolves it: the case leaves the live list for the history, with when.
                r = await client.post(
                    "/v1/staff",
                    headers=bearer(ops_token()),
                    json={"unit_id": "D-POWER", "name": "王工", "role": "handler"},
                )
                power = bearer(r.json()["token"])
                for action, body in (("claim", None), ("resolve", {"note": "已恢复供电"})):
                    r = await client.post(f"/v1/tickets/{ticket_id}/{action}", headers=power, json=body)
                    assert r.is_success, r.text
                done = f'#done tr[data-case-id="{outage["case_id"]}"]'
                waiting(browser, timeout=30).until(lambda d: d.find_elements(By.CSS_SELECTOR, done))
                assert not browser.find_elements(By.CSS_SELECTOR, supervised)
                assert text(browser, f"{done} [data-field=met]").startswith("已办结 · ")
                assert browser.find_elements(By.CSS_SELECTOR, row)  # the garbage still waits on the community

                browser.find_element(By.ID, "lang-switch").click()  # still signed in: the token is the tab's
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
                assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
                assert text(browser, f"{row} [data-field=grid]") == "Maple Lane Grid 1"
                assert text(browser, f"{row} [data-field=path]").startswith("Grid G11 workstation")
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#rates tr[data-place=S1]"))
                assert browser.find_element(By.CSS_SELECTOR, "#rates tr[data-place=S1] th").text == "Qinghe Street"
                laid_out(browser, tmp_path, "ops-board-en", "#rates tr[data-place=S1]")
            finally:
                browser.save_screenshot(str(tmp_path / "ops-board.png"))
                browser.get("about:blank")  # close the event stream before gridcall stops
    assert (tmp_path / "ops-board.png").stat().st_size > 0
