"""The staff console's page and files, served by the embedded app (and by departments alone):
Chinese by default, English when asked, nothing loaded from another host."""

import json
import re
from html.parser import HTMLParser

import httpx
import pytest

from departments.console.labels import EN, ZH
from gridcall.app import build_app
from services.web.pages import language


class Page(HTMLParser):
    """The parts of a page the tests look at: its language, every src/href, element ids, the data blob."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.lang: str | None = None
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.data_blob = ""
        self._in_data = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        self.links += [v for k, v in attrs if k in ("src", "href", "action") and v]
        if a.get("id"):
            self.ids.add(str(a["id"]))
        self._in_data = a.get("id") == "console-data"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_blob += data

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False


@pytest.fixture(params=[None, "departments"], ids=["embedded", "departments"])
async def client(request, embedded_settings):
    app = build_app(embedded_settings, [request.param] if request.param else None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as c:
        yield c


async def test_the_console_is_chinese_by_default(client):
    r = await client.get("/console")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = Page(r.text)
    assert page.lang == "zh-CN"
    for label in ("网格工单台", "访问令牌", "登录", "接单", "办结", "退单", "上报", "只看超时", "待接单"):
        assert label in r.text
    data = json.loads(page.data_blob)
    assert data["lang"] == "zh-CN" and data["labels"] == ZH
    assert data["categories"]["garbage"] == "垃圾堆放"
    assert data["units"]["U-G11"] == "枫林社区第一网格工作站" and data["units"]["D-URBAN"] == "兰溪区城市管理局"
    assert data["grids"]["G43"] == "柳岸社区第三网格"
    assert '<option value="U-C1">枫林社区居委会</option>' in r.text  # the suggested units of a return
    # The category's questions and answers in Chinese, each grid's shape, the policy's zone, and
    # which limits count working hours (the demo's normal limits do; its urgent ones do not).
    trapped = {"code": "trapped", "label": "是否有人被困？", "values": {"yes": "有人被困", "no": "无人被困"}}
    assert trapped in data["attributes"]["elevator"]
    assert data["shapes"]["G11"][0] == [114.3, 30.5]
    assert data["timezone"] == "Asia/Shanghai"
    assert data["working"]["garbage"]["normal"]["grid"] == ["response", "resolution"]
    assert "urgent" not in data["working"]["garbage"]


async def test_the_console_speaks_english_when_asked(client):
    r = await client.get("/console", params={"lang": "en"})
    assert r.status_code == 200
    page = Page(r.text)
    assert page.lang == "en"
    for label in ("Grid ticket console", "Access token", "Sign in", "Claim", "Resolve", "Late only"):
        assert label in r.text
    assert "登录" not in r.text
    data = json.loads(page.data_blob)
    assert data["labels"] == EN and data["categories"]["garbage"].startswith("Garbage")
    assert data["units"]["U-G11"] == "Grid G11 workstation" and data["units"]["D-URBAN"] == "Urban Management Bureau"
    assert data["grids"]["G43"] == "Willow Bank Grid 3"
    assert '<option value="U-C1">Maple Lane Community Office</option>' in r.text
    assert not re.search("[\u4e00-\u9fff]", page.data_blob.replace(EN["switch_lang"], ""))


@pytest.mark.parametrize(
    ("asked", "lang"), [("en", "en"), ("en-GB", "en"), ("EN", "en"), ("fr", "zh-CN"), ("", "zh-CN")]
)
def test_a_language_we_lack_falls_back_to_chinese(asked, lang):
    assert language(asked) == lang


def test_every_label_is_in_both_languages():
    assert ZH.keys() == EN.keys()


async def test_the_page_has_the_ids_a_browser_test_drives(client):
    page = Page((await client.get("/console")).text)
    wanted = {"token", "sign-in", "sign-out", "me-name", "unit-select", "filter-status", "filter-late", "refresh"}
    wanted |= {"queue", "detail", "error", "notice", "note-text", "note-visibility", "evidence-url"}
    wanted |= {"evidence-caption", "resolve-note", "return-code", "return-reason", "escalate-reason"}
    assert wanted <= page.ids


async def test_the_page_loads_nothing_from_another_host(client):
    r = await client.get("/console")
    page = Page(r.text)
    assert page.links, "the page links its script and style sheet"
    for link in page.links:
        assert link.startswith("/") and not link.startswith("//"), link
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", r.text)
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy


@pytest.mark.parametrize(("name", "kind"), [("console.js", "text/javascript"), ("console.css", "text/css")])
async def test_the_script_and_style_sheet_are_served_with_their_types(client, name, kind):
    page = Page((await client.get("/console")).text)
    [link] = [x for x in page.links if x.startswith(f"/console/static/{name}")]
    r = await client.get(link)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == kind
    assert r.headers["x-content-type-options"] == "nosniff"
    assert len(r.content) > 1000
    # Nothing from elsewhere: no address but the SVG namespace's name, which is never fetched.
    own = r.content.replace(b'"http://www.w3.org/2000/svg"', b"")
    assert b"http://" not in own and b"https://" not in own


async def test_an_unknown_console_file_is_404(client):
    r = await client.get("/console/static/../../etc/passwd")
    assert r.status_code == 404
    r = await client.get("/console/static/console.py")
    missing = {"detail": "no file 'console.py' under /console/static", "code": "not_found"}
    assert r.status_code == 404 and r.json() == missing


async def test_the_console_is_not_in_the_api_description(client):
    doc = (await client.get("/openapi.json")).json()
    assert not [p for p in doc["paths"] if p.startswith("/console")]


async def test_the_page_names_its_icon_and_the_service_serves_it(client):
    page = Page((await client.get("/console")).text)
    assert "/favicon.svg" in page.links
    for path in ("/favicon.svg", "/favicon.ico"):  # the second for what asks without reading the page
        r = await client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
        assert r.content.startswith(b"<svg") and b"<script" not in r.content
