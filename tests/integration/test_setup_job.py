"""The setup job's two commands, as the compose file and the Kubernetes Job run them:
`gridcall migrate`, then `gridcall topics`, which makes every topic the services use (the
streams and each department adapter's) with the configured partitions, once."""

import asyncio
from asyncio.subprocess import PIPE

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.cluster import base_env, distributed_settings, gridcall_args

pytestmark = pytest.mark.integration


async def gridcall(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*gridcall_args(*args), env=base_env(env), stdout=PIPE, stderr=PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_setup_job_makes_every_topic_with_its_partitions_once(pg_url, broker, topic_prefix):
    env = distributed_settings(pg_url, broker.bootstrap, topic_prefix, GRIDCALL_KAFKA_PARTITIONS="4")
    code, out, err = await gridcall(env, "topics")
    assert code == 0, err
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(f"{topic_prefix}.")]
        assert {f"{topic_prefix}.cases", f"{topic_prefix}.tickets"} <= set(ours)
        described = await admin.describe_topics(ours)
        assert {len(t["partitions"]) for t in described} == {4}
    finally:
        await admin.close()
    assert f"{len(ours)} topics with 4 partitions each" in out
    assert (await gridcall(env, "topics"))[0] == 0  # again: nothing to make, no error
    code, _, err = await gridcall({k: v for k, v in env.items() if k != "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS"}, "topics")
    assert code == 2 and "embedded mode has no broker" in err
