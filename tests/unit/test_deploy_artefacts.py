"""The deploy artefacts, validated without a container engine or a cluster: the image's
Dockerfile by hadolint, the compose file by `docker-compose config -q` (Debian's; `make
compose` installs it), the Kubernetes overlays rendered by `kubectl kustomize` and checked
against the Kubernetes schemas (`kubernetes-validate --strict`, offline), and our own rules over
what they say: probes, resources, disruption budgets, replicas within the partitions."""

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.runtime.drain import IN_FLIGHT_SECONDS
from services.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("single-node", "city")
SERVICES = ("intake", "dispatcher", "departments", "notifier")
CONSUMERS = ("dispatcher", "departments", "notifier")  # members of a consumer group: no more than the partitions
KUBERNETES = "1.30.0"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_the_image_passes_hadolint_runs_as_no_root_and_checks_liveness():
    linted = run(str(ROOT / ".venv/bin/hadolint"), "Dockerfile")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2  # built in one stage, run from another
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/livez" in text


@pytest.mark.parametrize("profile", [None, "monitoring"])
def test_the_compose_file_is_valid(profile):
    args = ["docker-compose", *(["--profile", profile] if profile else []), "config", "-q"]
    checked = run(*args, env={"GRIDCALL_SECRET_KEY": "x" * 32})
    assert checked.returncode == 0, checked.stderr


def test_the_compose_file_sets_up_first_checks_readiness_and_scrapes_every_service():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["setup"]["entrypoint"][-1] == "gridcall migrate && gridcall topics"
    ours = {name: s for name, s in compose.items() if s.get("image") == "gridcall:local" and name != "setup"}
    served = [s["command"][1] for s in ours.values()]
    assert sorted(set(served)) == sorted(SERVICES) and served.count("dispatcher") == 2
    made = set(re.findall(r"CREATE DATABASE (\w+);", (ROOT / "deploy/postgres/databases.sql").read_text()))
    env = compose["setup"]["environment"]
    own = {env[f"GRIDCALL_{s.upper()}_DATABASE_URL"].rsplit("/", 1)[1] for s in SERVICES}
    assert own == made and len(own) == len(SERVICES)  # a database per service, each made at the first start
    for name, service in ours.items():
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert seconds(service["stop_grace_period"]) > stopping(service["environment"]), name
        assert service["depends_on"]["setup"] == {"condition": "service_completed_successfully"}, name
    scraped = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for c in scraped["scrape_configs"] for s in c["static_configs"] for t in s["targets"]}
    assert targets == {f"{name}:8000" for name in ours}


def stopping(settings: dict[str, str]) -> float:
    """The seconds a service may take from SIGTERM to its exit: the drain, the requests in flight
    (uvicorn's graceful timeout, gridcall/cli.py) and the loops' grace."""
    defaults = Settings.model_fields
    drain = float(settings.get("GRIDCALL_SHUTDOWN_DRAIN", defaults["shutdown_drain"].default))
    grace = float(settings.get("GRIDCALL_SHUTDOWN_GRACE", defaults["shutdown_grace"].default))
    return drain + IN_FLIGHT_SECONDS + grace


def seconds(duration: str) -> float:
    """A compose duration such as '40s' or '1m'."""
    return float(duration[:-1]) * {"s": 1, "m": 60}[duration[-1]]


def rendered(overlay: str) -> list[dict[str, Any]]:
    out = run("kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", f"deploy/k8s/overlays/{overlay}")
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_to_objects_the_kubernetes_schemas_accept(overlay):
    objects = rendered(overlay)
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # a custom resource: no schema in Kubernetes' own; our rules below check it
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "Job", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
    assert "ScaledObject" in kinds and "Secret" not in kinds  # the Secret is referenced, never shipped


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_keeps_our_rules(overlay):
    objects = rendered(overlay)
    of = lambda kind: [o for o in objects if o["kind"] == kind]  # noqa: E731
    settings = next(o["data"] for o in of("ConfigMap") if o["metadata"]["name"].startswith("gridcall-settings"))
    partitions = int(settings["GRIDCALL_KAFKA_PARTITIONS"])
    budgets = [p["spec"]["selector"]["matchLabels"] for p in of("PodDisruptionBudget")]
    deployments = {d["spec"]["template"]["spec"]["containers"][0]["args"][1]: d for d in of("Deployment")}
    assert sorted(deployments) == sorted(SERVICES)
    for service, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", service
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", service  # never a dependency
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], service
        assert pod["securityContext"]["runAsNonRoot"] is True, service
        # SIGTERM's drain, the requests in flight and the loops' grace all fit before the SIGKILL.
        assert pod["terminationGracePeriodSeconds"] > stopping(settings), service
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert any(all(labels.get(k) == v for k, v in b.items()) for b in budgets), f"{service} has no PDB"
        if service in CONSUMERS:
            assert d["spec"]["replicas"] <= partitions, service
    [scaled] = of("ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    assert any(h["spec"]["scaleTargetRef"]["name"] == "gridcall-intake" for h in of("HorizontalPodAutoscaler"))
    assert any(not p["spec"].get("ingress") and not p["spec"].get("egress") for p in of("NetworkPolicy"))  # deny
