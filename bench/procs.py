"""What processes cost, read from /proc: CPU seconds (user + system) and peak resident memory."""

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat)


def memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory now (VmRSS) and at its peak (VmHWM), in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def peak_rss_mb(pid: int) -> float:
    return memory_mb(pid).get("VmHWM", 0.0)


def named(name: str) -> list[int]:
    """Every process whose command is `name` (e.g. every PostgreSQL backend)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return pids


class CpuMeter:
    """CPU used by a set of processes, and by every PostgreSQL process, between start() and
    stop(). PostgreSQL backends are listed at both ends, so connections opened during the run
    count too (one that opens and closes inside the run is missed: the services pool theirs)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.postgres_before: dict[int, float] = {}

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.postgres_before = {pid: cpu_seconds(pid) for pid in named("postgres")}

    def stop(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}
        postgres = {pid: cpu_seconds(pid) for pid in named("postgres")}
        used["postgres"] = sum(t - self.postgres_before.get(pid, 0.0) for pid, t in postgres.items())
        return used
