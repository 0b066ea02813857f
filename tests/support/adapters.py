"""A district with department adapters: the demo district, with an adapter added to some units."""

from pathlib import Path
from typing import Any

import yaml

from services.settings import DATA_DIR


def district_with_adapters(path: Path, adapters: dict[str, dict[str, Any]]) -> Path:
    """The demo district written to `path`, with `adapters` ({unit id: adapter}) on those units."""
    district = yaml.safe_load((DATA_DIR / "district.yaml").read_text(encoding="utf-8"))
    units = {u["id"]: u for u in district["units"]}
    for unit_id, adapter in adapters.items():
        units[unit_id]["adapter"] = adapter
    path.write_text(yaml.safe_dump(district, allow_unicode=True), encoding="utf-8")
    return path


def secret_env(unit_id: str) -> str:
    return "GRIDCALL_ADAPTER_SECRET_" + unit_id.replace("-", "_")
