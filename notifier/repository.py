"""The notifier's records: what a batch of events tells whom (`Notices`, written before the
batch's commit), and the reads of the ops API.

A notice becomes one notification per recipient (in the recipient's language) and one delivery
per (recipient, channel) in the kernel's deliveries table (services/delivery/), sent after
commit by the one delivery worker. Every id is derived from the event's id, so a redelivered
event or a second notifier replica writes nothing twice (the unique keys keep the first)."""

import hashlib
import hmac
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.channels.bodies import EmailBody, LogBody, SmsBody, WebhookBody
from notifier.domain import CaseFacts, Names, Notice, To, notices
from notifier.messages import Audience, Channel, DigestItem, Facts, Kind, Messages, Name, Rendered
from notifier.tables import cases, deliveries, digest_items, followers, holders, notifications
from services.delivery.tables import State
from services.district.events import (
    CaseAssigned,
    CaseFollowed,
    CaseHolderChanged,
    CaseReported,
    Event,
    Priority,
    Role,
)
from services.district.jurisdiction import Notify
from services.district.policy import Policy
from services.storage.bulk import among, insert_new, update_rows
from services.web.pages import Lang, language

_KEYS = uuid.UUID("8c1f4a52-3d9e-4c57-9b0e-6a2d7f4e1b90")
# What is told to a unit of a case reaches the person holding its ticket too, but for these:
# nobody holds a ticket that is new to the unit yet.
NEW_TO_THE_UNIT = frozenset({Kind.TICKET_NEW, Kind.SUMMONED})
PUSHED = (Channel.EMAIL, Channel.SMS)  # the channels that reach a person (quiet hours, unsubscribing)


def derived(*parts: str) -> str:
    return uuid.uuid5(_KEYS, "/".join(parts)).hex


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Recipient:
    key: str  # follower:<report id>, case:<id> (a case nobody follows), unit:<id>, ops
    audience: Audience
    language: Lang
    addresses: tuple[tuple[Channel, str], ...] = ()
    unsubscribed: bool = False
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class Outlets:
    """This deployment's channels and the addresses that are not residents'."""

    channels: frozenset[Channel]
    units: Mapping[str, Notify]
    ops: tuple[tuple[Channel, str], ...]
    public_url: str
    link_key: bytes  # signs unsubscribe links

    def unsubscribe_url(self, report_id: str) -> str:
        query = urlencode({"r": report_id, "s": link_signature(self.link_key, report_id)})
        return f"{self.public_url}/v1/notifications/unsubscribe?{query}"

    def tracking_url(self, case_id: str, token: str) -> str:
        """The resident's own link to the case: the token rides in the fragment, which browsers
        never send to a server (so it is in no access log)."""
        return f"{self.public_url}/track/{case_id}#{token}"


