"""The network's faults, between the services and their database or broker, for the fault suite
(tests/faults/test_faults.py): latency, connections reset, a black hole and half-open connections,
each made by a FaultProxy (tests/support/faultproxy.py) that every service's connections go through.

The database's are plain faults on `System.db_proxy`: a run whose services' GRIDCALL_DATABASE_URL
points at a proxy in front of the run's database (the harness's `system(..., db_proxy=True)`). The
checker, the migrations and the other faults reach the database directly.

The broker's are scenarios (`Scenario`) whose extra is a broker of the run's own behind a proxy
(`proxied_broker()`: a Tansu that advertises the proxy), the services' GRIDCALL_KAFKA_BOOTSTRAP_SERVERS
its address; `System.broker` stays the session's broker, which such a run does not use.

A connection that a black hole or a half-open spell stalled stays stalled after it ends (see the
proxy's docstring): a service gets past it only through timeouts of its own."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.faults.harness import Fault, Run, Scenario, System
from tests.support.faultproxy import FaultProxy, proxied_broker
from tests.support.servers import Broker

LATENCY = 0.2  # seconds, each way
SLOW = 5.0  # seconds of latency
RESETS = 10  # spells of resets, half a second each: a quarter second reset, a quarter second healed
PARTITION = 10.0  # seconds of a black hole or half-open connections


def database(s: System) -> FaultProxy:
    proxy = getattr(s, "db_proxy", None)
    if not isinstance(proxy, FaultProxy):
        raise RuntimeError("this run's services do not reach the database through a FaultProxy (System.db_proxy)")
    return proxy


@dataclass
class BrokerBehindAProxy:
    """A run's own broker, its proxy, and the settings that send every service through the proxy."""

    broker: Broker
    proxy: FaultProxy
    settings: dict[str, str]

    async def check(self, system: System, conn: asyncpg.Connection, run: Run) -> None:
        p = self.proxy
        run.notes.append(f"broker proxy: {p.accepted} connections, {p.bytes_up} B up, {p.bytes_down} B down")


@asynccontextmanager
async def broker_behind_a_proxy(log_dir: Path) -> AsyncIterator[BrokerBehindAProxy]:
    behind = proxied_broker()
    broker, proxy = await asyncio.to_thread(behind.__enter__)
    try:
        yield BrokerBehindAProxy(
            broker,
            proxy,
            {
                "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE": "false",  # a Tansu, whatever the session's broker is
            },
        )
    finally:
        await asyncio.to_thread(behind.__exit__, None, None, None)


def in_use(proxy: FaultProxy) -> FaultProxy:
    assert proxy.connections, "no service is connected through the proxy: the scenario would test nothing"
    return proxy


async def slow(proxy: FaultProxy) -> None:
    proxy.latency(LATENCY)
    try:
        await asyncio.sleep(SLOW)
    finally:
        proxy.heal()


async def resets(proxy: FaultProxy) -> None:
    """Every connection reset, then new ones let through a moment to be reset in turn."""
    try:
        for _ in range(RESETS):
            proxy.reset()
            await asyncio.sleep(0.25)
            proxy.heal()
            await asyncio.sleep(0.25)
    finally:
        proxy.heal()


async def black_hole(proxy: FaultProxy) -> None:
    proxy.drop()
    try:
        await asyncio.sleep(PARTITION)
    finally:
        proxy.heal()


async def half_open(proxy: FaultProxy) -> None:
    proxy.half_open()
    try:
        await asyncio.sleep(PARTITION)
    finally:
        proxy.heal()


async def database_latency(s: System) -> None:
    """200 ms more each way on every database connection, for five seconds."""
    await slow(in_use(database(s)))


async def database_resets(s: System) -> None:
    """Every database connection reset (RST), twice a second for five seconds."""
    await resets(in_use(database(s)))


async def database_black_holed(s: System) -> None:
    """The database unreachable for ten seconds: connections stall, new ones are never answered."""
    await black_hole(in_use(database(s)))


async def database_half_open(s: System) -> None:
    """For ten seconds the database's answers are lost while the services' statements still reach it."""
    await half_open(in_use(database(s)))


async def broker_latency(s: System, b: BrokerBehindAProxy) -> None:
    """200 ms more each way on every broker connection, for five seconds."""
    await slow(in_use(b.proxy))


async def broker_resets(s: System, b: BrokerBehindAProxy) -> None:
    """Every broker connection reset (RST), twice a second for five seconds."""
    await resets(in_use(b.proxy))


async def broker_black_holed(s: System, b: BrokerBehindAProxy) -> None:
    """The broker unreachable for ten seconds: connections stall, new ones are never answered."""
    await black_hole(in_use(b.proxy))


async def broker_half_open(s: System, b: BrokerBehindAProxy) -> None:
    """For ten seconds the broker's answers are lost while the services' requests still reach it."""
    await half_open(in_use(b.proxy))


THROUGH_THE_DATABASE_PROXY: dict[str, Fault] = {
    "database latency 200 ms": database_latency,
    "database connections reset": database_resets,
    "database black-holed": database_black_holed,
    "database half-open": database_half_open,
}
THROUGH_THE_BROKER_PROXY: dict[str, Scenario[Any]] = {
    "broker latency 200 ms": Scenario(broker_latency, broker_behind_a_proxy),
    "broker connections reset": Scenario(broker_resets, broker_behind_a_proxy),
}
# A broker gone silent is noticed only when aiokafka's own request timeout (40 s, not settable
# through the producer) runs out: a run takes two and a half minutes, so `make faults` runs these.
BROKER_STALLS: dict[str, Scenario[Any]] = {
    "broker black-holed": Scenario(broker_black_holed, broker_behind_a_proxy),
    "broker half-open": Scenario(broker_half_open, broker_behind_a_proxy),
}
