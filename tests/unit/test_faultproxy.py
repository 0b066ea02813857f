"""The fault proxy (tests/support/faultproxy.py) on the wire: against a tiny echo server, against
the real PostgreSQL through asyncpg, and in front of a Tansu broker that advertises it."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from tests.support.faultproxy import FaultProxy, proxied_broker
from tests.support.servers import Broker, free_port
from tests.support.waiting import eventually

QUIET = 0.5  # seconds of silence taken for "nothing comes"


class Echo:
    """Answers every chunk with itself; remembers what it got and how each connection ended."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.ends: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            self.ends.append("reset")
        else:
            self.ends.append("eof")
        finally:
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, int]]:
    server = Echo()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    try:
        yield server, listening.sockets[0].getsockname()[1]
    finally:
        listening.close()


@pytest.fixture
def proxy(echo: tuple[Echo, int]) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo[1]) as p:
        yield p


Link = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[FaultProxy], Awaitable[Link]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Connects a client to a proxy; every client is closed after the test."""
    opened: list[asyncio.StreamWriter] = []

    async def to(proxy: FaultProxy) -> Link:
        link = await asyncio.open_connection("127.0.0.1", proxy.port)
        opened.append(link[1])
        return link

    yield to
    for writer in opened:
        writer.close()


async def round_trip(link: Link, data: bytes, timeout=5.0) -> bytes:
    reader, writer = link
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def silent(link: Link) -> bool:
    """Nothing comes on `link` for QUIET seconds: no byte, no FIN, no RST."""
    try:
        await asyncio.wait_for(link[0].read(1), QUIET)
    except TimeoutError:
        return True
    return False


async def reset_on_arrival(connect: Connect, proxy: FaultProxy) -> None:
    """A new connection is reset: as the client's connect completes (the RST came first) or after."""
    with pytest.raises(ConnectionResetError):
        reader, _ = await connect(proxy)
        await asyncio.wait_for(reader.read(1), 5)


async def holds(condition: bool) -> bool:
    return condition


async def test_it_carries_both_ways_and_counts(echo, proxy, connect):
    server, _ = echo
    first, second = await connect(proxy), await connect(proxy)
    assert await round_trip(first, b"hello") == b"hello"
    assert await round_trip(second, b"world!") == b"world!"
    assert (proxy.accepted, proxy.bytes_up, proxy.bytes_down) == (2, 11, 11)
    first[1].write_eof()  # a half-close is carried: the server sees the FIN, closes, and so the client sees one
    assert await asyncio.wait_for(first[0].read(), 5) == b""
    assert server.ends == ["eof"]
    second[1].close()
    await eventually(lambda: holds(proxy.connections == 0))


async def test_latency_delays_each_direction_without_serialising(proxy, connect):
    link = await connect(proxy)
    await round_trip(link, b"warm")
    proxy.latency(0.3)
    started = time.monotonic()
    assert await round_trip(link, b"slow") == b"slow"
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    for n in range(8):  # 0.35 s of chunks: back after 0.95 s in a pipeline, 2.7 s if each waited for the one before
        link[1].write(b"%d" % n)
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(link[0].readexactly(8), 5) == b"01234567"
    assert time.monotonic() - started < 1.8, "chunks are pipelined, not delayed one after another"
    proxy.heal()
    started = time.monotonic()
    await round_trip(link, b"fast")
    assert time.monotonic() - started < 0.5


async def test_drop_is_a_black_hole_and_what_it_stalled_stays_stalled(echo, proxy, connect):
    server, _ = echo
    before = await connect(proxy)
    await round_trip(before, b"up")
    proxy.drop()
    during = await connect(proxy)  # accepted, but it never reaches the server
    for link in (before, during):
        link[1].write(b"anyone?")
        assert await silent(link)
    assert (server.connections, bytes(server.received)) == (1, b"up")
    proxy.heal()
    assert await round_trip(await connect(proxy), b"again") == b"again"
    before[1].write(b"still there?")
    assert await silent(before) and await silent(during), "a stalled connection must time out on its own"
    assert proxy.accepted == 3


async def test_reset_sends_rst_to_both_sides_and_to_every_new_connection(echo, proxy, connect):
    server, _ = echo
    before = await connect(proxy)
    await round_trip(before, b"up")
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(before[0].read(1), 5)
    await eventually(lambda: holds(server.ends == ["reset"]))
    await reset_on_arrival(connect, proxy)
    assert server.connections == 1
    proxy.heal()
    assert await round_trip(await connect(proxy), b"again") == b"again"


async def test_half_open_carries_requests_but_never_their_answers(echo, proxy, connect):
    server, _ = echo
    before = await connect(proxy)
    await round_trip(before, b"up")
    proxy.half_open()
    during = await connect(proxy)
    for link, said in ((before, b"ping"), (during, b"pong")):
        link[1].write(said)
        await eventually(lambda said=said: holds(server.received.endswith(said)))
        assert await silent(link), "the answer was sent, and lost"
    during[1].close()  # a client's FIN still reaches the server
    await eventually(lambda: holds(server.ends == ["eof"]))
    proxy.heal()
    assert await round_trip(await connect(proxy), b"again") == b"again"
    before[1].write(b"still there?")
    assert await silent(before)


