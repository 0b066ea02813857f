import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    UnknownError,
    UnsupportedVersionError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from services.messaging.bus import Message, Record, last_per_partition

log = logging.getLogger(__name__)

BATCH_BYTES = 256 * 1024
PARTITIONER = DefaultPartitioner()  # the producer's default: the same key goes to the same partition


class NoIdempotentProducer(RuntimeError):
    """The broker refused to give the producer an id: it has no idempotent producers."""


@dataclass(frozen=True)
class Security:
    """How the services reach the broker: TLS (`SSL`), SASL over TLS (`SASL_SSL`, a managed
    Kafka's usual), SASL alone, or neither (`PLAINTEXT`, a private network's). The same for the
    producer, the consumers and the admin client."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None  # None: the system's certificate authorities
    certfile: str | None = None  # a client certificate, for mutual TLS
    keyfile: str | None = None

    def options(self) -> dict[str, Any]:
        """aiokafka's connection arguments."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.protocol in ("SSL", "SASL_SSL"):
            tls = create_ssl_context(cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile)
            options["ssl_context"] = tls
        if self.protocol.startswith("SASL_"):
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return options


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        *,
        security: Security | None = None,
        enable_idempotence: bool = True,
        partitions: int = 6,
        replication_factor: int = 1,
        min_insync_replicas: int | None = None,
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 5_000,
        client_id: str = "gridcall",
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.connection = (security or Security()).options()
        self.enable_idempotence = enable_idempotence
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.topic_configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}
        self.group_timeouts = {
            "session_timeout_ms": session_timeout_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
            "heartbeat_interval_ms": min(1_000, session_timeout_ms // 3),
        }
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """The producer's batching comes from `publish`: a relay hands over its whole batch
        before awaiting any of it, so every record is queued before the sender runs, and the
        sender takes them as one request per partition. Lingering would only delay each round
        (measured on Tansu: 7,000 records/s instead of 50,000 with 50 a round and 5 ms, no
        saving with 500). Batches of up to 256 KiB hold a round's records of a partition
        (16 KiB by default: about 15 events); gzip costs the relay more CPU than it saves the
        broker on one host, so records go uncompressed."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            **self.connection,
            acks="all",
            enable_idempotence=self.enable_idempotence,
            linger_ms=0,
            max_batch_size=BATCH_BYTES,
            partitioner=PARTITIONER,
        )
        try:
            await self._producer.start()
        except (UnknownError, UnsupportedVersionError) as exc:  # what a broker without them answers
            await self.stop()
            if not self.enable_idempotence:
                raise
            raise NoIdempotentProducer(
                f"the broker at {self.bootstrap} refused an idempotent producer ({type(exc).__name__}): it has none "
                "(Tansu, for one). Set GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE=false for such a broker; with Apache Kafka "
                "keep it on (it needs acks=all, which gridcall sets)"
            ) from exc
        except KafkaError:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._producer:
            await self._producer.stop()
            self._producer = None

    async def unready(self) -> str | None:
        """The broker answers a metadata request within two seconds, or says why not."""
        if self._producer is None:
            return "not started"
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2.0)
        except (KafkaError, TimeoutError) as exc:
            return f"the broker at {self.bootstrap} does not answer ({type(exc).__name__})"
        return None

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id, **self.connection)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                answer = await admin.create_topics(
                    [
                        NewTopic(t, self.partitions, self.replication_factor, topic_configs=self.topic_configs)
                        for t in missing
                    ]
                )
                # The broker answers per topic and aiokafka raises for none: a refusal (too few
                # brokers for the replication asked, a bad config) must stop the start, not pass.
                refused = [
                    f"{topic}: {for_code(code).__name__}{f' ({rest[0]})' if rest and rest[0] else ''}"
                    for topic, code, *rest in answer.topic_errors
                    if code not in (0, TopicAlreadyExistsError.errno)
                ]
                if refused:
                    raise KafkaError(f"the broker at {self.bootstrap} made no topic of: {'; '.join(refused)}")
        finally:
            await admin.close()

    async def publish(self, messages: Sequence[Message]) -> None:
        """Send messages and wait until the broker has them all. They are laid into record
        batches here, one per partition (more if a round outgrows a batch), in their order, and
        each batch is handed to the producer whole: per message, `send` would cost a partition
        lookup, a future and an accumulator append (a fifth of a dispatcher's CPU in a wave of
        escalations). Partitions are the producer's own (murmur2 of the key, as `send` would
        choose), worked out once per key a round."""
        producer = self._producer
        assert producer, "KafkaBus.start() first"
        partitions: dict[str, list[int]] = {}
        partition_of: dict[tuple[str, str], int] = {}
        batches: dict[tuple[str, int], list[BatchBuilder]] = {}
        for m in messages:
            if m.topic not in partitions:
                partitions[m.topic] = sorted(await producer.partitions_for(m.topic))
            key = m.key.encode()
            where = partition_of.get((m.topic, m.key))
            if where is None:
                where = partition_of[(m.topic, m.key)] = PARTITIONER(key, partitions[m.topic], partitions[m.topic])
            record = {
                "timestamp": None,
                "key": key,
                "value": m.value,
                "headers": [(k, v.encode()) for k, v in m.headers.items()],
            }
            chain = batches.setdefault((m.topic, where), [])
            if not chain or chain[-1].append(**record) is None:
                chain.append(producer.create_batch())
                if chain[-1].append(**record) is None:  # an empty batch takes any one record
                    raise MessageSizeTooLargeError(f"a record of {len(m.value)} bytes does not fit a batch")
        sent = [
            await producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), chain in batches.items()
            for batch in chain
        ]
        await asyncio.gather(*sent)

    def subscribe(self, group: str, topics: Sequence[str]) -> "KafkaSubscription":
        return KafkaSubscription(
            self.bootstrap, group, list(topics), client_id=self.client_id, **self.connection, **self.group_timeouts
        )


class KafkaSubscription:
    def __init__(self, bootstrap: str, group: str, topics: list[str], *, client_id: str, **options: Any) -> None:
        """`options`: the connection's (Security.options) and the group's timeouts."""
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            client_id=client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **options,
        )
        self._next: dict[TopicPartition, int] = {}  # the offset after the last record fetched

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def fetch(self, timeout: float = 1.0, max_records: int = 200) -> list[Record]:
        batches = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        for tp, batch in batches.items():
            if batch:
                self._next[tp] = batch[-1].offset + 1
        return [
            Record(
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                key=(m.key or b"").decode(errors="replace"),  # a foreign producer's bytes must not stop the fetch
                value=m.value or b"",
                headers={k: (v or b"").decode(errors="replace") for k, v in (m.headers or ())},
            )
            for batch in batches.values()
            for m in batch
        ]

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each assigned partition read so far, from the highwater
        the broker sent with the last fetch (no request of its own)."""
        behind: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            end, at = self._consumer.highwater(tp), self._next.get(tp)
            if end is not None and at is not None:
                behind[(tp.topic, tp.partition)] = max(end - at, 0)
        return behind

    async def commit(self, records: Sequence[Record]) -> None:
        offsets = {TopicPartition(t, p): o + 1 for (t, p), o in last_per_partition(records).items()}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced under us: the new owner re-reads these records, and the
            # consumer's inbox makes the repeat harmless.
            log.warning("offset commit lost to a rebalance; records will be redelivered")
