"""What the people who run gridcall look at: `/metrics` after a journey on the embedded app
moved as the journey says, and its JSON log lines name cases but never a resident."""

import io
import json
import logging
import math
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.usecases import RATES, rates_probe
from gridcall.app import build_app
from services.runtime.logs import JsonFormatter, about
from services.runtime.metrics import Metrics
from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, case_in_status, file_report, open_ticket
from tests.support.waiting import eventually

CONTACT = {"name": "Zhao Min", "phone": "13800000000"}
G11 = {"lat": 30.505, "lon": 114.305}


@pytest.fixture
async def stack(embedded_settings):
    async with running(embedded_settings, clock=frozen_clock(), handlers=["U-G11"], timer_interval=0.05) as app:
        yield app.client, app.tokens, app.clock, app.settings


def samples(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def scrape(client: httpx.AsyncClient) -> str:
    r = await client.get("/metrics")  # no token: Prometheus scrapes it as it is
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


async def journey(client, tokens, clock):
    """Two reports (one with a call-back contact): one claimed and resolved, the other left
    until its response limit has passed, so its timers fire."""
    handled = await file_report(
        client,
        {"category": "garbage", "description": "rubbish heap in the yard", "location": G11, "contact": CONTACT},
    )
    late = await file_report(
        client, {"category": "garbage", "description": "rubbish by the gate", "location": {**G11, "lon": 114.307}}
    )
    worker = tokens("U-G11")
    ticket = await open_ticket(client, "U-G11", worker, handled["case_id"])
    assert ticket["contact"] == CONTACT
    for action, body in (("claim", None), ("resolve", {"note": "cleared"})):
        r = await client.post(f"/v1/tickets/{ticket['ticket_id']}/{action}", headers=bearer(worker), json=body)
        assert r.status_code == 200, r.text
    await case_in_status(client, handled, "resolved")
    await open_ticket(client, "U-G11", worker, late["case_id"])
    clock.advance(timedelta(days=7))  # past every limit of the late case's grid tier
    return handled, late


async def test_metrics_after_a_journey_count_requests_events_timers_and_deliveries(stack):
    client, tokens, clock, settings = stack
    handled, late = await journey(client, tokens, clock)
    cases = f"{settings.topic_prefix}.cases"

    async def moved() -> str | None:
        text = await scrape(client)
        fired = samples(text, "gridcall_timers_fired_total")
        told = samples(text, "gridcall_deliveries_total", service="notifier", channel="log", outcome="delivered")
        consumed = samples(text, "gridcall_events_consumed_total", type="gridcall.case.reported", topic=cases)
        return text if fired >= 1 and told >= 1 and consumed >= 2 else None

    text = await eventually(moved, timeout=30)
    posted = samples(text, "gridcall_http_requests_total", service="intake", method="POST", route="/v1/reports")
    assert posted == 2
    assert samples(text, "gridcall_http_requests_total", route="/v1/reports", status="202") == 2
    assert samples(text, "gridcall_http_request_duration_seconds_count", route="/v1/reports", method="POST") == 2
    assert samples(text, "gridcall_http_requests_total", service="departments", route="/v1/tickets/{ticket_id}/claim")
    assert samples(text, "gridcall_http_requests_total", route="/v1/cases/{case_id}", status="200") >= 1
    assert handled["case_id"] not in text and late["case_id"] not in text  # route templates, never raw paths
    # the district's rates, as /v1/ops/stats works them out, once the journey is over (the
    # probe works them out at most once a minute: a fresh one here, as at a scrape a minute on)
    ctx = client._transport.app.state.ctx
    probe = rates_probe(ctx.db, clock, ctx.policy, ctx.metrics, every=0)
    await probe()
    stats = (await client.get("/v1/ops/stats", headers=bearer(tokens()))).json()
    text = await scrape(client)
    for rate in RATES:
        shown, expected = samples(text, "gridcall_rate", rate=rate), stats[rate]["rate"]
        assert shown == expected or (expected is None and math.isnan(shown)), rate
    assert stats["response"]["rate"] == 0.5  # one claimed in time, one let pass its limit

    reported = samples(text, "gridcall_events_produced_total", service="intake", type="gridcall.case.reported")
    assert reported == samples(text, "gridcall_events_produced_total", topic=cases, type="gridcall.case.reported") == 2
    assert samples(text, "gridcall_events_produced_total", type="gridcall.case.contact_given") == 1
    # the dispatcher and the notifier (which keeps what it needs to word later messages) handle
    # case.reported: the others skip it unread, and count nothing
    dispatcher, notifier = f"{settings.topic_prefix}.dispatcher", f"{settings.topic_prefix}.notifier"
    assert samples(text, "gridcall_events_consumed_total", type="gridcall.case.reported") == 4
    assert samples(text, "gridcall_events_consumed_total", consumer=dispatcher, type="gridcall.case.reported") == 2
    assert samples(text, "gridcall_events_consumed_total", consumer=notifier, type="gridcall.case.reported") == 2
    assert samples(text, "gridcall_events_consumed_total", consumer=f"{settings.topic_prefix}.departments") >= 2
    assert samples(text, "gridcall_events_produced_total", service="dispatcher", type="gridcall.case.assigned") >= 2
    assert samples(text, "gridcall_timers_failed_total") == 0
    assert "gridcall_timers{" in text and "gridcall_outbox_backlog{" in text
    assert "gridcall_outbox_oldest_age_seconds{" in text
    assert samples(text, "gridcall_deadletters") == 0 and 'gridcall_deadletters{consumer="' in text
    assert samples(text, "gridcall_consumer_lag") == 0  # the local bus does not say: no gauge

    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/metrics" not in paths


def test_two_apps_in_one_process_have_registries_of_their_own(embedded_settings):
    first, second = build_app(embedded_settings), build_app(embedded_settings)
    assert first.state.metrics.registry is not second.state.metrics.registry


async def test_json_log_lines_of_a_journey_with_a_contact_never_hold_it(stack):
    client, tokens, clock, _ = stack
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonFormatter("gridcall"))
    root = logging.getLogger()
    was = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        handled, late = await journey(client, tokens, clock)

        async def told() -> bool:
            return "notify resident" in written.getvalue() and late["case_id"] in written.getvalue()

        await eventually(told, timeout=30)
    finally:
        root.removeHandler(handler)
        root.setLevel(was)
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert len(lines) > 5
    for line in lines:
        assert {"time", "level", "logger", "message", "service"} <= line.keys()
        for secret in (*CONTACT.values(), "138 0000 0000"):
            assert secret not in json.dumps(line, ensure_ascii=False), line
    about_handled = [line for line in lines if line.get("case_id") == handled["case_id"]]
    assert about_handled and all(line["service"] == "notifier" for line in about_handled)


