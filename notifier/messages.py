"""What a notification says: every message's words, per kind of event, audience, channel and
language, rendered from the package's Jinja2 templates (notifier/templates/).

Chinese first: zh-CN unless the recipient asked for English. Times are local (the policy's zone),
never UTC; names are the district's own in each language; codes (tiers, clocks, reasons) become
plain words. The templates:

    <lang>/<audience>/<kind>.txt   a message: its `subject` and `body` blocks (plain text)
    <lang>/_email.txt              an email's text: the body, then the footer (residents: unsubscribe)
    _email.html                    an email's HTML: the email text's paragraphs, escaped, links made links
    sms/<lang>/<kind>.txt          an SMS template as registered with the provider, `${param}` and all

SMS works as the Chinese providers (Aliyun, Tencent SendSms) do: a registered template's code,
short parameters and a sign name, never free text. The package keeps its own copy of each
registered text so that what a phone shows can be measured: one 70-character segment, sign
included, where it can be."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    Environment,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from markupsafe import Markup, escape

from services.district.events import EscalationReason, Priority, ReturnReason, SlaClock, Tier
from services.web.pages import LANGS, Lang


class Audience(StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    OPS = "ops"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WEBHOOK = "webhook"
    LOG = "log"


class Kind(StrEnum):
    """What happened, as a message tells it."""

    RECEIVED = "case.received"
    ASSIGNED = "case.assigned"
    CLAIMED = "case.claimed"
    NOTED = "case.noted"
    RESOLVED = "case.resolved"
    VISIT = "case.visit"
    CLOSED = "case.closed"
    REOPENED = "case.reopened"
    ESCALATED = "case.escalated"
    CANCELLED = "case.cancelled"
    TICKET_NEW = "ticket.new"
    SUMMONED = "ticket.summoned"
    SLA_WARNING = "sla.warning"
    SLA_BREACHED = "sla.breached"
    DIGEST = "ticket.digest"
    SUPERVISION = "ops.supervision"
    DELIVERY_DEAD = "ops.delivery_dead"
    NOTIFICATION_DEAD = "ops.notification_dead"


_RESIDENTS, _STAFF, _OPS = frozenset({Audience.RESIDENT}), frozenset({Audience.STAFF}), frozenset({Audience.OPS})
# Who hears of each kind; a reopened case is news to the resident and to the unit handling it again.
RECEIVERS: Mapping[Kind, frozenset[Audience]] = {
    Kind.RECEIVED: _RESIDENTS,
    Kind.ASSIGNED: _RESIDENTS,
    Kind.CLAIMED: _RESIDENTS,
    Kind.NOTED: _RESIDENTS,
    Kind.RESOLVED: _RESIDENTS,
    Kind.VISIT: _RESIDENTS,
    Kind.CLOSED: _RESIDENTS,
    Kind.REOPENED: _RESIDENTS | _STAFF,
    Kind.ESCALATED: _RESIDENTS,
    Kind.CANCELLED: _RESIDENTS,
    Kind.TICKET_NEW: _STAFF,
    Kind.SUMMONED: _STAFF,
    Kind.SLA_WARNING: _STAFF,
    Kind.SLA_BREACHED: _STAFF,
    Kind.DIGEST: _STAFF,
    Kind.SUPERVISION: _OPS,
    Kind.DELIVERY_DEAD: _OPS,
    Kind.NOTIFICATION_DEAD: _OPS,
}
# The kinds residents or staff may get by SMS: each needs a template registered with the provider.
SMS_KINDS: tuple[Kind, ...] = tuple(k for k, who in RECEIVERS.items() if who - _OPS)

# The facts a message cannot do without; the others are shown when given.
REQUIRED: Mapping[Kind, tuple[str, ...]] = {
    Kind.RECEIVED: (),
    Kind.ASSIGNED: ("unit", "tier", "due", "resolution_due"),
    Kind.CLAIMED: ("unit",),
    Kind.NOTED: ("unit", "note"),
    Kind.RESOLVED: ("unit", "note"),
    Kind.VISIT: ("due",),
    Kind.CLOSED: (),
    Kind.REOPENED: ("unit",),
    Kind.ESCALATED: ("unit", "tier", "reason"),
    Kind.CANCELLED: (),
    Kind.TICKET_NEW: ("ticket_id", "category", "grid", "priority", "due"),
    Kind.SUMMONED: ("other_unit", "due"),
    Kind.SLA_WARNING: ("clock", "due"),
    Kind.SLA_BREACHED: ("clock", "late_minutes"),
    Kind.DIGEST: ("items",),
    Kind.SUPERVISION: ("unit", "tier", "clock", "late_minutes"),
    Kind.DELIVERY_DEAD: ("unit", "reason"),
    Kind.NOTIFICATION_DEAD: ("channel", "recipient", "reason"),
}

# Aliyun's limit for most template variables; a longer value is cut, ending with an ellipsis.
SMS_PARAM_LIMIT = 35
# One SMS segment of UCS-2 text (any Chinese character, the sign's brackets included, makes it UCS-2).
SMS_SEGMENT = 70

# What an SMS template may name: a key of the rendered context, short values only.
SMS_PARAMS: Mapping[str, str] = {
    "case": "case",
    "ticket": "ticket_ref",
    "unit": "unit",
    "lead": "other_unit",
    "tier": "tier",
    "category": "category",
    "grid": "grid",
    "priority": "priority",
    "clock": "clock",
    "due": "due",
    "resolve": "resolution_due",
    "first_due": "first_due",
    "late": "late",
    "reason": "reason",
    "count": "count",
}


class MessageError(ValueError):
    """A message that cannot be rendered: a template, an SMS code or a fact is missing."""


@dataclass(frozen=True)
class Name:
    """A thing's name in both languages (a unit, a grid, a category)."""

    zh: str
    en: str

    def in_(self, lang: Lang) -> str:
        return self.zh if lang == "zh-CN" else self.en


