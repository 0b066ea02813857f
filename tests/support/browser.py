"""The pages in a real browser: Debian's chromium, driven by Selenium through Debian's
chromedriver, with nothing allowed to download a browser or a driver (`make chromium` installs
both; without them a browser test fails, it is never skipped). The `browser` fixture is in
tests/e2e/conftest.py."""

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

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
    "--window-size=1366,900",
)
# The widths every page is laid out for: an office screen, and a grid worker's phone.
SIZES = ((1366, 900), (390, 844))


def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
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
    """Waits that ride over a page re-rendering under them."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def text(driver: WebDriver, selector: str) -> str:
    """An element's text, read again if a live page re-rendered it between finding and reading."""
    return str(waiting(driver).until(lambda d: [d.find_element("css selector", selector).text])[0])


def click(driver: WebDriver, selector: str) -> None:
    """Click an element, found again if a live page re-rendered it under the click."""
    waiting(driver).until(lambda d: d.find_element("css selector", selector).click() or True)


def attribute(driver: WebDriver, selector: str, name: str) -> str | None:
    """An element's attribute, read as `text` reads."""
    return waiting(driver).until(lambda d: [d.find_element("css selector", selector).get_attribute(name)])[0]


_WIDER = """
const within = document.documentElement.clientWidth;
const box = (e) => e.getBoundingClientRect();
const out = (e) => box(e).width > 0 && (box(e).left < -1 || box(e).right > within + 1);
const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + " " + Math.round(box(e).width) + "px";
const panels = [...document.querySelectorAll("main section, main aside")];
const spilt = panels.filter((p) => p.scrollWidth > p.clientWidth + 1);
return [...[...document.querySelectorAll("body *")].filter(out).map(name), ...spilt.map((p) => "inside " + name(p))];
"""


def wider_than_the_window(driver: WebDriver) -> list[str]:
    """The visible elements that reach past either side of the window, and the page's panels
    (its sections and asides) whose content spills out of them sideways: none, at any width."""
    return list(driver.execute_script(_WIDER))


def laid_out(driver: WebDriver, tmp_path: Path, name: str, ready: str) -> None:
    """The page at each of SIZES, saved as `name`-WIDTH.png under the test's tmp path, with
    nothing wider than the window; `ready` is a selector that must be there at every width."""
    for width, height in SIZES:
        driver.set_window_size(width, height)
        waiting(driver).until(lambda d: d.find_elements("css selector", ready))
        driver.save_screenshot(str(tmp_path / f"{name}-{width}.png"))
        wider = wider_than_the_window(driver)
        assert not wider, f"at {width} px: {wider}"
    driver.set_window_size(*SIZES[0])


# What a Chinese page may show in Latin letters besides the names it is given: codes and ids
# (a UUID, U-G11, Asia/Shanghai, anything with a digit or a slash), links and addresses.
_CODES = re.compile(
    r"https?://\S+|\S+@\S+|[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|\S*[\d/]\S*|\b[A-Z]+-[A-Z0-9-]+\b"
)


def english_words(driver: WebDriver, names: Iterable[str] = ()) -> list[str]:
    """The words in Latin letters a zh-CN page shows (its rendered, visible text) that are not
    one of the proper `names` given (a person, the 'English' switch) nor a code: none, when
    every label, message and unit name is Chinese."""
    shown = str(driver.execute_script("return document.body.innerText"))
    for name in names:
        shown = shown.replace(name, " ")
    return sorted(set(re.findall(r"[A-Za-z]{2,}", _CODES.sub(" ", shown))))