def link_signature(key: bytes, report_id: str) -> str:
    return hmac.new(key, f"unsubscribe/{report_id}".encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Telling:
    """Everything that words and addresses messages, built once by bootstrap."""

    messages: Messages
    names: Names
    policy: Policy
    outlets: Outlets

    @property
    def zone(self) -> ZoneInfo:
        return self.policy.calendar.zone


@dataclass
class Notices:
    """What one batch of events tells whom, written before commit (see `Tx.pending`)."""

    session: AsyncSession
    telling: Telling
    now: datetime
    cases: dict[str, CaseFacts] = field(default_factory=dict)
    followers: dict[str, list[Any]] = field(default_factory=dict)
    new_cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed_cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    unstored: set[str] = field(default_factory=set)  # cases the notifier has no row of yet
    pushed: dict[str, str] = field(default_factory=dict)  # msg_id -> the follower an email or SMS goes to
    new_followers: list[dict[str, Any]] = field(default_factory=list)
    holders: dict[str, dict[str, Any]] = field(default_factory=dict)  # <case>/<unit> -> who holds its ticket
    changed_holders: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: nobody now
    notification_rows: list[dict[str, Any]] = field(default_factory=list)
    delivery_rows: list[dict[str, Any]] = field(default_factory=list)
    digest_rows: list[dict[str, Any]] = field(default_factory=list)

    async def record(self, event_id: str, event: Event, at: datetime) -> None:
        """Note what the event says of the case, then tell whom it concerns."""
        known = await self._case(event.case_id)
        match event:
            case CaseReported():
                known = self._remember(CaseFacts(event.case_id, event.category, event.grid_id, event.priority))
            case CaseAssigned(role=Role.LEAD):
                known = self._remember(
                    replace(
                        known,
                        category=event.category,
                        grid_id=event.grid_id,
                        priority=event.priority,
                        lead_unit_id=event.unit_id,
                    )
                )
            case CaseFollowed():
                await self._follow(event)
            case CaseHolderChanged():
                self._hold(event)
        t = self.telling
        for notice in notices(event, known, t.names, t.policy, at):
            await self._tell(event_id, notice, event)

    async def load(self, case_ids: Collection[str]) -> None:
        """What the notifier knows of these cases, who follows them and who holds their
        tickets, in three queries (the consumer's hook before a batch, so its events read no
        row one by one)."""
        wanted = sorted(set(case_ids) - self.followers.keys())  # the two are loaded together
        if not wanted:
            return
        for row in await self.session.execute(select(cases).where(among(self.session, cases.c.case_id, wanted))):
            self.cases[row.case_id] = CaseFacts(
                row.case_id, row.category, row.grid_id, Priority(row.priority), row.lead_unit_id
            )
        for case_id in wanted:
            if case_id not in self.cases:
                self.cases[case_id] = CaseFacts(case_id)
                self.unstored.add(case_id)
            self.followers[case_id] = []
        query = (
            select(followers).where(among(self.session, followers.c.case_id, wanted)).order_by(followers.c.created_at)
        )
        for r in await self.session.execute(query):
            self.followers[r.case_id].append(dict(r._mapping))
        for r in await self.session.execute(select(holders).where(among(self.session, holders.c.case_id, wanted))):
            self.holders.setdefault(r.key, dict(r._mapping))

    async def _case(self, case_id: str) -> CaseFacts:
        await self.load([case_id])
        return self.cases[case_id]

    def _remember(self, case: CaseFacts) -> CaseFacts:
        """What the batch learnt of a case, written with the batch: inserted if the notifier
        had not seen the case yet, else updated."""
        self.cases[case.case_id] = case
        row = {
            "case_id": case.case_id,
            "category": case.category,
            "grid_id": case.grid_id,
            "priority": case.priority.value,
            "lead_unit_id": case.lead_unit_id,
        }
        (self.new_cases if case.case_id in self.unstored else self.changed_cases)[case.case_id] = row
        return case

    async def _followers(self, case_id: str) -> list[Any]:
        await self.load([case_id])
        return self.followers[case_id]

    async def _follow(self, event: CaseFollowed) -> None:
        known = await self._followers(event.case_id)
        if any(f["report_id"] == event.report_id for f in known):
            return
        row = {
            "report_id": event.report_id,
            "case_id": event.case_id,
            "email": event.email,
            "phone": event.phone,
            "language": event.language,
            "token_hash": token_hash(event.tracking_token),
            "unsubscribed_at": None,
            "created_at": self.now,
        }
        known.append(row)
        self.new_followers.append(row)

    def _hold(self, event: CaseHolderChanged) -> None:
        key = f"{event.case_id}/{event.unit_id}"
        row = None
        if (h := event.holder) is not None:
            row = {
                "key": key,
                "case_id": event.case_id,
                "unit_id": event.unit_id,
                "ticket_id": event.ticket_id,
                "staff_id": h.staff_id,
                "name": h.name,
                "email": h.reach.email,
                "phone": h.reach.phone,
                "language": h.reach.language,
                "channels": " ".join(h.reach.channels),
            }
            self.holders[key] = row
        else:
            self.holders.pop(key, None)
        self.changed_holders[key] = row

    def _holder(self, notice: Notice, case_id: str, unit_id: str) -> Recipient | None:
        """The person holding the ticket the notice is about (or, for a reopening, the unit's
        last ticket of the case), on the channels they chose; None if nobody, or none chosen."""
        h = self.holders.get(f"{case_id}/{unit_id}")
        if h is None or notice.facts.kind in NEW_TO_THE_UNIT:
            return None
        if notice.facts.kind is not Kind.REOPENED and notice.facts.ticket_id != h["ticket_id"]:
            return None
        chosen = h["channels"].split()
        addresses = [(Channel.EMAIL, h["email"])] if "email" in chosen and h["email"] else []
        addresses += [(Channel.SMS, h["phone"])] if "sms" in chosen and h["phone"] else []
        if not addresses:
            return None
        return Recipient(f"staff:{h['staff_id']}", Audience.STAFF, language(h["language"]), tuple(addresses))

    async def _recipients(self, notice: Notice, event: Event) -> list[Recipient]:
        o = self.telling.outlets
        if notice.to == To.OPS:
            return [Recipient("ops", Audience.OPS, "zh-CN", o.ops)]
        if notice.to.startswith("unit:"):
            unit_id = notice.to.removeprefix("unit:")
            notify = o.units.get(unit_id)
            addresses: list[tuple[Channel, str]] = []
            if notify is not None:
                addresses += [(Channel.EMAIL, notify.email)] if notify.email else []
                addresses += [(Channel.SMS, notify.phone)] if notify.phone else []
            unit = Recipient(notice.to, Audience.STAFF, "zh-CN", tuple(addresses))
            holder = self._holder(notice, event.case_id, unit_id)
            return [unit] if holder is None else [unit, holder]
        following = await self._followers(event.case_id)
        if notice.to.startswith("follower:"):
            following = [f for f in following if f"follower:{f['report_id']}" == notice.to]
        elif not following:  # a case nobody follows: what residents would be told is still on record
            return [Recipient(f"case:{event.case_id}", Audience.RESIDENT, "zh-CN")]
        return [self._resident(f) for f in following]

    def _resident(self, f: Mapping[str, Any]) -> Recipient:
        addresses = [(Channel.EMAIL, f["email"])] if f["email"] else []
        addresses += [(Channel.SMS, f["phone"])] if f["phone"] else []
        return Recipient(
            f"follower:{f['report_id']}",
            Audience.RESIDENT,
            language(f["language"]),
            tuple(addresses),
            unsubscribed=f["unsubscribed_at"] is not None,
            unsubscribe_url=self.telling.outlets.unsubscribe_url(f["report_id"]),
        )

    async def _tell(self, event_id: str, notice: Notice, event: Event) -> None:
        t = self.telling
        for recipient in await self._recipients(notice, event):
            key = derived(event_id, notice.facts.kind.value, recipient.key)
            facts = notice.facts
            if isinstance(event, CaseFollowed):
                facts = replace(facts, tracking_url=t.outlets.tracking_url(event.case_id, event.tracking_token))
            facts = replace(facts, unsubscribe_url=recipient.unsubscribe_url)
            unit_id = recipient.key.removeprefix("unit:")
            notify = t.outlets.units.get(unit_id) if recipient.key.startswith("unit:") else None
            if notice.digest and notify is not None and notify.digest_minutes:
                self.digest_rows.append(
                    {
                        "key": key,
                        "unit_id": recipient.key.removeprefix("unit:"),
                        "case_id": event.case_id,
                        "facts": digest_facts(facts),
                        "created_at": self.now,
                        "digest_key": None,
                    }
                )
                continue
            self.notify(key, event.case_id, recipient, facts, urgent=notice.urgent)

    def notify(self, key: str, case_id: str | None, recipient: Recipient, facts: Facts, *, urgent: bool) -> None:
        """One notification for one recipient, with a delivery per channel that reaches them."""
        t = self.telling
        language: Lang = recipient.language
        # What is kept, logged and sent to apps carries no link with a token in it: only the
        # resident's own email or SMS does.
        text = t.messages.render(replace(facts, tracking_url=None, unsubscribe_url=None), Channel.LOG, language)
        self.notification_rows.append(
            {
                "key": key,
                "case_id": case_id,
                "audience": recipient.audience.value,
                "recipient": recipient.key,
                "kind": facts.kind.value,
                "language": language,
                "subject": text.subject,
                "message": text.text,
                "created_at": self.now,
            }
        )
        held = None
        if recipient.audience is Audience.RESIDENT and not urgent and t.policy.quiet_hours is not None:
            held = t.policy.quiet_hours.until(self.now, t.zone)
        seen: set[tuple[Channel, str]] = set()
        for channel, destination in recipient.addresses:
            if channel not in t.outlets.channels:
                continue
            msg_id = "n" + derived(key, channel.value, destination)
            row = self._delivery(msg_id, channel, destination, case_id, recipient, facts, key)
            if (channel, destination) in seen:
                row.update(state=State.SUPPRESSED.value, reason="duplicate: this address is told once")
            elif recipient.unsubscribed:
                row.update(state=State.SUPPRESSED.value, reason="unsubscribed")
            elif held is not None:
                local = held.astimezone(t.zone)
                row.update(next_attempt_at=held, reason=f"held by quiet hours until {local:%H:%M} local time")
            seen.add((channel, destination))
            row["body"] = self._body(channel, msg_id, destination, facts, language, recipient, text)
            self.delivery_rows.append(row)
            if recipient.key.startswith("follower:"):
                self.pushed[msg_id] = recipient.key.removeprefix("follower:")
        for channel in (Channel.WEBHOOK, Channel.LOG):  # every notification, whoever it is for
            if channel in t.outlets.channels:
                msg_id = "n" + derived(key, channel.value)
                destination = recipient.key if channel is Channel.LOG else channel.value
                row = self._delivery(msg_id, channel, destination, case_id, recipient, facts, key)
                row["body"] = self._body(channel, msg_id, destination, facts, language, recipient, text)
                self.delivery_rows.append(row)

    def _delivery(
        self,
        msg_id: str,
        channel: Channel,
        destination: str,
        case_id: str | None,
        recipient: Recipient,
        facts: Facts,
        key: str,
    ) -> dict[str, Any]:
        return {
            "msg_id": msg_id,
            "channel": channel.value,
            "destination": destination,
            "case_id": case_id,
            # order per case, recipient and channel; ops' alerts need none (one dead must not hold the next)
            "sequence": None
            if recipient.audience is Audience.OPS
            else f"{case_id or 'digest'}/{recipient.key}/{channel.value}",
            "kind": facts.kind.value,
            "body": "",
            "state": State.CREATED.value,
            "attempts": 0,
            "next_attempt_at": self.now,
            "reason": None,
            "last_status": None,
            "provider_ref": None,
            "ref": key,
            "created_at": self.now,
            "delivered_at": None,
        }

    def _body(
        self,
        channel: Channel,
        msg_id: str,
        destination: str,
        facts: Facts,
        lang: Lang,
        recipient: Recipient,
        text: Rendered,
    ) -> str:
        """What the channel's sender sends, exactly (its body model: notifier/channels/bodies.py)."""
        m = self.telling.messages
        body: BaseModel
        if channel is Channel.EMAIL:
            r = m.render(facts, channel, lang)
            body = EmailBody(
                to=destination,
                subject=r.subject,
                text=r.text,
                html=r.html,
                unsubscribe_url=recipient.unsubscribe_url,
                language=lang,
            )
        elif channel is Channel.SMS:
            r = m.render(facts, channel, lang)
            body = SmsBody(
                phone=re.sub(r"[ -]", "", destination), template_code=r.sms_code or "", params=r.sms_params or {}
            )
        elif channel is Channel.WEBHOOK:
            body = WebhookBody(
                specversion="1.0",
                id=msg_id,
                type="gridcall.notification",
                source="/gridcall/notifier",
                subject=facts.case_id or None,
                time=self.now,
                datacontenttype="application/json",
                data={
                    "audience": recipient.audience.value,
                    "recipient": recipient.key,
                    "kind": facts.kind.value,
                    "language": lang,
                    "subject": text.subject,
                    "text": text.text,
                },
            )
        else:
            body = LogBody(audience=recipient.audience.value, subject=text.subject, text=text.text)
        return body.model_dump_json(exclude_none=channel is not Channel.WEBHOOK)

    async def write(self) -> None:
        s = self.session
        await insert_new(s, cases, list(self.new_cases.values()), "case_id")
        await update_rows(s, cases, "case_id", list(self.changed_cases.values()))
        await insert_new(s, followers, self.new_followers, "report_id")
        if self.changed_holders:
            await s.execute(delete(holders).where(among(s, holders.c.key, sorted(self.changed_holders))))
            await insert_new(s, holders, [h for h in self.changed_holders.values() if h is not None], "key")
        await insert_new(s, digest_items, self.digest_rows, "key")
        fresh = await insert_new(s, notifications, self.notification_rows, "key")
        await self._unsubscribed_meanwhile()
        await insert_new(s, deliveries, [d for d in self.delivery_rows if d["ref"] in fresh], "msg_id")

    async def _unsubscribed_meanwhile(self) -> None:
        """A follower who stopped the messages after this batch read them: their new emails and
        texts are written suppressed. The rows are read FOR SHARE, so an unsubscribe still to
        come waits for this commit and then suppresses what it wrote."""
        if not self.pushed:
            return
        query = select(followers.c.report_id, followers.c.unsubscribed_at).where(
            followers.c.report_id.in_(sorted(set(self.pushed.values())))
        )
        rows = (await self.session.execute(query.with_for_update(read=True))).all()
        stopped = {r.report_id for r in rows if r.unsubscribed_at is not None}
        for d in self.delivery_rows:
            if self.pushed.get(d["msg_id"]) in stopped and d["state"] == State.CREATED.value:
                d.update(state=State.SUPPRESSED.value, reason="unsubscribed", next_attempt_at=self.now)


def digest_facts(facts: Facts) -> dict[str, Any]:
    """What a digest lists of one new ticket, as JSON (read back by `digest_item`)."""

    def name(n: Name | None) -> dict[str, str] | None:
        return None if n is None else {"zh": n.zh, "en": n.en}

    return {
        "ticket_id": facts.ticket_id,
        "category": name(facts.category),
        "grid": name(facts.grid),
        "priority": facts.priority.value if facts.priority else None,
        "due": facts.due.isoformat() if facts.due else None,
    }


def digest_item(raw: Mapping[str, Any]) -> DigestItem:
    def name(n: Mapping[str, str] | None) -> Name | None:
        return None if n is None else Name(zh=n["zh"], en=n["en"])

    return DigestItem(
        ticket_id=raw["ticket_id"],
        category=name(raw["category"]),
        grid=name(raw["grid"]),
        priority=Priority(raw["priority"]) if raw["priority"] else None,
        due=datetime.fromisoformat(raw["due"]) if raw["due"] else None,
    )


async def notifications_of(session: AsyncSession, case_id: str) -> list[dict[str, Any]]:
    """Every notification recorded for a case, oldest first, each with its deliveries."""
    told = (
        await session.execute(
            select(notifications).where(notifications.c.case_id == case_id).order_by(notifications.c.id)
        )
    ).all()
    sent = (
        await session.execute(select(deliveries).where(deliveries.c.case_id == case_id).order_by(deliveries.c.id))
    ).all()
    by_key: dict[str, list[dict[str, Any]]] = {}
    for d in sent:
        by_key.setdefault(d.ref, []).append(
            {
                "id": d.id,
                "channel": d.channel,
                "destination": d.destination,
                "state": d.state,
                "attempts": d.attempts,
                "reason": d.reason,
            }
        )
    return [{**n._mapping, "deliveries": by_key.get(n.key, [])} for n in told]