@dataclass(frozen=True)
class DigestItem:
    """One new ticket of a digest."""

    ticket_id: str
    category: Name | None = None
    grid: Name | None = None
    due: datetime | None = None
    priority: Priority | None = None


@dataclass(frozen=True)
class Facts:
    """What a message tells: the integrator fills these from events. Times are aware (UTC);
    `reason` is a code (EscalationReason, ReturnReason, a closing reason) said in plain words,
    or free words shown as they are; `note` is a person's words, shown as they are."""

    kind: Kind
    audience: Audience
    case_id: str
    category: Name | None = None
    unit: Name | None = None
    other_unit: Name | None = None  # a summons' lead unit
    grid: Name | None = None
    tier: Tier | None = None
    priority: Priority | None = None
    clock: SlaClock | None = None
    reason: str = ""
    note: str = ""
    due: datetime | None = None  # the deadline the message is about (ASSIGNED: respond by)
    resolution_due: datetime | None = None  # ASSIGNED: resolve by
    late_minutes: int | None = None
    repeat: int = 0  # a supervision alert's repeat: alert number repeat + 1
    ticket_id: str | None = None
    tracking_url: str | None = None
    unsubscribe_url: str | None = None
    items: tuple[DigestItem, ...] = ()
    channel: str | None = None  # a dead notification's channel
    recipient: str | None = None  # a dead notification's recipient
    at: datetime | None = None  # when it happened: a time in another year than this one shows its year


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None = None
    sms_code: str | None = None
    sms_params: dict[str, str] | None = None


@dataclass(frozen=True)
class Words:
    """A language's words for the codes messages mention."""

    tiers: Mapping[Tier, str]
    priorities: Mapping[Priority, str]
    clocks: Mapping[SlaClock, str]
    reasons: Mapping[str, str]
    channels: Mapping[str, str]
    months: tuple[str, ...] = ()


