"""What the image and the compose file run, run outside containers (there is no container engine
here): the Dockerfile's build stage and the compose file's setup job and services, read from the
files themselves, so that this test follows them when they change.

The image: the build stage's COPY lines are copied from the checkout into a build context of the
test's own (only what they copy: nothing else of the checkout reaches the wheel), a wheel is
built from it (what `pip install /src` builds), and the build stage's RUN line runs as written
(`python -m venv ... && .../pip install ...`), with the wheel where it names `/src`. Everything
after that runs from the console scripts of that fresh virtual environment, in a working
directory outside the checkout, with an environment made only of the image's ENV and the compose
file's `environment:` (nothing of the test runner's: no PYTHONPATH, no VIRTUAL_ENV); the test
checks that every package is imported from the new environment and that the running services
map no file of the checkout.

The compose file: its setup job's entrypoint (`gridcall migrate && gridcall topics`) runs once
on the compose environment, then every service built from the image starts with the image's
ENTRYPOINT and its `command:` and environment, and answers its health check's path (`/readyz`)
with 200. One case then goes the whole loop through them: a resident's report at intake, the
ticket at departments, claimed and resolved by the unit's handler (enrolled with `gridcall staff
add`, as an operator would run it in the departments container), the case resolved on the
resident's tracking endpoint and the resident told by the notifier (whose list is read with an
ops token from `gridcall token issue --ops`). Every process gets SIGTERM at the end and has the
compose file's `stop_grace_period` to exit before it is killed; on a failure their logs are
printed.

Substituted, because it must differ outside containers, and nothing else:

- hostnames of the compose network: a database URL on the compose's PostgreSQL service becomes a
  scratch database on the local server (one per database the compose environment names; user
  `postgres`, trust auth, where the compose has its own `gridcall` user), and the Kafka service's
  `host:port` in GRIDCALL_KAFKA_BOOTSTRAP_SERVERS becomes a fresh broker started for this test
  (as the compose stack's broker is its own and empty);
- GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE becomes false when that broker is the tests' Tansu, which has
  no idempotent producers (the compose's Apache Kafka has; gridcall refuses to start otherwise);
  with an external broker (KAFKA_BOOTSTRAP_SERVERS) the topics get a prefix of this run's own, as
  that broker may hold a previous run's `gridcall.*` topics;
- ports: each service's `--port 8000` (every container has its own port space) becomes a free
  port of the machine;
- paths inside the image: `/opt/gridcall` (the virtual environment) becomes the test's new one,
  `/var/lib/gridcall` (WORKDIR, GRIDCALL_VAR_DIR, the user's home) a directory of the test's,
  and `/src` in the build stage's RUN the wheel;
- GRIDCALL_HOST=0.0.0.0 becomes 127.0.0.1: in a container that address is the container's own
  network, reached through its published ports; outside, it would listen on every interface of
  the machine;
- `${GRIDCALL_SECRET_KEY:?...}`, which the compose file takes from the operator's shell, is the
  test's secret; PATH's `$PATH` is the base image's (`/usr/local/bin:...`), and LANG is C.UTF-8
  as in the base image. The processes run as the test's user, not the image's user 10001.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.support.journey import TEST_SECRET, bearer
from tests.support.servers import Broker, free_port, kafka_broker, kafka_is_tansu, scratch_database
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gridcall", "services", "intake", "dispatcher", "departments", "notifier")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the base image's PATH
OPERATOR = {"GRIDCALL_SECRET_KEY": TEST_SECRET}  # what `make up` takes from the operator's shell

# A point inside grid G32 (community C3): its grid unit U-G32 gets the ticket (tests/e2e/test_journey.py).
REPORT = {
    "category": "noise",
    "description": "Drilling after midnight, building 7",
    "location": {"lat": 30.5151, "lon": 114.3247},
    "contact": {"name": "Zhao Min", "phone": "13800000000"},
}
UNIT = "U-G32"
# The compose environment keeps the production rate limit (120 a minute per client) on residents'
# endpoints: the resident polls their case once a second, as a person (or a page) would.
RESIDENT_POLL = 1.0


# -- the Dockerfile, read as `docker build` reads it ---------------------------------------------


@dataclass
class Stage:
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, kind: str) -> list[str]:
        return [args for k, args in self.instructions if k == kind]

    def last(self, kind: str) -> str:
        found = self.all(kind)
        assert found, f"the stage {self.name!r} has no {kind}"
        return found[-1]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` with the stage's ENV lines applied in order ($VAR expanded as Docker does: from
        the values before the line)."""
        env = dict(base)
        for args in self.all("ENV"):
            words = shlex.split(args)
            pairs = [w.split("=", 1) for w in words] if "=" in words[0] else [[words[0], " ".join(words[1:])]]
            before = dict(env)
            env.update({key: expand(value, before) for key, value in pairs})
        return env


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), value)


