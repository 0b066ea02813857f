"""Routing policies for tests: the demo policy with some limits of seconds."""

from pathlib import Path
from typing import Any

import yaml

from services.runtime.settings import DATA_DIR


def demo_policy_with(path: Path, limits: dict[str, dict[str, dict[str, str]]]) -> Path:
    """The demo policy written to `path`, with the normal-priority limits of the categories in
    `limits` ({category: {tier: {"response": "4s", "resolution": "1h"}}}) overriding its own;
    every other category and tier keeps the demo limits."""
    raw: dict[str, Any] = yaml.safe_load((DATA_DIR / "policy.yaml").read_text())
    known = {cat["code"] for cat in raw["categories"]}
    assert set(limits) <= known, f"not in the demo policy: {set(limits) - known}"
    for cat in raw["categories"]:
        if cat["code"] in limits:
            cat["sla"] = {"normal": limits[cat["code"]]}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def demo_policy_without_quiet_hours(path: Path) -> Path:
    """The demo policy written to `path` without its quiet hours: residents' messages go at
    once whatever the hour (for processes on the wall clock, which no test can move)."""
    raw: dict[str, Any] = yaml.safe_load((DATA_DIR / "policy.yaml").read_text())
    raw.pop("quiet_hours")
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path