WORDS: Mapping[Lang, Words] = {
    "zh-CN": Words(
        tiers={Tier.GRID: "网格", Tier.COMMUNITY: "社区", Tier.STREET: "街道", Tier.BUREAU: "职能部门"},
        priorities={Priority.NORMAL: "普通", Priority.URGENT: "紧急", Priority.EMERGENCY: "特急"},
        clocks={SlaClock.RESPONSE: "响应", SlaClock.RESOLUTION: "办结"},
        reasons={
            EscalationReason.BREACH: "未在时限内处理，按规定上报",
            EscalationReason.HANDLER: "原承办单位需要上级协调处理",
            EscalationReason.RETURNED: "原承办单位退回",
            EscalationReason.REASSIGNED: "上级单位改派",
            ReturnReason.NOT_OUR_JURISDICTION: "不在原承办单位辖区内",
            ReturnReason.NOT_OUR_RESPONSIBILITY: "不属于原承办单位职责",
            ReturnReason.BEYOND_OUR_POWERS: "超出原承办单位的处置权限",
            ReturnReason.DUPLICATE: "与其他诉求重复",
            ReturnReason.OTHER: "其他原因",
            "escalated": "上报",
            "whistled": "街道吹哨调度",
            "reopened": "居民对办理结果不满意，重新办理",
            "satisfied": "您对办理结果表示满意",
            "no_answer": "回访期内未收到您的评价",
            "cancelled": "您已撤回诉求",
        },
        channels={"email": "电子邮件", "sms": "短信", "webhook": "回调接口", "log": "日志"},
    ),
    "en": Words(
        tiers={Tier.GRID: "grid", Tier.COMMUNITY: "community", Tier.STREET: "street", Tier.BUREAU: "department"},
        priorities={Priority.NORMAL: "normal", Priority.URGENT: "urgent", Priority.EMERGENCY: "emergency"},
        clocks={SlaClock.RESPONSE: "response", SlaClock.RESOLUTION: "resolution"},
        reasons={
            EscalationReason.BREACH: "it was not handled in time",
            EscalationReason.HANDLER: "the unit handling it asked for help from above",
            EscalationReason.RETURNED: "the unit it was sent to returned it",
            EscalationReason.REASSIGNED: "a supervisor reassigned it",
            ReturnReason.NOT_OUR_JURISDICTION: "it lies outside the first unit's area",
            ReturnReason.NOT_OUR_RESPONSIBILITY: "another unit handles this kind of case",
            ReturnReason.BEYOND_OUR_POWERS: "it needs more than the first unit can do",
            ReturnReason.DUPLICATE: "it duplicates another report",
            ReturnReason.OTHER: "another reason",
            "escalated": "escalated",
            "whistled": "the street office called in the departments",
            "reopened": "the resident was not satisfied, so it is handled again",
            "satisfied": "you were satisfied with the result",
            "no_answer": "we had no answer to our satisfaction visit",
            "cancelled": "you withdrew your report",
        },
        channels={"email": "email", "sms": "SMS", "webhook": "webhook", "log": "log"},
        months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    ),
}

_PARAM = re.compile(r"\$\{(\w+)\}")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


def local_time(at: datetime, zone: ZoneInfo, lang: Lang, now: datetime | None = None) -> str:
    """`12月7日 13:00` / `7 Dec 13:00` in `zone`; with the year when it is not `now`'s."""
    if at.tzinfo is None:
        raise MessageError(f"a time without a zone: {at.isoformat()}")
    t = at.astimezone(zone)
    year = now is not None and now.astimezone(zone).year != t.year
    if lang == "zh-CN":
        return f"{f'{t.year}年' if year else ''}{t.month}月{t.day}日 {t:%H:%M}"
    return f"{t.day} {WORDS['en'].months[t.month - 1]}{f' {t.year}' if year else ''} {t:%H:%M}"


def duration(minutes: int, lang: Lang) -> str:
    """`1天2小时5分钟` / `1 d 2 h 5 min`, leaving out what is zero."""
    days, rest = divmod(max(minutes, 0), 1440)
    hours, mins = divmod(rest, 60)
    units = ("天", "小时", "分钟") if lang == "zh-CN" else (" d", " h", " min")
    parts = [f"{n}{u}" for n, u in zip((days, hours, mins), units, strict=True) if n]
    return ("" if lang == "zh-CN" else " ").join(parts) or f"0{units[2]}"


def short(ident: str) -> str:
    """The reference a person reads and types: an id's first eight characters."""
    return ident[:8]


def sms_param(value: str) -> str:
    return value if len(value) <= SMS_PARAM_LIMIT else value[: SMS_PARAM_LIMIT - 1] + "…"


def template_name(kind: Kind, audience: Audience, lang: Lang) -> str:
    return f"{lang}/{audience}/{kind}.txt"


def sms_template_name(kind: Kind, lang: Lang) -> str:
    return f"sms/{lang}/{kind}.txt"