def test_the_dashboard_shows_only_metrics_gridcall_exports():
    dashboard = json.loads((Path(__file__).parents[2] / "deploy/grafana/gridcall.json").read_text())
    shown = {
        n for p in dashboard["panels"] for t in p.get("targets", ()) for n in re.findall(r"gridcall_\w+", t["expr"])
    }
    exported = {s.name for family in Metrics().registry.collect() for s in family.samples} | {
        f"{family.name}{suffix}" for family in Metrics().registry.collect() for suffix in ("", "_total", "_bucket")
    }
    assert shown and shown <= exported, shown - exported
    assert {"gridcall_consumer_lag", "gridcall_deadletters", "gridcall_timers_fired_total"} <= shown


def test_a_json_line_names_the_case_and_event_it_was_written_about():
    formatter = JsonFormatter("gridcall-dispatcher")

    def line(**extra) -> dict:
        record = logging.LogRecord("dispatcher.workers", logging.ERROR, __file__, 1, "timer %s failed", (7,), None)
        record.__dict__.update(extra)
        return json.loads(formatter.format(record))

    written = line()
    assert written == {
        "time": written["time"],
        "level": "ERROR",
        "logger": "dispatcher.workers",
        "message": "timer 7 failed",
        "service": "dispatcher",
    }
    with about("case-1", "event-1"):  # as the consumer does around a record's effect
        assert (line()["case_id"], line()["event_id"]) == ("case-1", "event-1")
        assert line(case_id="case-2")["case_id"] == "case-2"
    assert "case_id" not in line() and line(service="notifier")["service"] == "notifier"