def dockerfile() -> list[Stage]:
    stages: list[Stage] = []
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, args = line.partition(" ")
        kind, args = kind.upper(), " ".join(args.split())
        if kind == "FROM":
            words = args.split()
            stages.append(Stage(words[2] if len(words) == 3 and words[1].lower() == "as" else None))
        stages[-1].instructions.append((kind, args))
    return stages


def exec_form(args: str) -> list[str]:
    form = json.loads(args)
    assert isinstance(form, list), f"not in exec form: {args}"
    return [str(a) for a in form]


# -- the compose file, read as `docker compose` reads it -----------------------------------------

INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    ${VAR?error} and $$, from `variables` (the operator's shell)."""

    def one(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m[1] or m[4], m[2], m[3]
        found = variables.get(name)
        missing = found is None or (op is not None and op.startswith(":") and found == "")
        if op and op.endswith("?") and missing:
            raise AssertionError(f"the compose file needs {name}: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return found or ""

    return INTERPOLATION.sub(one, value)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v), OPERATOR) for k, v in env.items()}


def grace_of(service: dict[str, Any]) -> float:
    found = re.fullmatch(r"(\d+)(ms|s|m)", str(service.get("stop_grace_period", "10s")))
    assert found, service.get("stop_grace_period")
    return float(found[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[found[2]]


def readiness_path(service: dict[str, Any]) -> str:
    """The path its health check asks for (the compose's probe of 127.0.0.1:8000 inside the container)."""
    found = re.search(r"http://(?:127\.0\.0\.1|localhost):\d+(/[\w/.-]*)", " ".join(service["healthcheck"]["test"]))
    assert found, service["healthcheck"]
    return found[1]


# -- outside containers --------------------------------------------------------------------------


@dataclass
class Places:
    """Where the test puts what the image and the compose network have: see the module's docstring."""

    venv: Path
    home: Path
    broker: Broker
    databases: dict[str, str]  # a compose database's name -> a scratch database's URL
    pg_hosts: set[str]
    kafka_hosts: set[str]
    hosts: set[str]  # every compose service's name: none may be left in a setting
    topic_prefix: str | None


def substituted_environment(compose_env: dict[str, str], places: Places) -> dict[str, str]:
    env = dict(compose_env)
    for key, value in compose_env.items():
        if value.startswith("postgresql") and urlsplit(value).hostname in places.pg_hosts:
            assert value.startswith("postgresql+asyncpg://"), f"{key}: {value}"
            env[key] = places.databases[urlsplit(value).path.lstrip("/")]
        elif key.endswith("_BOOTSTRAP_SERVERS"):
            assert {s.rsplit(":", 1)[0] for s in value.split(",")} <= places.kafka_hosts, f"{key}: {value}"
            env[key] = places.broker.bootstrap
    if kafka_is_tansu() and "GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE" in env:
        env["GRIDCALL_KAFKA_ENABLE_IDEMPOTENCE"] = "false"
    if places.topic_prefix:
        env["GRIDCALL_TOPIC_PREFIX"] = places.topic_prefix
    for key, value in env.items():
        for host in places.hosts:
            assert not re.search(rf"(^|[/@,]){re.escape(host)}(:|/|,|$)", value), f"{key} still names {host}: {value}"
    return env


def image_environment(runtime: Stage, image_venv: str, image_home: str, places: Places) -> dict[str, str]:
    env = runtime.env({"PATH": IMAGE_PATH, "LANG": "C.UTF-8", "HOME": image_home})
    env = {k: v.replace(image_venv, str(places.venv)).replace(image_home, str(places.home)) for k, v in env.items()}
    if env.get("GRIDCALL_HOST") == "0.0.0.0":
        env["GRIDCALL_HOST"] = "127.0.0.1"
    return env


def with_port(command: list[str], port: int) -> list[str]:
    assert "--port" in command, command
    at = command.index("--port") + 1
    return [*command[:at], str(port), *command[at + 1 :]]


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    port: int
    ready_path: str
    popen: subprocess.Popen[bytes] | None = None
    killed: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def ready(self) -> bool:
        assert self.popen
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before it was ready")
        try:
            return httpx.get(f"{self.url}{self.ready_path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self, lines: int = 150) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all(processes: list[Process], grace: float) -> None:
    """As `docker compose down`: SIGTERM to each, then SIGKILL to those still running after `grace`."""
    running = [p for p in processes if p.popen and p.popen.poll() is None]
    for p in running:
        assert p.popen
        p.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        assert p.popen
        try:
            p.popen.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.killed = True
            p.popen.kill()
            p.popen.wait(10)


@contextmanager
def running(processes: list[Process], grace: float, setup_log: Path) -> Iterator[list[Process]]:
    """The processes started together; stopped at the end however it ends, their logs printed
    when it fails."""
    try:
        for p in processes:
            p.start()
        yield processes
    except BaseException:
        stop_all(processes, grace)
        print(f"===== setup job\n{setup_log.read_text(errors='replace') if setup_log.exists() else ''}")
        for p in processes:
            code = p.popen.returncode if p.popen else None
            print(f"===== {p.name} ({' '.join(p.args)}), exit {code}{', killed' if p.killed else ''}\n{p.tail()}")
        raise
    stop_all(processes, grace)


def mapped_files(pid: int) -> set[str]:
    """The files a process has mapped: its interpreter, and every extension module it loaded."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {parts[5] for line in lines if len(parts := line.split(maxsplit=5)) == 6 and parts[5].startswith("/")}


def install(build: Stage, work: Path) -> tuple[Path, str]:
    """The build stage outside Docker: its build context, the wheel, its RUN line. Returns the
    new virtual environment and the path it has in the image."""
    context = work / "src"
    context.mkdir()
    for args in build.all("COPY"):
        *sources, dest = shlex.split(args)
        assert not any(s.startswith("--") for s in sources), f"a build-stage COPY from elsewhere: {args}"
        for source in sources:
            origin = ROOT / source
            target = context / dest / origin.name if dest.endswith("/") or len(sources) > 1 else context / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                shutil.copy2(origin, target)
    assert build.last("WORKDIR") == "/src", "the wheel's source is where the build stage copies the checkout"

    # The build frontend's environment: the machine's pip settings (its indexes), the stage's ENV,
    # and `python` a Python 3.11 as in python:3.11-slim (this interpreter's base, not a venv's).
    shim = work / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    host = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env = build.env({**host, "PATH": f"{shim}:{IMAGE_PATH}"})
    wheels = work / "wheels"
    run([str(shim / "python"), "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(context)], env, work)
    [wheel] = wheels.glob("gridcall-*.whl")

    [command] = build.all("RUN")
    image_venv = re.search(r"python -m venv (\S+)", command)
    assert image_venv, command
    venv = work / "venv"
    outside = command.replace(image_venv[1], str(venv))
    outside = re.sub(r"(?<![\w/.-])/src(?![\w/.-])", str(wheel), outside)
    run(["sh", "-c", outside], env, work, timeout=600)
    assert (venv / "bin" / "gridcall").is_file()
    return venv, image_venv[1]


def test_the_image_and_the_compose_file_run_outside_containers(pg_admin, tmp_path):
    began = time.monotonic()
    assert not tmp_path.is_relative_to(ROOT)
    stages = dockerfile()
    [build] = [s for s in stages if s.name == "build"]
    runtime = stages[-1]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    setup = compose["setup"]
    ours = {
        name: s
        for name, s in compose.items()
        if s.get("image") == setup["image"] and name != "setup" and not s.get("profiles")
    }
    assert {s["command"][1] for s in ours.values()} == {"intake", "dispatcher", "departments", "notifier"}

    venv, image_venv = install(build, tmp_path)
    [copied] = [a for a in runtime.all("COPY") if a.startswith("--from=build")]
    assert copied.split()[1:] == [image_venv, image_venv], "the runtime runs the build stage's environment"
    image_home = runtime.last("WORKDIR")
    home = tmp_path / "home"
    home.mkdir()
    installed = time.monotonic()

    with ExitStack() as stack:
        compose_envs = {name: environment_of(s) for name, s in {"setup": setup, **ours}.items()}
        pg_hosts = {n for n, s in compose.items() if str(s.get("image", "")).startswith("postgres")}
        kafka_hosts = {n for n, s in compose.items() if "kafka" in str(s.get("image", ""))}
        named = {
            urlsplit(v).path.lstrip("/")
            for env in compose_envs.values()
            for v in env.values()
            if v.startswith("postgresql") and urlsplit(v).hostname in pg_hosts
        }
        assert named, "the compose environment names no database"
        places = Places(
            venv=venv,
            home=home,
            broker=stack.enter_context(kafka_broker()),
            databases={db: stack.enter_context(scratch_database(pg_admin)) for db in sorted(named)},
            pg_hosts=pg_hosts,
            kafka_hosts=kafka_hosts,
            hosts=set(compose),
            topic_prefix=None if kafka_is_tansu() else f"gridcall{uuid.uuid4().hex[:8]}",
        )
        image_env = image_environment(runtime, image_venv, image_home, places)
        assert image_env["PATH"].startswith(f"{venv}/bin:")
        envs = {name: {**image_env, **substituted_environment(env, places)} for name, env in compose_envs.items()}
        entrypoint = exec_form(runtime.last("ENTRYPOINT"))
        gridcall = shutil.which(entrypoint[0], path=image_env["PATH"])
        assert gridcall == str(venv / "bin" / "gridcall"), gridcall

        # Nothing comes from the checkout: every package is the new environment's.
        where = (
            f"import importlib as i, json; print(json.dumps({{p: i.import_module(p).__file__ for p in {PACKAGES}}}))"
        )
        for package, file in json.loads(run(["python", "-c", where], envs["intake"], home)).items():
            assert Path(file).is_relative_to(venv), f"{package} is imported from {file}"

        # The setup job, once, on its own environment; then every service, together.
        setup_log = tmp_path / "setup.log"
        assert "command" not in setup, "the setup job runs its entrypoint alone"
        said = run([str(a) for a in setup["entrypoint"]], envs["setup"], home)
        setup_log.write_text(said)
        assert "schema up to date" in said and "topics with" in said, said
        set_up = time.monotonic()

        logs = tmp_path / "logs"
        logs.mkdir()
        processes = []
        for name, service in ours.items():
            port = free_port()
            args = [gridcall, *entrypoint[1:], *with_port([str(c) for c in service["command"]], port)]
            processes.append(Process(name, args, envs[name], home, logs / f"{name}.log", port, readiness_path(service)))
        grace = max(grace_of(s) for s in ours.values())
        cluster = stack.enter_context(running(processes, grace, setup_log))
        for p in cluster:
            eventually_sync(p.ready, timeout=60, interval=0.2)
        ready = time.monotonic()
        for p in cluster:
            assert p.popen
            from_checkout = {f for f in mapped_files(p.popen.pid) if Path(f).is_relative_to(ROOT)}
            assert not from_checkout, f"{p.name} runs files of the checkout: {sorted(from_checkout)}"
        url = {p.name: p.url for p in cluster}

        # An operator enrols the unit's handler in the departments container, and takes an ops token.
        operator = ["staff", "add", "--name", f"handler of {UNIT}", "--unit", UNIT]
        handler = bearer(run([gridcall, *operator], envs["departments"], home).strip())
        ops = bearer(run([gridcall, "token", "issue", "--ops", "--name", "e2e"], envs["dispatcher"], home).strip())

        with (
            httpx.Client(base_url=url["intake"], timeout=10) as intake,
            httpx.Client(base_url=url["departments"], timeout=10) as departments,
            httpx.Client(base_url=url["notifier"], timeout=10) as notifier,
        ):
            r = intake.post("/v1/reports", json=REPORT)
            assert r.status_code == 202, r.text
            case = r.json()

            def tracked(status: str) -> dict[str, Any] | None:
                r = intake.get(f"/v1/cases/{case['case_id']}", headers={"X-Tracking-Token": case["tracking_token"]})
                assert r.status_code == 200, r.text
                return r.json() if r.json()["status"] == status else None

            view = eventually_sync(lambda: tracked("assigned"), timeout=60, interval=RESIDENT_POLL)
            assert (view["tier"], view["unit_id"]) == ("grid", UNIT)

            def ticket() -> dict[str, Any] | None:
                r = departments.get(f"/v1/units/{UNIT}/tickets", headers=handler, params={"limit": 200})
                assert r.status_code == 200, r.text
                return next((t for t in r.json()["tickets"] if t["case_id"] == case["case_id"]), None)

            found = eventually_sync(ticket, timeout=60, interval=0.2)
            assert found["description"] == REPORT["description"]
            r = departments.post(f"/v1/tickets/{found['ticket_id']}/claim", headers=handler)
            assert r.status_code == 200, r.text
            r = departments.post(f"/v1/tickets/{found['ticket_id']}/resolve", headers=handler, json={"note": "Stopped"})
            assert r.status_code == 200, r.text

            view = eventually_sync(lambda: tracked("resolved"), timeout=60, interval=RESIDENT_POLL)
            assert [e["type"] for e in view["timeline"]] == ["received", "assigned", "claimed", "resolved"]

            def told() -> list[str] | None:
                r = notifier.get("/v1/notifications", params={"case_id": case["case_id"]}, headers=ops)
                assert r.status_code == 200, r.text
                kinds = [n["kind"] for n in r.json() if n["audience"] == "resident"]
                return kinds if "case.resolved" in kinds else None

            eventually_sync(told, timeout=30, interval=0.2)
        driven = time.monotonic()

    stopped = time.monotonic()
    assert not [p.name for p in cluster if p.killed], "a service did not stop within the stop_grace_period"
    print(
        f"installed {installed - began:.1f}s, set up {set_up - installed:.1f}s, ready {ready - set_up:.1f}s, "
        f"case {driven - ready:.1f}s, stopped {stopped - driven:.1f}s"
    )
