"""The four services as processes, with a clock at the seed's end."""

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.year import SERVICES, sqlalchemy_url

# -- the clock -------------------------------------------------------------------------------


class ShiftedClock:
    """The wall clock moved by a fixed amount: "now" is the seed's end when the bench starts."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def serve(service: str, port: int, offset_s: float) -> None:
    """`gridcall serve <service>` with the shifted clock (the CLI's own start-up, clock aside)."""
    from functools import partial

    from gridcall import cli
    from gridcall.app import build_app
    from gridcall.operators import load_settings

    cli.build_app = partial(build_app, clock=ShiftedClock(timedelta(seconds=offset_s)))  # type: ignore[assignment]
    settings = load_settings()
    cli._logging(settings, service)
    cli._serve(settings, [service], port)


def start_services(offset_s: float, secret: str, bootstrap: str, logs: Path) -> Any:
    from tests.support.cluster import Cluster, Process, base_env, distributed_settings
    from tests.support.servers import free_port

    settings = distributed_settings(
        sqlalchemy_url("intake"),
        bootstrap,
        f"year{uuid.uuid4().hex[:6]}",
        GRIDCALL_SECRET_KEY=secret,
        **{f"GRIDCALL_{s.upper()}_DATABASE_URL": sqlalchemy_url(s) for s in SERVICES},
    )
    env = base_env(settings)
    cluster = Cluster()
    try:
        for name in SERVICES:
            port = free_port()
            args = [sys.executable, "-m", "bench.year", "serve", name, str(port), str(offset_s)]
            p = Process(name, port, args, env, logs / f"{name}.log")
            cluster.processes[name] = p
            p.start(timeout=120)
    except BaseException:
        cluster.stop()
        raise
    return cluster