class Messages:
    """Renders messages from the package's templates (or `loader`'s, for tests). SMS codes are the
    provider's, per kind: `sms_codes` for the Chinese templates, `sms_codes_en` for English ones;
    without English codes an English-speaking recipient's SMS is the Chinese one (a provider in
    mainland China registers Chinese templates)."""

    def __init__(
        self,
        zone: ZoneInfo,
        sms_codes: Mapping[Kind, str] | None = None,
        sign_name: str = "网格热线",
        *,
        sms_codes_en: Mapping[Kind, str] | None = None,
        loader: BaseLoader | None = None,
    ) -> None:
        self.zone = zone
        self.sms_codes = sms_codes
        self.sms_codes_en = sms_codes_en
        self.sign_name = sign_name
        self.env = Environment(
            loader=loader or PackageLoader("notifier", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._sms: dict[str, str] = {}

    def check(self) -> None:
        """Fail at start-up, naming everything missing: a template for a kind, audience and
        language, an SMS template, an SMS code (when codes are given)."""
        problems: list[str] = []

        def load(name: str) -> Template | None:
            try:
                return self.env.get_template(name)
            except TemplateNotFound:
                problems.append(f"no template {name}")
            except TemplateError as e:
                problems.append(f"template {name}: {e}")
            return None

        load("_email.html")
        for lang in LANGS:
            load(f"{lang}/_email.txt")
            for kind, audiences in RECEIVERS.items():
                for audience in sorted(audiences):
                    name = template_name(kind, audience, lang)
                    if (template := load(name)) is not None:
                        problems += [
                            f"template {name} has no {b} block" for b in ("subject", "body") if b not in template.blocks
                        ]
            for kind in SMS_KINDS:
                name = sms_template_name(kind, lang)
                try:
                    text = self._sms_template(name)
                except MessageError as e:
                    problems.append(str(e))
                    continue
                problems += [
                    f"SMS template {name}: unknown parameter ${{{p}}}"
                    for p in _PARAM.findall(text)
                    if p not in SMS_PARAMS
                ]
        for codes, which in ((self.sms_codes, "SMS"), (self.sms_codes_en, "English SMS")):
            if codes is not None:
                problems += [f"no {which} template code for {kind}" for kind in SMS_KINDS if not codes.get(kind)]
        if (self.sms_codes is not None or self.sms_codes_en is not None) and not self.sign_name.strip():
            problems.append("no SMS sign name")
        if problems:
            raise MessageError("the notifier's messages are incomplete: " + "; ".join(problems))

    def render(self, facts: Facts, channel: Channel, language: Lang) -> Rendered:
        context = self.context(facts, language)
        template = self._template(facts, language)
        subject = self._block(template, "subject", context)
        body = self._block(template, "body", context)
        if channel is Channel.SMS:
            code, lang = self._sms_code(facts.kind, language)
            params = self._sms_params(facts, lang)
            return Rendered(subject, self._fill(facts.kind, lang, params), None, code, params)
        if channel is not Channel.EMAIL:
            return Rendered(subject, body)
        if facts.audience is Audience.RESIDENT and not facts.unsubscribe_url:
            raise MessageError(f"{facts.kind}: a resident's email needs its unsubscribe link")
        text = self._tidy(self.env.get_template(f"{language}/_email.txt").render(context, body=body))
        urls = [u for u in (facts.tracking_url, facts.unsubscribe_url) if u]
        paragraphs = [_paragraph(p, urls) for p in text.split("\n\n")]
        html = self.env.get_template("_email.html").render(lang=language, subject=subject, paragraphs=paragraphs)
        return Rendered(subject, text, html)

    def sms_text(self, facts: Facts, language: Lang) -> str:
        """What the phone shows: the sign, then the registered text with its parameters filled."""
        _, lang = self._sms_code(facts.kind, language)
        return self._fill(facts.kind, lang, self._sms_params(facts, lang))

    def context(self, facts: Facts, lang: Lang) -> dict[str, Any]:
        """The values templates see: every one a string (or None when not given), in `lang`."""
        for field in REQUIRED[facts.kind]:
            if getattr(facts, field) in (None, "", ()):
                raise MessageError(f"{facts.kind} for {facts.audience} needs {field}")
        words = WORDS[lang]

        def name(n: Name | None) -> str | None:
            return None if n is None else n.in_(lang)

        def time(t: datetime | None) -> str | None:
            return None if t is None else local_time(t, self.zone, lang, facts.at)

        return {
            "lang": lang,
            "case": short(facts.case_id),
            "case_id": facts.case_id,
            "ticket": facts.ticket_id,
            "ticket_ref": short(facts.ticket_id or facts.case_id),
            "category": name(facts.category),
            "unit": name(facts.unit),
            "other_unit": name(facts.other_unit),
            "grid": name(facts.grid),
            "tier": None if facts.tier is None else words.tiers[facts.tier],
            "priority": None if facts.priority is None else words.priorities[facts.priority],
            "clock": None if facts.clock is None else words.clocks[facts.clock],
            "reason": words.reasons.get(facts.reason, facts.reason),
            "note": facts.note,
            "due": time(facts.due),
            "resolution_due": time(facts.resolution_due),
            "late": None if facts.late_minutes is None else duration(facts.late_minutes, lang),
            "alert": facts.repeat + 1,
            "tracking_url": facts.tracking_url,
            "unsubscribe_url": facts.unsubscribe_url,
            "audience": str(facts.audience),
            "count": len(facts.items),
            "first_due": time(min((i.due for i in facts.items if i.due), default=None)),
            "items": [
                {
                    "ticket": i.ticket_id,
                    "ticket_ref": short(i.ticket_id),
                    "category": name(i.category),
                    "grid": name(i.grid),
                    "priority": None if i.priority is None else words.priorities[i.priority],
                    "due": time(i.due),
                }
                for i in facts.items
            ],
            "channel": None if facts.channel is None else words.channels.get(facts.channel, facts.channel),
            "recipient": facts.recipient,
        }

    def _template(self, facts: Facts, lang: Lang) -> Template:
        if facts.audience not in RECEIVERS[facts.kind]:
            raise MessageError(f"{facts.audience} get no {facts.kind} message")
        try:
            return self.env.get_template(template_name(facts.kind, facts.audience, lang))
        except TemplateNotFound as e:
            raise MessageError(f"no template {e.name}") from None

    def _block(self, template: Template, block: str, context: dict[str, Any]) -> str:
        return self._tidy("".join(template.blocks[block](template.new_context(context))))

    @staticmethod
    def _tidy(text: str) -> str:
        return _BLANK_LINES.sub("\n\n", text).strip()

    def _sms_code(self, kind: Kind, language: Lang) -> tuple[str | None, Lang]:
        """The provider's template code and the language of its text."""
        if kind not in SMS_KINDS:
            raise MessageError(f"{kind} is not sent by SMS")
        lang = language
        if lang == "en" and self.sms_codes_en is None and self.sms_codes is not None:
            lang = "zh-CN"  # the provider has Chinese templates only
        codes = self.sms_codes_en if lang == "en" else self.sms_codes
        if codes is None:
            return None, lang  # no provider: the text alone (the log channel, tests)
        if not codes.get(kind):
            raise MessageError(f"no SMS template code for {kind}")
        return codes[kind], lang

    def _sms_template(self, name: str) -> str:
        if name not in self._sms:
            try:
                source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
            except TemplateNotFound:
                raise MessageError(f"no SMS template {name}") from None
            self._sms[name] = source.strip()
        return self._sms[name]

    def _sms_params(self, facts: Facts, lang: Lang) -> dict[str, str]:
        """The parameters the kind's SMS template names, each cut to the provider's limit."""
        text = self._sms_template(sms_template_name(facts.kind, lang))
        context = self.context(facts, lang)
        params: dict[str, str] = {}
        for param in dict.fromkeys(_PARAM.findall(text)):
            value = context[SMS_PARAMS[param]]
            if value in (None, ""):
                raise MessageError(f"the SMS for {facts.kind} needs {param}")
            params[param] = sms_param(str(value))
        return params

    def _fill(self, kind: Kind, lang: Lang, params: Mapping[str, str]) -> str:
        text = self._sms_template(sms_template_name(kind, lang))
        return f"【{self.sign_name}】" + _PARAM.sub(lambda m: params[m[1]], text)


def _paragraph(text: str, urls: list[str]) -> Markup:
    """One paragraph of an email's text as HTML: escaped, its lines kept, the message's own links
    (tracking, unsubscribe) made links; nothing in a person's words becomes markup."""
    html = str(escape(text))
    if urls:
        known = sorted({str(escape(u)) for u in urls}, key=len, reverse=True)
        html = re.sub(
            "|".join(map(re.escape, known)), lambda m: str(Markup('<a href="{0}">{0}</a>').format(Markup(m[0]))), html
        )
    return Markup(html.replace("\n", "<br>\n"))
