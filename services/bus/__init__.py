"""The bus: one interface, two implementations.

- `KafkaBus` (distributed mode): aiokafka, consumer groups, manual offset commits.
- `LocalBus` (embedded mode): a durable log in a local SQLite file, same semantics for
  one member per group.

Delivery is at least once: a subscriber commits a record only after its effect is durable,
and whatever it fetched but did not commit is delivered again after a restart.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Subscription(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def fetch(self, timeout: float = 1.0, max_records: int = 200) -> list[Record]:
        """The next records of the subscribed topics, in order within each partition."""
        ...

    async def commit(self, records: Sequence[Record]) -> None:
        """Mark these records (and everything before them in their partitions) as done."""
        ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_topics(self, topics: Sequence[str]) -> None: ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Durably publish, in order; returns once the broker has acknowledged every message."""
        ...

    def subscribe(self, group: str, topics: Sequence[str]) -> Subscription: ...


def last_per_partition(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    """The highest offset seen per (topic, partition)."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        last[key] = max(r.offset, last.get(key, -1))
    return last
