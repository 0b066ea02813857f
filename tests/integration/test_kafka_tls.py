"""The bus over TLS, as to a managed Kafka (GRIDCALL_KAFKA_SECURITY_PROTOCOL=SSL): a Tansu of
the test's own that tells its clients to connect to a TLS terminator in front of it, with a
certificate of the test's own. Every connection of the producer, the consumer group and the
admin client is TLS, checked against the CA file the settings name; a client that trusts
another CA does not connect. SASL has no broker here to test against (Tansu has none): its
settings are checked as settings (tests/unit/test_settings.py)."""

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.errors import KafkaError

from services.messaging.bus import Message
from services.messaging.bus.kafka import KafkaBus, Security
from services.runtime.context import kafka_security
from services.runtime.settings import Settings
from tests.support.servers import free_port, kafka_broker
from tests.support.smtp import self_signed, server_context

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def tls_terminator(port: int, upstream: int, context: ssl.SSLContext) -> AsyncIterator[list[int]]:
    """TLS on 127.0.0.1:`port`, plain to `upstream`; yields the count of TLS connections it took."""
    taken: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        taken.append(1)
        reader, writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=context)
    async with server:
        yield taken


async def test_the_bus_speaks_tls_to_a_broker_whose_certificate_the_settings_trust(tmp_path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    with kafka_broker(advertised_port=port) as broker:
        upstream = int(broker.bootstrap.rsplit(":", 1)[1])
        async with tls_terminator(port, upstream, server_context((cert, key))) as taken:
            settings = Settings(
                kafka_bootstrap_servers=f"127.0.0.1:{port}",
                kafka_security_protocol="SSL",
                kafka_ssl_cafile=cert,
                var_dir=tmp_path,
            )
            bus = KafkaBus(
                f"127.0.0.1:{port}", security=kafka_security(settings), enable_idempotence=False, partitions=1
            )
            topic = f"tls-{uuid.uuid4().hex[:8]}"
            await bus.start()
            try:
                await bus.ensure_topics([topic])
                await bus.publish([Message(topic, "case-1", b'{"n": 1}', {})])
                sub = bus.subscribe(f"g-{uuid.uuid4().hex[:6]}", [topic])
                await sub.start()
                try:
                    got = []
                    for _ in range(40):
                        got += await sub.fetch(timeout=0.5)
                        if got:
                            break
                finally:
                    await sub.stop()
            finally:
                await bus.stop()
            assert [(r.key, r.value) for r in got] == [("case-1", b'{"n": 1}')]
            assert len(taken) >= 3  # producer, admin and consumer all came through TLS

            (tmp_path / "other").mkdir()
            stranger = KafkaBus(
                f"127.0.0.1:{port}",
                security=Security(protocol="SSL", cafile=str(self_signed(tmp_path / "other")[0])),
                enable_idempotence=False,
            )
            with pytest.raises(KafkaError):  # a certificate it does not trust: no connection
                await asyncio.wait_for(stranger.start(), 30)
            await stranger.stop()
