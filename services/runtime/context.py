"""The context every service is built from (settings, engine, bus, clock, district, policy,
authenticator) and the parts a service hands the runtime."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Table

from services.district.clock import Clock, SystemClock
from services.district.events import Event, Stream
from services.district.jurisdiction import Jurisdiction, load_jurisdiction
from services.district.policy import Policy, load_policy
from services.messaging.bus import Bus
from services.messaging.bus.kafka import KafkaBus, Security
from services.messaging.bus.local import LocalBus
from services.messaging.consumer import Consumer, Handler, Lock
from services.messaging.transaction import Store
from services.runtime.lifecycle import Stop
from services.runtime.metrics import Metrics
from services.runtime.settings import Settings
from services.storage.batching import GroupCommit
from services.storage.db import Database
from services.storage.pruning import Horizon
from services.web.auth import Authenticator
from services.web.edge import ErrorRenderer


@dataclass
class Context:
    """Everything a service is built from; the one place that creates engine, bus and clock."""

    settings: Settings
    db: Database
    bus: Bus
    clock: Clock
    jurisdiction: Jurisdiction
    policy: Policy
    authenticator: Authenticator
    metrics: Metrics = field(default_factory=Metrics)

    def consumer(
        self,
        service: str,
        store: Store,
        handlers: Mapping[type[Event], Handler],
        streams: Sequence[Stream],
        *,
        lock: Lock | None = None,
    ) -> Consumer:
        """The service's consumer group on these streams."""
        name = f"{self.settings.topic_prefix}.{service}"
        return Consumer(name, store, self.bus, handlers, streams, lock=lock, batch=self.settings.consumer_batch)

    def store(self, source: str, *, outbox: Table, inbox: Table, deadletters: Table) -> Store:
        return Store(
            self.db,
            source=source,
            outbox=outbox,
            inbox=inbox,
            deadletters=deadletters,
            clock=self.clock,
            topic=lambda stream: self.settings.topic(stream),
            metrics=self.metrics,
        )


def build_context(
    settings: Settings, *, clock: Clock | None = None, name: str = "gridcall", service: str | None = None
) -> Context:
    """`name` is how this process shows itself to PostgreSQL (`application_name`) and to the
    broker (`client_id`): `gridcall-<service>` in distributed mode, so operators can tell the
    services' connections apart. `service`: the one service this process runs, on its own
    database if it has one (Settings.db_url_of)."""
    bus: Bus
    if settings.embedded:
        bus = LocalBus(settings.var_dir / "bus.db")
    else:
        assert settings.kafka_bootstrap_servers
        bus = KafkaBus(
            settings.kafka_bootstrap_servers,
            security=kafka_security(settings),
            enable_idempotence=settings.kafka_enable_idempotence,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_min_insync_replicas,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
            client_id=name,
        )
    if settings.db_url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    jurisdiction = load_jurisdiction(settings.jurisdiction_file)
    clock = clock or SystemClock()
    return Context(
        settings=settings,
        db=Database(settings.db_url_of(service), application_name=name),
        bus=bus,
        clock=clock,
        jurisdiction=jurisdiction,
        policy=load_policy(settings.policy_file, jurisdiction),
        authenticator=Authenticator(settings.signing_key(), clock, units=[u.id for u in jurisdiction.units]),
    )


@dataclass
class ServiceParts:
    """One service as the runtime sees it: its HTTP routes and its background loops."""

    name: str
    router: APIRouter
    store: Store
    consumers: list[Consumer] = field(default_factory=list)
    workers: list[Callable[[Stop], Awaitable[None]]] = field(default_factory=list)
    group_commits: list[GroupCommit[Any, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    # Topics beside the streams' that the service reads or writes (a department's adapter topics).
    topics: list[str] = field(default_factory=list)
    # What must hold before the service starts (an SMTP server that answers as configured): each
    # raises, saying what is wrong, and start-up fails.
    checks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Error renderers for path prefixes that answer in a format of their own (Open311).
    error_renderers: dict[str, ErrorRenderer] = field(default_factory=dict)
    # What the service's pruner deletes beside its inbox's old rows, in this order
    # (services/storage/pruning.py): finished deliveries past their retention, and the like.
    horizons: list[Horizon] = field(default_factory=list)


def kafka_security(settings: Settings) -> Security:
    password = settings.kafka_sasl_password
    return Security(
        protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
