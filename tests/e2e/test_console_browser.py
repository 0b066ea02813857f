"""The staff console in a real browser (Debian's chromium, driven by Selenium through Debian's
chromedriver) against gridcall running as a process: a resident reports, the grid's handler
signs in to /console, claims the ticket and resolves it, and the resident's case view says so.

`make chromium` installs the browser; without it this test fails, it is never skipped."""

from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.browser import english_words, laid_out, waiting
from tests.support.cluster import embedded, embedded_env
from tests.support.journey import IN_G11, bearer, case_in_status, file_report, open_ticket, ops_token

pytestmark = pytest.mark.e2e

DESCRIPTION = "3号楼夜里装修噪音很大"
PHOTO = "https://media.example.cn/lanxi/noise-3.jpg"
RESULT = "已约谈施工方，夜间不再施工"
MAP = "#detail [data-field=map]"
# Types into a field at once, as a paste does, firing the input event a person's typing would.
TYPE = """
const f = document.getElementById(arguments[0]);
f.value = arguments[1];
f.dispatchEvent(new Event("input", { bubbles: true }));
"""


def listed(driver: WebDriver, selector: str, timeout: float = 30) -> None:
    """Wait for a row to appear, asking the console to refresh rather than waiting its 20 s."""

    def there(d: WebDriver) -> bool:
        if d.find_elements(By.CSS_SELECTOR, selector):
            return True
        d.find_element(By.ID, "refresh").click()
        return False

    WebDriverWait(driver, timeout, poll_frequency=0.5).until(there)


def attribute(driver: WebDriver, selector: str, name: str) -> str | None:
    return driver.find_element(By.CSS_SELECTOR, selector).get_attribute(name)


def inside(driver: WebDriver, point: str, shape: str) -> bool:
    """Whether the centre of the drawn `point` lies within the drawn `shape`'s box, on screen."""
    dot = driver.find_element(By.CSS_SELECTOR, point).rect
    box = driver.find_element(By.CSS_SELECTOR, shape).rect
    x, y = dot["x"] + dot["width"] / 2, dot["y"] + dot["height"] / 2
    return box["width"] > 50 and box["x"] < x < box["x"] + box["width"] and box["y"] < y < box["y"] + box["height"]


