"""Prometheus metrics: one registry per app, served at `/metrics`.

A registry per `Metrics` rather than prometheus_client's global one, so that several apps in
one process (tests, embedded mode built twice) never register a name twice. Counters on the
hot paths (consumer batches, relay rounds) are added per batch and per distinct label set,
with the labelled child looked up once and kept. Gauges that need the database (outbox
backlog, timers, deliveries per state, dead letters) are read by probes when Prometheus scrapes, not by the loops.
"""

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime.logs import CASE_ID

log = logging.getLogger(__name__)
disable_created_metrics()  # no `*_created` series beside every counter: rate() needs none of them
Probe = Callable[[], Awaitable[None]]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SERVICES = frozenset({"intake", "dispatcher", "departments", "notifier"})
# Any other method a client makes up is "other": a label's values must not be the client's to choose.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gridcall_http_requests",
            "HTTP requests by route template and status",
            ["service", "method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gridcall_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["service", "method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumed = Counter(
            "gridcall_events_consumed",
            "records a consumer handled (committed), by topic and type",
            ["consumer", "topic", "type"],
            registry=r,
        )
        self.produced = Counter(
            "gridcall_events_produced",
            "outbox rows the relay published, by topic and type",
            ["service", "topic", "type"],
            registry=r,
        )
        self.lag = Gauge(
            "gridcall_consumer_lag",
            "records behind the partition's end (Kafka only)",
            ["consumer", "topic", "partition"],
            registry=r,
        )
        self.outbox_backlog = Gauge("gridcall_outbox_backlog", "outbox rows not yet published", ["service"], registry=r)
        self.outbox_age = Gauge(
            "gridcall_outbox_oldest_age_seconds",
            "age of the oldest unpublished outbox row (0 when empty)",
            ["service"],
            registry=r,
        )
        self.timers = Gauge("gridcall_timers", "SLA timers: pending (all) and due now", ["state"], registry=r)
        self.timers_fired = Counter("gridcall_timers_fired", "SLA timers fired", registry=r)
        self.timers_failed = Counter("gridcall_timers_failed", "SLA timer firings that failed", registry=r)
        self.deliveries = Counter(
            "gridcall_deliveries",
            "delivery attempts by channel and outcome",
            ["service", "channel", "outcome"],
            registry=r,
        )
        self.delivery_states = Gauge(
            "gridcall_deliveries_in_state",
            "deliveries per state, read on each scrape (delivered and suppressed ones are left out: they only grow)",
            ["service", "channel", "state"],
            registry=r,
        )
        self.deadletters = Gauge("gridcall_deadletters", "records parked, per consumer", ["consumer"], registry=r)
        self.rates = Gauge(
            "gridcall_rate", "the district's rates over the last 30 days (/v1/ops/stats)", ["rate"], registry=r
        )
        self._children: dict[tuple[int, Hashable], Any] = {}
        self._probes: list[Probe] = []

    def child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        """The labelled child, looked up once: `labels(...)` costs a lock and a dict per call."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def tally(self, metric: Any, labels: Iterable[tuple[str, ...]]) -> None:
        """Count one per item, one increment per distinct label set (a batch's worth at once)."""
        for key, n in Tally(labels).items():
            self.child(metric, key).inc(n)

    def probe(self, fn: Probe) -> None:
        """Something that sets gauges from the database, run on every scrape."""
        self._probes.append(fn)

    async def render(self) -> bytes:
        outcomes = await asyncio.gather(*(p() for p in self._probes), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # a scrape during an outage still answers, with stale gauges
                log.warning("metrics probe failed: %r", outcome)
        return generate_latest(self.registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST


class Instrument:
    """ASGI middleware: requests by route template (never the raw path, which holds ids) and
    status, with latency. The template is what Starlette's router matched (`scope["route"]`);
    the service is the package that defines the route's endpoint (the kernel's are
    "services"), so the embedded app's requests split by service too."""

    def __init__(self, app: ASGIApp, metrics: Metrics, router: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router
        self._routes: dict[int, tuple[str, str]] = {}
        self._templates: dict[int, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start, base = time.perf_counter(), scope.get("root_path", "")
        about = CASE_ID.set(None)  # the request's case, should its path name one (runtime.case_in_path)
        try:
            await self.app(scope, receive, sending)
        finally:
            CASE_ID.reset(about)
            elapsed = time.perf_counter() - start
            service, route = self._route(scope.get("route"), scope.get("root_path", "")[len(base) :])
            m, method = self.metrics, scope["method"] if scope["method"] in METHODS else "other"
            m.child(m.requests, (service, method, route, str(status))).inc()
            m.child(m.latency, (service, method, route)).observe(elapsed)

    def _route(self, route: Any, mounted: str) -> tuple[str, str]:
        """`mounted`: the path of the Mount the route is under (a sub-app's routes are relative)."""
        if route is None:
            return "services", "unmatched"
        found = self._routes.get(id(route))
        if found is None:
            if self._templates is None:
                self._templates = templates(self.router)
            package = getattr(getattr(route, "endpoint", None), "__module__", "services").split(".")[0]
            found = self._routes[id(route)] = (
                package if package in SERVICES else "services",
                mounted + self._templates.get(id(route), getattr(route, "path", "unmatched")),
            )
        return found


def templates(router: Any) -> dict[int, str]:
    """The full path template of each route a router includes, by the route's id. FastAPI
    (0.16x) keeps an included router's routes as they were declared (`route.path` lacks the
    prefixes they were included under) and sets `scope["route"]` to that route; the full
    template is on its "effective route context", which is what OpenAPI shows."""
    found: dict[int, str] = {}
    for r in getattr(router, "routes", ()):
        contexts = getattr(r, "effective_route_contexts", None)
        if contexts is not None:
            found.update({id(c.original_route): c.path_format for c in contexts()})
    return found
