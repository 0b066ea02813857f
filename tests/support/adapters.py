"""Department adapters in tests: a copy of the demo district with adapters (or units' notify
blocks) configured, and requests and records signed as a department's system would sign them,
with the reference Standard Webhooks library from PyPI (not gridcall's own signing code)."""

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from standardwebhooks import Webhook

from services.runtime.settings import DATA_DIR

# Where a test district's webhook adapters point when the test needs no department: nothing
# listens there (port 9, discard).
NOWHERE = "http://127.0.0.1:9/hook"


def district_with_adapters(path: Path, adapters: dict[str, dict[str, Any]]) -> Path:
    """The demo district written to `path`, with `adapters` ({unit id: adapter}) on those units."""
    return district_with(path, "adapter", adapters)


def district_with_notify(path: Path, notify: dict[str, dict[str, Any]]) -> Path:
    """The demo district written to `path`, with `notify` blocks ({unit id: {"email": ...}}) on those units."""
    return district_with(path, "notify", notify)


def district_with(path: Path, field: str, per_unit: dict[str, dict[str, Any]]) -> Path:
    """The demo district written to `path`, with `field` set on the units of `per_unit` to their value."""
    district = yaml.safe_load((DATA_DIR / "district.yaml").read_text(encoding="utf-8"))
    units = {u["id"]: u for u in district["units"]}
    assert set(per_unit) <= set(units), f"not units of the demo district: {set(per_unit) - set(units)}"
    for unit_id, value in per_unit.items():
        units[unit_id][field] = value
    path.write_text(yaml.safe_dump(district, allow_unicode=True), encoding="utf-8")
    return path


def secret_env(unit_id: str) -> str:
    return "GRIDCALL_ADAPTER_SECRET_" + unit_id.replace("-", "_")


def signed(secret: str, body: bytes, at: datetime, msg_id: str | None = None) -> dict[str, str]:
    """Standard Webhooks headers for `body`, as the reference library signs it."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


def update(ticket_id: str, kind: str, **fields: Any) -> bytes:
    return json.dumps({"ticket_id": ticket_id, "type": kind, "handler": "王工", **fields}, ensure_ascii=False).encode()
