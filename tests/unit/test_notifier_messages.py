"""The notifier's messages (notifier/messages.py): every template of every kind, audience, channel
and language renders with sample facts; Chinese first and Chinese only, local times, escaped
HTML, SMS in one segment with the district's longest names, and a missing template named at
start-up."""

import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import FileSystemLoader

from notifier.messages import (
    RECEIVERS,
    REQUIRED,
    SMS_KINDS,
    SMS_PARAM_LIMIT,
    SMS_SEGMENT,
    Audience,
    Channel,
    DigestItem,
    Facts,
    Kind,
    MessageError,
    Messages,
    Name,
    Rendered,
    local_time,
    sms_param,
    sms_template_name,
    template_name,
)
from services.district.events import Priority, SlaClock, Tier
from services.district.jurisdiction import load_jurisdiction
from services.district.policy import load_policy
from services.runtime.settings import DATA_DIR
from services.web.pages import LANGS, Lang

J = load_jurisdiction(DATA_DIR / "district.yaml")
POLICY = load_policy(DATA_DIR / "policy.yaml", J)
ZONE = POLICY.calendar.zone
SIGN = "兰溪区网格热线"
CODES = {kind: f"SMS_{100 + i}" for i, kind in enumerate(SMS_KINDS)}


def longest(*names: str | None) -> str:
    return max((n for n in names if n), key=len)


# The longest names the demo district gives, so that the SMS lengths hold for the real ones.
# Units and grids gain Chinese names with issue 18; until the district file has them, stand-ins
# as long as the longest of their kind (a property company's full name) take their place.
UNIT = Name(
    longest("绿城物业服务集团有限公司", *(getattr(u, "name_zh", None) for u in J.units), *(p.name_zh for p in J.pools)),
    longest(*(u.name for u in J.units)),
)
GRID = Name(
    longest("枫林社区第一网格", *(getattr(g, "name_zh", None) for g in J.grids)), longest(*(g.name for g in J.grids))
)
CATEGORY = Name(longest(*(c.name_zh for c in POLICY.categories)), longest(*(c.name for c in POLICY.categories)))
LEAD = Name("兰溪区城市管理局", "Urban Management Bureau")
CASE = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
TICKET = "9b2c1d0e-6f1a-4c55-9e3b-0d1f2a3b4c5d"
DUE = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)  # 13:00 in Shanghai
RESOLVE = datetime(2026, 12, 9, 9, 30, tzinfo=UTC)
AT = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
TRACK = "https://hotline.example.cn/track/3fa85f64?token=Zx9&lang=zh-CN"
UNSUBSCRIBE = "https://hotline.example.cn/track/3fa85f64/unsubscribe?token=Zx9"
NOTE = "已派人清理，楼道恢复通行。"
ERROR = "HTTP 503 Service Unavailable"
RECIPIENT = "resident@example.cn"
ITEMS = (
    DigestItem(TICKET, CATEGORY, GRID, DUE, Priority.URGENT),
    DigestItem("5d4c3b2a-0000-4000-8000-000000000001", CATEGORY, GRID, RESOLVE, Priority.NORMAL),
)
# What a message may show in Latin letters (in Chinese) or in Chinese (in English): names, ids,
# addresses, links and people's or systems' own words.
VERBATIM = sorted(
    {
        *(ident[:n] for ident in (CASE, TICKET, *(i.ticket_id for i in ITEMS)) for n in (8, None)),
        *(TRACK, UNSUBSCRIBE, NOTE, ERROR, RECIPIENT, f"【{SIGN}】"),
    },
    key=len,
    reverse=True,
)


def full(kind: Kind, audience: Audience) -> Facts:
    """Every fact a message may show, given."""
    return Facts(
        kind=kind,
        audience=audience,
        case_id=CASE,
        category=CATEGORY,
        unit=UNIT,
        other_unit=LEAD,
        grid=GRID,
        tier=Tier.BUREAU,
        priority=Priority.EMERGENCY,
        clock=SlaClock.RESOLUTION,
        reason=ERROR if kind in (Kind.DELIVERY_DEAD, Kind.NOTIFICATION_DEAD) else "breach",
        note=NOTE,
        due=DUE,
        resolution_due=RESOLVE,
        late_minutes=1565,
        repeat=2,
        ticket_id=TICKET,
        tracking_url=TRACK,
        unsubscribe_url=UNSUBSCRIBE,
        items=ITEMS,
        channel="email",
        recipient=RECIPIENT,
        at=AT,
    )


