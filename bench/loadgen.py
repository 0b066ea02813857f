"""wrk as the HTTP load generator: C, one thread, so the generator is never the bottleneck
(a wrk thread sends ~50,000 requests/s; the servers measured here answer a tenth of that).
The Lua script (bench/wrk/post_report.lua) posts the report body and prints its figures."""

import json
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import BODY

SCRIPT = Path(__file__).parent / "wrk" / "post_report.lua"


@dataclass(frozen=True)
class Load:
    seconds: float
    requests: int
    accepted: int  # answered 202
    refused: int  # answered anything else
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float = 10,
    requests: int = 0,
    rate: float = 0,
    body: dict[str, object] | None = None,
) -> Load:
    """Post reports to `url` over `connections` keep-alive connections for `seconds`, or until
    `requests` answers; at most `rate` per second if given (each connection pauses
    connections/rate between its requests)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        done = Path(tmp) / "done"
        env = {
            "BENCH_BODY": json.dumps(body or BODY),
            "BENCH_REQUESTS": str(requests),
            "BENCH_DONE_FILE": str(done),
            "BENCH_DELAY_MS": str(int(1000 * connections / rate)) if rate else "0",
        }
        duration = f"{seconds:.0f}s" if not requests else "3600s"
        args = [binary, "-t1", f"-c{connections}", f"-d{duration}", "--timeout", "30s", "-s", str(SCRIPT), url]
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        if requests:
            # wrk waits out --duration even after its thread stopped: interrupt it once the file appears.
            while not done.exists() and process.poll() is None:
                time.sleep(0.005)
            elapsed = time.perf_counter() - start
            process.send_signal(signal.SIGINT)
        out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"wrk failed ({process.returncode}): {out[-2000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    return Load(
        seconds=elapsed if requests else figures["duration_us"] / 1e6,
        requests=figures["requests"],
        accepted=figures["accepted"],
        refused=figures["refused"],
        socket_errors=figures["socket_errors"],
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
    )
