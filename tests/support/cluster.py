"""Runs gridcall as real OS processes: one per service (distributed) or one for all (embedded)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.servers import free_port

SERVICES = ("intake", "dispatcher", "departments", "notifier")


@dataclass
class Process:
    name: str
    port: int
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flushing, no goodbye."""
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def gridcall_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "gridcall", *args]


def distributed_settings(db_url: str, bootstrap: str, topic_prefix: str, **more: str) -> dict[str, str]:
    """The services' settings in tests: their own database and topics, the test secret, short
    broker timeouts (Tansu rejoins after the session timeout), a relay that polls often, a rate
    limit out of the way and no drain on SIGTERM (no load balancer to wait for; the drain's own
    tests and the fault suite set one); `more` adds or overrides (GRIDCALL_ names)."""
    from tests.support.journey import TEST_SECRET
    from tests.support.servers import kafka_is_tansu

    return {
        "GRIDCALL_ENV": "test",
        "GRIDCALL_SECRET_KEY": TEST_SECRET,
        "GRIDCALL_DATABASE_URL": db_url,
        "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE": str(not kafka_is_tansu()).lower(),
        "GRIDCALL_KAFKA_PARTITIONS": "3",
        "GRIDCALL_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "GRIDCALL_KAFKA_REBALANCE_TIMEOUT_MS": "3000",
        "GRIDCALL_RATE_LIMIT": "1000000/minute",
        "GRIDCALL_TOPIC_PREFIX": topic_prefix,
        "GRIDCALL_RELAY_INTERVAL": "0.05",
        "GRIDCALL_SHUTDOWN_DRAIN": "0",
        **more,
    }


def embedded_env(var_dir: Path, **more: str) -> dict[str, str]:
    """`gridcall run`'s settings in tests: dev mode on `var_dir`, the test secret, a relay that
    polls often and a rate limit out of the way; `more` adds or overrides (GRIDCALL_ names)."""
    from tests.support.journey import TEST_SECRET

    return {
        "GRIDCALL_ENV": "dev",
        "GRIDCALL_SECRET_KEY": TEST_SECRET,
        "GRIDCALL_VAR_DIR": str(var_dir),
        "GRIDCALL_RELAY_INTERVAL": "0.05",
        "GRIDCALL_RATE_LIMIT": "1000000/minute",
        "GRIDCALL_SHUTDOWN_DRAIN": "0",
        **more,
    }


def base_env(settings: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDCALL_")}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Cluster:
    processes: dict[str, Process] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Process:
        return self.processes[name]

    def stop(self) -> None:
        for p in self.processes.values():
            p.stop()


@contextmanager
def distributed(settings: Mapping[str, str], log_dir: Path, services: tuple[str, ...] = SERVICES) -> Iterator[Cluster]:
    """Every service as its own process, on the PostgreSQL and broker named in `settings`."""
    env = base_env(settings)
    cluster = Cluster()
    try:
        for name in services:
            port = free_port()
            p = Process(name, port, gridcall_args("serve", name, "--port", str(port)), env, log_dir / f"{name}.log")
            cluster.processes[name] = p
            p.start()
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def timed(db_url: str, bootstrap: str, log_dir: Path, policy: Path, topics: str) -> Iterator[Cluster]:
    """`distributed` on `policy` (one with limits of seconds) with timers polled every 0.1 s, on
    topics of its own named after `topics`: the tests of what happens when a limit passes."""
    prefix = f"{topics}{uuid.uuid4().hex[:8]}"
    env = distributed_settings(
        db_url, bootstrap, prefix, GRIDCALL_TIMER_INTERVAL="0.1", GRIDCALL_POLICY_FILE=str(policy)
    )
    with distributed(env, log_dir) as cluster:
        yield cluster


@contextmanager
def embedded(settings: Mapping[str, str], log_dir: Path) -> Iterator[Process]:
    port = free_port()
    p = Process("gridcall", port, gridcall_args("run", "--port", str(port)), base_env(settings), log_dir / "run.log")
    try:
        p.start()
        yield p
    finally:
        p.stop()


@asynccontextmanager
async def service_clients(cluster: Cluster, *services: str) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """An HTTP client for each of `services` of the cluster, in that order."""
    async with AsyncExitStack() as stack:
        yield tuple(
            [await stack.enter_async_context(httpx.AsyncClient(base_url=cluster[s].url, timeout=10)) for s in services]
        )