def minimal(kind: Kind, audience: Audience) -> Facts:
    """Only what the kind requires (and a resident's unsubscribe link)."""
    given_ = {field: getattr(full(kind, audience), field) for field in REQUIRED[kind]}
    return Facts(kind=kind, audience=audience, case_id=CASE, unsubscribe_url=UNSUBSCRIBE, **given_)


MESSAGES = Messages(ZONE, CODES, SIGN)
PAIRS = [(kind, audience) for kind, audiences in RECEIVERS.items() for audience in sorted(audiences)]
CASES = [
    pytest.param(kind, audience, channel, lang, id=f"{kind}-{audience}-{channel}-{lang}")
    for kind, audience in PAIRS
    for channel in Channel
    if channel is not Channel.SMS or kind in SMS_KINDS
    for lang in LANGS
]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown(rendered: Rendered) -> list[str]:
    """Everything a reader sees: the subject, the text, the HTML's text."""
    texts = [rendered.subject, rendered.text]
    if rendered.html is not None:
        parser = _Text()
        parser.feed(rendered.html)
        texts.append("".join(parser.parts))
    return texts


def without_verbatim(text: str, facts: Facts) -> str:
    names = [
        n for name in (facts.category, facts.unit, facts.other_unit, facts.grid) if name for n in (name.zh, name.en)
    ]
    for item in facts.items:
        names += [n for name in (item.category, item.grid) if name for n in (name.zh, name.en)]
    for verbatim in [*VERBATIM, *sorted(names, key=len, reverse=True)]:
        text = text.replace(verbatim, " ")
    return text


