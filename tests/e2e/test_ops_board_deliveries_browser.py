"""The ops board's failed deliveries in a real browser, against gridcall run as a process with
a real SMTP server (tests/support/smtp.py, a process of its own) that refuses the resident's
address (550: the email fails for good) and a grid workstation whose own system never answers
(its webhook dead after its one attempt). Both show in the panel, the address masked; the email
is re-driven once a server that takes it listens on the same port, and leaves the panel; at a
phone's width nothing is wider than the phone; in English the words are English. A dispatcher
served alone (distributed mode) has neither source on its origin, and its board says so.

`make chromium` installs the browser; without it this test fails, it is never skipped."""

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from selenium.webdriver.common.by import By

from departments.adapters.signing import new_secret
from services.runtime.settings import DATA_DIR
from tests.support.adapters import NOWHERE, district_with_adapters, secret_env
from tests.support.browser import waiting
from tests.support.cluster import distributed, embedded, embedded_env
from tests.support.journey import IN_G11, bearer, file_report, ops_token
from tests.support.servers import free_port
from tests.support.smtp import read_log, smtp_process
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

RESIDENT = "resident@example.cn"


def policy_without_quiet_hours(path: Path) -> Path:
    """The demo policy, with no quiet hours to hold the resident's email whatever the hour."""
    raw: dict[str, Any] = yaml.safe_load((DATA_DIR / "policy.yaml").read_text(encoding="utf-8"))
    raw.pop("quiet_hours", None)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