async def test_a_refused_upstream_is_a_reset(connect):
    with FaultProxy("127.0.0.1", free_port()) as proxy:
        await reset_on_arrival(connect, proxy)


# PostgreSQL, through asyncpg.


@pytest.fixture
def pg(pg_admin: str) -> Iterator[tuple[FaultProxy, str]]:
    with FaultProxy.in_front_of(pg_admin) as p:
        yield p, p.route(pg_admin)


async def test_postgres_through_the_proxy(pg):
    proxy, dsn = pg
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 41 + 1") == 42
    finally:
        await conn.close()
    assert proxy.accepted == 1 and proxy.bytes_up > 0 and proxy.bytes_down > 0


async def test_postgres_under_latency(pg):
    proxy, dsn = pg
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        proxy.latency(0.2)
        started = time.monotonic()
        assert await conn.fetchval("SELECT 1") == 1
        assert time.monotonic() - started >= 0.4  # one round trip at least
    finally:
        await conn.close()


async def test_postgres_reset(pg):
    proxy, dsn = pg
    conn = await asyncpg.connect(dsn, timeout=5)
    proxy.reset()
    with pytest.raises((ConnectionError, asyncpg.ConnectionDoesNotExistError)):
        await conn.fetchval("SELECT 1", timeout=5)
    conn.terminate()
    with pytest.raises(ConnectionError):
        await asyncpg.connect(dsn, timeout=5)
    proxy.heal()
    await _works(dsn)


async def test_postgres_black_holed(pg):
    proxy, dsn = pg
    conn = await asyncpg.connect(dsn, timeout=5)
    proxy.drop()
    try:
        with pytest.raises(TimeoutError):
            await conn.fetchval("SELECT 1", timeout=1)
        with pytest.raises(TimeoutError):
            await asyncpg.connect(dsn, timeout=1)
        proxy.heal()
        await _works(dsn)
    finally:
        conn.terminate()


async def test_postgres_half_open_runs_what_it_never_answers(pg, pg_admin):
    """A NOTIFY sent on a half-open connection is carried out (a listener beside gets it) while
    its sender waits for an answer that never comes."""
    proxy, dsn = pg
    channel = f"c{uuid.uuid4().hex[:10]}"
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(pg_admin, timeout=5)
    await listener.add_listener(channel, lambda *args: heard.put_nowait(args[-1]))
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        proxy.half_open()
        with pytest.raises(TimeoutError):
            await conn.execute(f"NOTIFY {channel}, 'done'", timeout=1)
        assert await asyncio.wait_for(heard.get(), 5) == "done"
        proxy.heal()
        await _works(dsn)
    finally:
        conn.terminate()
        await listener.close()


async def _works(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


# Kafka: a Tansu that advertises the proxy.


@pytest.fixture(scope="module")
def kafka() -> Iterator[tuple[Broker, FaultProxy]]:
    with proxied_broker() as behind:
        yield behind


def connected_to(client: AIOKafkaClient) -> set[int]:
    """The ports of every connection `client` holds: bootstrap, partition leaders, coordinator."""
    return {conn.port for conn in client._conns.values()}


async def test_kafka_through_the_proxy_and_across_a_reset(kafka):
    broker, proxy = kafka
    topic = f"t{uuid.uuid4().hex[:10]}"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=2000)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"g{uuid.uuid4().hex[:10]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,  # a JoinGroup waits out the rebalance: the request timeout (40 s) stays
        rebalance_timeout_ms=3000,
    )
    await asyncio.wait_for(producer.start(), 30)
    try:
        await producer.send_and_wait(topic, b"before")
        await asyncio.wait_for(consumer.start(), 30)
        try:
            got = await asyncio.wait_for(consumer.getone(), 30)
            assert got.value == b"before"
            assert {(b.host, b.port) for b in producer.client.cluster.brokers()} == {("127.0.0.1", proxy.port)}
            assert connected_to(producer.client) == connected_to(consumer._client) == {proxy.port}
            proxy.reset()
            with pytest.raises((KafkaError, TimeoutError)):
                await asyncio.wait_for(producer.send_and_wait(topic, b"during"), 5)
            proxy.heal()
            await eventually(lambda: _sent(producer, topic, b"after"), timeout=30, interval=0.5)
            values = set()
            while b"after" not in values:
                values.add((await asyncio.wait_for(consumer.getone(), 30)).value)
            assert connected_to(producer.client) == connected_to(consumer._client) == {proxy.port}
        finally:
            await asyncio.wait_for(consumer.stop(), 30)
    finally:
        await asyncio.wait_for(producer.stop(), 30)


async def _sent(producer: AIOKafkaProducer, topic: str, value: bytes) -> bool:
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value), 5)
    except (KafkaError, TimeoutError) as exc:
        raise AssertionError(f"not sent: {exc!r}") from exc
    return True