async def test_a_grid_worker_claims_and_resolves_a_report_in_the_console(tmp_path, browser):
    env = embedded_env(tmp_path / "var")
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            report = {
                "category": "noise",
                "description": DESCRIPTION,
                "location": IN_G11,
                "attributes": {"when": ["night", "weekend"]},
                "media_urls": [PHOTO],
            }
            case = await file_report(client, report)
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

                # How she hears of the tickets she holds: SMS needs a number, and says so; with one, saved.
                browser.find_element(By.ID, "reach-toggle").click()
                browser.find_element(By.ID, "reach-email").send_keys("li.wei@example.cn")
                browser.find_element(By.CSS_SELECTOR, "#reach-channels input[value=sms]").click()
                browser.find_element(By.ID, "reach-save").click()
                wait.until(lambda d: "phone：选了这个通知渠道，就要填写它的地址" in d.find_element(By.ID, "error").text)
                browser.find_element(By.ID, "reach-phone").send_keys("13800138011")
                browser.find_element(By.ID, "reach-save").click()
                wait.until(lambda d: "已保存" in d.find_element(By.ID, "notice").text)
                me = (await client.get("/v1/me", headers=bearer(handler))).json()
                assert me["reach"] == {
                    "email": "li.wei@example.cn",
                    "phone": "13800138011",
                    "language": "zh-CN",
                    "channels": ["sms"],
                }
                browser.find_element(By.ID, "reach-toggle").click()

                listed(browser, row)
                assert DESCRIPTION in browser.find_element(By.CSS_SELECTOR, row).text
                assert attribute(browser, row, "data-status") == "open"
                assert browser.find_element(By.CSS_SELECTOR, f"{row} [data-field=category]").text == "噪音扰民"
                # The clock counts down in the browser, between the console's refreshes.
                clock = f"{row} [data-clock]"
                first = int(attribute(browser, clock, "data-seconds-left") or 0)
                wait.until(lambda d: int(attribute(d, clock, "data-seconds-left") or 0) < first)
                assert "剩余" in browser.find_element(By.CSS_SELECTOR, clock).text
                # … beside the time of day it runs out, in the policy's zone (Shanghai), whatever the browser's
                due = datetime.fromisoformat(attribute(browser, f"{row} [data-due]", "data-due") or "")
                shanghai = due.astimezone(ZoneInfo("Asia/Shanghai"))
                assert f"{shanghai:%H:%M} 到期" in browser.find_element(By.CSS_SELECTOR, f"{row} [data-due]").text
                assert "Asia/Shanghai" in browser.find_element(By.ID, "time-zone").text

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
                # The case as the resident gave it: her answers under the category's questions, her
                # photo, and the place drawn on the grid's shape.
                assert browser.find_element(By.CSS_SELECTOR, "#detail [data-attribute=when]").text == "夜间、周末"
                assert attribute(browser, "#detail a[data-media]", "href") == PHOTO
                assert inside(browser, f"{MAP} [data-place]", f"{MAP} polygon")
                laid_out(browser, tmp_path, "console-claimed-zh", MAP)
                assert english_words(browser, ["English", "Li Wei"]) == []  # every word Chinese, but names and codes
                assert english_words(browser) == ["English", "Li", "Wei"]  # …which the check does see

                # A note over the API's 4,000 characters is counted and refused before it is sent,
                # its text kept to shorten; shortened, it goes.
                long_note = "楼" * 4001
                browser.execute_script(TYPE, "note-text", long_note)
                assert browser.find_element(By.CSS_SELECTOR, "[data-count-for=note-text]").text == "4001 / 4000 字"
                browser.find_element(By.CSS_SELECTOR, "#detail button[data-action=note]").click()
                wait.until(lambda d: "最多 4000 字，现有 4001 字" in d.find_element(By.ID, "error").text)
                assert browser.find_element(By.ID, "note-text").get_attribute("value") == long_note
                assert "楼" * 10 not in browser.find_element(By.ID, "detail-notes").text  # nothing was sent
                browser.execute_script(TYPE, "note-text", "已联系施工方")
                browser.find_element(By.CSS_SELECTOR, "#detail button[data-action=note]").click()
                wait.until(lambda d: "已联系施工方" in d.find_element(By.ID, "detail-notes").text)
                assert browser.find_element(By.ID, "note-text").get_attribute("value") == ""

                browser.find_element(By.ID, "lang-switch").click()  # still signed in: the token is the tab's
                wait.until(lambda d: d.find_element(By.ID, "me-unit").text == "Grid G11 workstation · grid")
                options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#unit-select option")]
                assert options == ["My tickets", "Grid G11 workstation · grid"]  # no "all units": she has one
                listed(browser, row)
                browser.find_element(By.CSS_SELECTOR, f"{row} button[data-action=open]").click()
                wait.until(lambda d: attribute(d, "#detail", "data-status") == "claimed")
                assert (
                    browser.find_element(By.CSS_SELECTOR, "#detail [data-attribute=when]").text
                    == "At night, At weekends"
                )
                laid_out(browser, tmp_path, "console-claimed-en", MAP)

                browser.find_element(By.ID, "resolve-note").send_keys(RESULT)
                browser.find_element(By.CSS_SELECTOR, "#detail button[data-action=resolve]").click()
                wait.until(lambda d: attribute(d, "#detail", "data-status") == "resolved")
                wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))  # off the open + claimed queue
                assert not browser.find_element(By.ID, "error").is_displayed()
            finally:
                browser.save_screenshot(str(tmp_path / "console.png"))

            view = await case_in_status(client, case, "resolved")
            assert view["timeline"][-1]["result"] == RESULT
    assert (tmp_path / "console.png").stat().st_size > 0


async def staff(client: httpx.AsyncClient, unit_id: str, name: str, role: str = "handler") -> str:
    r = await client.post(
        "/v1/staff", headers=bearer(ops_token()), json={"unit_id": unit_id, "name": name, "role": role}
    )
    assert r.is_success, r.text
    return str(r.json()["token"])