def assert_clean(texts: list[str], facts: Facts, lang: Lang) -> None:
    for text in texts:
        assert text.strip()
        for raw in ("{{", "}}", "{%", "%}", "${", "None", "UTC"):
            assert raw not in text, f"{raw!r} in {text!r}"
        rest = without_verbatim(text, facts)
        if lang == "zh-CN":
            assert not re.findall(r"[A-Za-z]{2,}", rest), rest
        else:
            assert not re.findall(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", rest), rest


def test_every_template_and_code_is_there() -> None:
    MESSAGES.check()


def test_a_missing_template_or_code_fails_the_check_by_name(tmp_path: Path) -> None:
    copy = tmp_path / "templates"
    shutil.copytree(str(files("notifier") / "templates"), copy)
    (copy / template_name(Kind.ASSIGNED, Audience.RESIDENT, "en")).unlink()
    (copy / sms_template_name(Kind.SLA_WARNING, "zh-CN")).unlink()
    (copy / "zh-CN" / "staff" / "ticket.new.txt").write_text("{% block subject %}新工单{% endblock %}")
    codes: dict[Kind, str] = {k: v for k, v in CODES.items() if k is not Kind.VISIT}
    with pytest.raises(MessageError) as refused:
        Messages(ZONE, codes, SIGN, loader=FileSystemLoader(copy)).check()
    assert "no template en/resident/case.assigned.txt" in str(refused.value)
    assert "no SMS template sms/zh-CN/sla.warning.txt" in str(refused.value)
    assert "template zh-CN/staff/ticket.new.txt has no body block" in str(refused.value)
    assert "no SMS template code for case.visit" in str(refused.value)
    with pytest.raises(MessageError, match="no English SMS template code for ticket.digest"):
        Messages(ZONE, CODES, SIGN, sms_codes_en={k: "SMS_9" for k in SMS_KINDS if k is not Kind.DIGEST}).check()


@pytest.mark.parametrize(("kind", "audience", "channel", "lang"), CASES)
def test_every_message_renders_in_its_language_with_nothing_left_raw(
    kind: Kind, audience: Audience, channel: Channel, lang: Lang
) -> None:
    for facts in (full(kind, audience), minimal(kind, audience)):
        rendered = MESSAGES.render(facts, channel, lang)
        if channel is Channel.SMS:
            assert rendered.sms_code == CODES[kind]
            assert rendered.sms_params and all(len(v) <= SMS_PARAM_LIMIT for v in rendered.sms_params.values())
            assert rendered.text == MESSAGES.sms_text(facts, lang)
            assert rendered.html is None
            # Without English codes registered, an English speaker's SMS is the Chinese one.
            assert_clean([rendered.subject], facts, lang)
            assert_clean([rendered.text], facts, "zh-CN")
            continue
        assert (rendered.html is not None) is (channel is Channel.EMAIL)
        assert rendered.sms_code is None and rendered.sms_params is None
        assert_clean(shown(rendered), facts, lang)


@pytest.mark.parametrize("kind", SMS_KINDS)
@pytest.mark.parametrize("lang", LANGS)
def test_an_sms_fits_one_segment_with_the_longest_names(kind: Kind, lang: Lang) -> None:
    """Chinese fits one 70-character segment; English, whose names are longer than the segment
    leaves room for, fits two (67 each once split)."""
    messages = Messages(ZONE, CODES, SIGN, sms_codes_en={k: f"SMS_EN_{k}" for k in SMS_KINDS})
    facts = full(kind, sorted(RECEIVERS[kind])[0])
    text = messages.sms_text(facts, lang)
    assert text.startswith(f"【{SIGN}】")
    assert "${" not in text
    assert len(text) <= (SMS_SEGMENT if lang == "zh-CN" else 2 * 67), text
    rendered = messages.render(facts, Channel.SMS, lang)
    assert rendered.sms_code == (CODES[kind] if lang == "zh-CN" else f"SMS_EN_{kind}")
    assert_clean(shown(rendered), facts, lang)


def test_an_sms_parameter_longer_than_the_providers_limit_is_cut() -> None:
    assert sms_param("短" * SMS_PARAM_LIMIT) == "短" * SMS_PARAM_LIMIT
    assert sms_param("长" * 40) == "长" * (SMS_PARAM_LIMIT - 1) + "…"
    facts = replace(full(Kind.TICKET_NEW, Audience.STAFF), category=Name("类" * 50, "c" * 50))
    params = MESSAGES.render(facts, Channel.SMS, "zh-CN").sms_params
    assert params is not None and params["category"] == "类" * 34 + "…"


def test_times_are_local_and_show_the_year_only_when_it_differs() -> None:
    facts = full(Kind.SLA_WARNING, Audience.STAFF)
    assert "12月7日 13:00" in MESSAGES.render(facts, Channel.EMAIL, "zh-CN").text
    assert "7 Dec 13:00" in MESSAGES.render(facts, Channel.EMAIL, "en").text
    assert "12月7日 13:00" in MESSAGES.sms_text(facts, "zh-CN")
    last_year = replace(facts, at=datetime(2025, 12, 31, 12, tzinfo=UTC))
    assert "2026年12月7日 13:00" in MESSAGES.render(last_year, Channel.LOG, "zh-CN").text
    assert "7 Dec 2026 13:00" in MESSAGES.render(last_year, Channel.LOG, "en").text
    # New Year's Eve in UTC is already the new year in Shanghai.
    eve = datetime(2026, 12, 31, 20, tzinfo=UTC)
    assert local_time(eve, ZONE, "zh-CN", datetime(2027, 1, 1, 1, tzinfo=UTC)) == "1月1日 04:00"
    assert local_time(eve, ZONE, "en", datetime(2026, 12, 31, 1, tzinfo=UTC)) == "1 Jan 2027 04:00"
    with pytest.raises(MessageError):
        local_time(datetime(2026, 12, 7, 5), ZONE, "zh-CN")


def test_html_escapes_a_persons_words_and_links_only_the_messages_own_links() -> None:
    note = '修好了 <script>alert("x")</script> <a href="https://evil.example">点这里</a>'
    facts = replace(full(Kind.RESOLVED, Audience.RESIDENT), note=note)
    rendered = MESSAGES.render(facts, Channel.EMAIL, "zh-CN")
    assert rendered.html is not None
    assert "<script" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert 'href="https://evil.example"' not in rendered.html
    assert note in rendered.text  # the plain text shows the words as they are
    tracked = MESSAGES.render(full(Kind.RECEIVED, Audience.RESIDENT), Channel.EMAIL, "en").html
    assert tracked is not None
    escaped = TRACK.replace("&", "&amp;")
    assert f'<a href="{escaped}">{escaped}</a>' in tracked
    assert '<html lang="en">' in tracked


def test_residents_mail_ends_with_its_unsubscribe_link_and_staff_mail_has_none() -> None:
    for lang in LANGS:
        resident = MESSAGES.render(full(Kind.CLAIMED, Audience.RESIDENT), Channel.EMAIL, lang)
        assert resident.text.endswith(UNSUBSCRIBE)
        assert resident.html is not None and f'<a href="{UNSUBSCRIBE}">' in resident.html
        staff = MESSAGES.render(full(Kind.TICKET_NEW, Audience.STAFF), Channel.EMAIL, lang)
        assert UNSUBSCRIBE not in staff.text
        # Webhook and log carry the message alone, without the email's footer.
        assert UNSUBSCRIBE not in MESSAGES.render(full(Kind.CLAIMED, Audience.RESIDENT), Channel.WEBHOOK, lang).text
    with pytest.raises(MessageError, match="unsubscribe"):
        MESSAGES.render(replace(full(Kind.CLAIMED, Audience.RESIDENT), unsubscribe_url=None), Channel.EMAIL, "zh-CN")


def test_codes_become_plain_words_and_free_words_stay_as_they_are() -> None:
    escalated = full(Kind.ESCALATED, Audience.RESIDENT)
    zh = MESSAGES.render(escalated, Channel.LOG, "zh-CN").text
    assert "未在时限内处理，按规定上报" in zh and "（职能部门）" in zh
    en = MESSAGES.render(escalated, Channel.LOG, "en").text
    assert "it was not handled in time" in en and "(department level)" in en
    returned = replace(full(Kind.TICKET_NEW, Audience.STAFF), reason="not_our_jurisdiction", tier=Tier.STREET)
    zh = MESSAGES.render(returned, Channel.LOG, "zh-CN").text
    assert "不在原承办单位辖区内" in zh and "特急" in zh and "层级：街道" in zh
    free = replace(escalated, reason="居民要求由街道协调")
    assert "原因：居民要求由街道协调" in MESSAGES.render(free, Channel.LOG, "zh-CN").text
    breached = MESSAGES.render(full(Kind.SLA_BREACHED, Audience.STAFF), Channel.LOG, "zh-CN").text
    assert "办结时限1天2小时5分钟" in breached
    supervision = MESSAGES.render(full(Kind.SUPERVISION, Audience.OPS), Channel.LOG, "en")
    assert "(alert 3)" in supervision.subject and "by 1 d 2 h 5 min" in supervision.text


def test_what_cannot_be_rendered_is_refused_by_name() -> None:
    with pytest.raises(MessageError, match="case.assigned for resident needs unit"):
        MESSAGES.render(replace(full(Kind.ASSIGNED, Audience.RESIDENT), unit=None), Channel.LOG, "zh-CN")
    with pytest.raises(MessageError, match="ops get no case.assigned message"):
        MESSAGES.render(full(Kind.ASSIGNED, Audience.OPS), Channel.LOG, "zh-CN")
    with pytest.raises(MessageError, match="ops.supervision is not sent by SMS"):
        MESSAGES.render(full(Kind.SUPERVISION, Audience.OPS), Channel.SMS, "zh-CN")
    with pytest.raises(MessageError, match="needs items"):
        MESSAGES.render(replace(full(Kind.DIGEST, Audience.STAFF), items=()), Channel.EMAIL, "en")


def test_without_a_provider_an_sms_is_its_text_in_the_recipients_language() -> None:
    messages = Messages(ZONE)
    messages.check()
    rendered = messages.render(full(Kind.CLOSED, Audience.RESIDENT), Channel.SMS, "en")
    assert rendered.sms_code is None
    assert rendered.text == "【网格热线】Report 3fa85f64 is closed. Thank you."


LAYOUT_TAGS = {"!doctype", "html", "head", "meta", "title", "body", "p", "br", "a"}
words = st.text(alphabet="路灯已修复，楼道清理完毕。<>&\"' \n", min_size=1, max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pair=st.sampled_from(PAIRS),
    channel=st.sampled_from(list(Channel)),
    lang=st.sampled_from(LANGS),
    drop=st.sets(
        st.sampled_from(
            ["category", "unit", "other_unit", "grid", "tier", "priority", "clock", "reason", "note", "due"]
            + ["resolution_due", "late_minutes", "ticket_id", "tracking_url", "channel", "recipient", "at"]
        )
    ),
    note=words,
    repeat=st.integers(0, 20),
    late=st.integers(0, 10_000),
    at=st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1), timezones=st.just(UTC)),
)
def test_any_mix_of_optional_facts_renders_without_a_gap(
    pair: tuple[Kind, Audience],
    channel: Channel,
    lang: Lang,
    drop: set[str],
    note: str,
    repeat: int,
    late: int,
    at: datetime,
) -> None:
    kind, audience = pair
    if channel is Channel.SMS and kind not in SMS_KINDS:
        return
    facts = replace(full(kind, audience), note=note, repeat=repeat, late_minutes=late, at=at)
    cleared: dict[str, Any] = {f: "" if f in ("reason", "note") else None for f in drop - set(REQUIRED[kind])}
    facts = replace(facts, **cleared)
    rendered = MESSAGES.render(facts, channel, lang)
    for text in shown(rendered):
        for raw in ("{{", "}}", "${", "None", "UTC"):
            assert raw not in text
    if rendered.html is not None:  # a person's "<" is escaped: every tag is the layout's own
        assert set(re.findall(r"</?([!\w]+)", rendered.html)) <= {
            "!doctype",
            "html",
            "head",
            "meta",
            "title",
            "body",
            "p",
            "br",
            "a",
        }
