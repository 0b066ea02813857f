"""The bus: one interface, two implementations.

- `KafkaBus` (distributed mode): aiokafka, consumer groups, manual offset commits.
- `LocalBus` (embedded mode): a durable log in a local SQLite file, same semantics for
  one member per group.

Delivery is at least once: a subscriber commits a record only after its effect is durable,
and whatever it fetched but did not commit is delivered again after a restart.
"""

import re
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

    async def unready(self) -> str | None:
        """What keeps the bus from working now (the broker does not answer), or None."""
        ...

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


# The CloudEvents Kafka binding's name for the type attribute: the relay sets it on every record
# it publishes, so a consumer skips the events it has no handler for without decoding them.
TYPE_HEADER = "ce_type"
CONTENT_TYPE, STRUCTURED = "content-type", "application/cloudevents+json"
ID_HEADER = "ce_id"
# What `Envelope.encode` writes first: the type is its third attribute, after an id of our own.
_ENCODED_TYPE = re.compile(rb'\{"specversion":"1\.0","id":"[^"\\]*","type":"([^"\\]+)"')


def type_headers(payload: bytes) -> dict[str, str]:
    """The record headers of a CloudEvent in structured mode (an encoded envelope, or a
    department's assignment): its content type, as the CloudEvents Kafka binding asks, and
    its type, read from the first bytes of the payload without decoding it; none if the
    payload does not begin as `encode` writes."""
    found = _ENCODED_TYPE.match(payload)
    return {CONTENT_TYPE: STRUCTURED, TYPE_HEADER: found[1].decode()} if found else {}