async def test_failed_deliveries_are_listed_and_redriven(tmp_path: Path, browser):
    port = free_port()
    district = district_with_adapters(
        tmp_path / "district.yaml", {"U-G11": {"url": NOWHERE, "secret_env": secret_env("U-G11")}}
    )
    env = embedded_env(
        tmp_path / "var",
        GRIDCALL_SMTP_HOST="127.0.0.1",
        GRIDCALL_SMTP_PORT=str(port),
        GRIDCALL_SMTP_TLS="none",
        GRIDCALL_SMTP_FROM="gridcall@example.cn",
        GRIDCALL_DELIVERY_RETRY_SCHEDULE="0s",
        GRIDCALL_POLICY_FILE=str(policy_without_quiet_hours(tmp_path / "policy.yaml")),
        GRIDCALL_JURISDICTION_FILE=str(district),
        **{secret_env("U-G11"): new_secret()},
    )
    ops = bearer(ops_token())
    refusing = ExitStack()  # up before gridcall starts (it checks that email can go), down before the fix
    refusing.enter_context(smtp_process(tmp_path / "refusing.jsonl", port, "--refuse", f"{RESIDENT}=550"))
    with refusing, embedded(env, tmp_path) as gridcall:
        async with httpx.AsyncClient(base_url=gridcall.url, timeout=10) as client:
            wait = waiting(browser, timeout=30)
            try:
                browser.set_window_size(1366, 900)
                browser.get(f"{gridcall.url}/ops")
                browser.find_element(By.ID, "token").send_keys(ops_token())
                browser.find_element(By.ID, "sign-in").click()
                wait.until(lambda d: d.find_element(By.ID, "no-failed").is_displayed())
                assert browser.find_element(By.ID, "no-failed").text == "暂无投递失败"
                assert browser.find_element(By.ID, "failed-notifier").text == "通知：0"

                body = {"category": "garbage", "description": "楼道堆满垃圾", "location": IN_G11}
                case = await file_report(client, {**body, "contact": {"email": RESIDENT}})

                async def failed() -> dict[str, Any] | None:
                    r = await client.get("/v1/ops/notifications", params={"state": "permanent-failure"}, headers=ops)
                    dead = await client.get("/v1/ops/deliveries", params={"state": "dead"}, headers=ops)
                    refused = {d["kind"]: d for d in r.json()["deliveries"] if d["case_id"] == case["case_id"]}
                    both = set(refused) == {"case.received", "case.assigned"} and dead.json()["count"] == 1
                    return refused["case.received"] if both else None

                email = await eventually(failed, timeout=30)  # the resident's first two emails, refused
                assert email["last_status"] == 550
                browser.find_element(By.ID, "failed-refresh").click()
                row = f'#failed tr[data-source=notifier][data-delivery-id="{email["id"]}"]'
                unit_row = "#failed tr[data-source=adapters]"
                wait.until(
                    lambda d: d.find_elements(By.CSS_SELECTOR, row) and d.find_elements(By.CSS_SELECTOR, unit_row)
                )
                field = lambda r, name: browser.find_element(By.CSS_SELECTOR, f"{r} [data-field={name}]").text  # noqa: E731
                assert field(row, "destination") == "r***@example.cn"
                assert field(row, "kind").startswith("受理回执") and "对方拒收" in field(row, "kind")
                assert field(row, "channel") == "邮件" and field(row, "case") == case["case_id"]
                assert "550" in field(row, "reason")
                assert field(unit_row, "destination") == "枫林社区第一网格工作站"
                assert field(unit_row, "kind").startswith("派单") and field(unit_row, "channel") == "Webhook"
                assert browser.find_element(By.ID, "failed-count").text == "3"
                assert browser.find_element(By.ID, "failed-adapters").text == "部门系统：1"
                assert browser.find_element(By.ID, "failed-notifier").text == "通知：2"
                assert not browser.find_element(By.ID, "no-failed").is_displayed()
                assert RESIDENT not in browser.find_element(By.ID, "failed-panel").text

                browser.find_element(By.CSS_SELECTOR, f"{row} .case-link").click()  # the case's history
                wait.until(lambda d: d.find_element(By.ID, "case-id").text == case["case_id"])
                wait.until(lambda d: "派给枫林社区第一网格工作站" in d.find_element(By.ID, "case-history").text)

                browser.set_window_size(390, 844)
                wait.until(lambda d: d.execute_script("return document.documentElement.scrollWidth") <= 390)
                assert browser.find_element(By.CSS_SELECTOR, f"{row} .redrive").is_displayed()
                browser.save_screenshot(str(tmp_path / "failed-phone.png"))
                browser.set_window_size(1366, 900)
                browser.find_element(By.ID, "lang-switch").click()
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
                assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
                assert browser.find_element(By.CSS_SELECTOR, "#failed-panel h2").text.startswith("Failed deliveries")
                assert field(row, "kind").startswith("received (resident)") and "refused for good" in field(row, "kind")
                assert field(row, "channel") == "email" and field(unit_row, "destination") == "Grid G11 workstation"
                browser.save_screenshot(str(tmp_path / "failed-wide.png"))
            except BaseException:
                browser.save_screenshot(str(tmp_path / "failed-last.png"))
                raise

        refusing.close()
        accepting = tmp_path / "accepting.jsonl"

        async def taken() -> list[dict[str, Any]] | None:
            return [m for m in read_log(accepting) if m["recipient"] == RESIDENT] or None

        with smtp_process(accepting, port):  # the mailbox is fixed: the same server now takes the email
            try:
                browser.find_element(By.CSS_SELECTOR, f"{row} .redrive").click()
                wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))
                assert browser.find_elements(By.CSS_SELECTOR, unit_row)  # still dead: nothing answers there
                assert browser.find_element(By.ID, "failed-count").text == "2"  # the second email is still refused
                assert not browser.find_element(By.ID, "error").is_displayed()
                delivered = await eventually(taken, timeout=30)
                assert delivered[0]["message_id"].startswith(f"<{email['msg_id']}")
            finally:
                browser.save_screenshot(str(tmp_path / "failed-after.png"))
                browser.get("about:blank")  # close the event stream before gridcall stops


def test_a_dispatcher_alone_says_the_sources_are_not_reachable(tmp_path: Path, browser, distributed_env):
    with distributed(distributed_env, tmp_path, services=("dispatcher",)) as cluster:
        try:
            browser.get(f"{cluster['dispatcher'].url}/ops")
            browser.find_element(By.ID, "token").send_keys(ops_token())
            browser.find_element(By.ID, "sign-in").click()
            wait = waiting(browser)
            wait.until(lambda d: d.find_element(By.ID, "failed-notifier").text == "通知：本站点无法访问")
            assert browser.find_element(By.ID, "failed-adapters").text == "部门系统：本站点无法访问"
            assert browser.find_element(By.ID, "failed-count").text == "0"
            assert not browser.find_element(By.ID, "error").is_displayed()  # the rest of the board works
        finally:
            browser.get("about:blank")