def sign_in(driver: WebDriver, token: str, name: str) -> None:
    if driver.find_element(By.ID, "sign-out").is_displayed():
        driver.find_element(By.ID, "sign-out").click()
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    waiting(driver).until(lambda d: d.find_element(By.ID, "me-name").text == name)


def shown_actions(driver: WebDriver) -> set[str]:
    return {
        str(e.get_attribute("data-action"))
        for e in driver.find_elements(By.CSS_SELECTOR, "#detail [data-action]")
        if e.is_displayed()
    }


async def test_a_supervisor_watches_every_unit_under_her_and_a_street_office_blows_the_whistle(tmp_path, browser):
    env = embedded_env(tmp_path / "var")
    with embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            heap = await file_report(
                client, {"category": "garbage", "description": "2号楼垃圾满了", "location": IN_G11}
            )
            road = await file_report(
                client, {"category": "road_damage", "description": "青河路塌陷", "location": IN_G11}
            )
            await case_in_status(client, heap, "assigned")
            await case_in_status(client, road, "assigned")
            supervisor = await staff(client, "U-C1", "Zhao Min", "supervisor")
            street = await staff(client, "U-S1", "Sun Hao")

            wait = waiting(browser)
            heap_row = f'#queue tr[data-case-id="{heap["case_id"]}"]'
            road_row = f'#queue tr[data-case-id="{road["case_id"]}"]'
            try:
                browser.get(f"{gridcall.url}/console")
                sign_in(browser, supervisor, "Zhao Min")
                # All units under her at once: the grid's ticket, named by its unit.
                Select(browser.find_element(By.ID, "unit-select")).select_by_visible_text("我管辖的全部单位")
                listed(browser, heap_row)
                unit = browser.find_element(By.CSS_SELECTOR, f"{heap_row} [data-field=row-unit]").text
                assert unit == "枫林社区第一网格工作站"
                assert not browser.find_elements(By.CSS_SELECTOR, f"{heap_row} button[data-action=claim]")
                browser.find_element(By.CSS_SELECTOR, f"{heap_row} button[data-action=open]").click()
                wait.until(lambda d: attribute(d, "#detail", "data-status") == "open")
                # The grid's ticket is the grid's to work: she may move it within her units, nothing else.
                assert shown_actions(browser) <= {"reassign"}, shown_actions(browser)
                # Search by the case's id finds it whatever the filters say.
                browser.find_element(By.ID, "search").send_keys(heap["case_id"])
                browser.find_element(By.CSS_SELECTOR, "#search-form button").click()
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queue tr")) == 1)
                assert browser.find_elements(By.CSS_SELECTOR, heap_row)
                laid_out(browser, tmp_path, "console-supervisor", "#detail [data-field=map]")

                sign_in(browser, street, "Sun Hao")
                listed(browser, road_row)
                browser.find_element(By.CSS_SELECTOR, f"{road_row} button[data-action=claim]").click()
                wait.until(lambda d: attribute(d, "#detail", "data-status") == "claimed")
                assert "whistle" in shown_actions(browser)
                Select(browser.find_element(By.ID, "whistle-lead")).select_by_visible_text("兰溪区城市管理局")
                browser.find_element(By.CSS_SELECTOR, "#whistle-co input[value=D-HOUSING]").click()
                browser.find_element(By.ID, "whistle-reason").send_keys("路面塌陷涉及管线，需城管牵头、住建协办")
                browser.save_screenshot(str(tmp_path / "console-whistle-1366.png"))
                browser.find_element(By.CSS_SELECTOR, "#detail button[data-action=whistle]").click()
                wait.until(lambda d: attribute(d, "#detail", "data-status") == "whistled")
                assert not browser.find_element(By.ID, "error").is_displayed()
            finally:
                browser.save_screenshot(str(tmp_path / "console-end.png"))

            # The departments it summoned each have the case now: the lead and the co-handler.
            ops = ops_token()
            lead = await open_ticket(client, "D-URBAN", ops, road["case_id"])
            co = await open_ticket(client, "D-HOUSING", ops, road["case_id"])
            assert (lead["role"], co["role"]) == ("lead", "co")
            assert "路面塌陷涉及管线" in (lead["arrived_because"] or "")
