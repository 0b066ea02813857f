"""Department adapters in tests: a copy of the demo district with adapters configured, and
requests and records signed as a department's system would sign them, with the reference
Standard Webhooks library from PyPI (not gridcall's own signing code)."""

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from standardwebhooks import Webhook

from services.settings import DATA_DIR

# Where a test district's webhook adapters point: nothing listens there (port 9, discard).
NOWHERE = "http://127.0.0.1:9/hook"


def district_with_adapters(directory: Path, adapters: dict[str, dict[str, Any]]) -> Path:
    """The demo district file with `adapters` ({unit_id: adapter}) set on those units."""
    district = yaml.safe_load((DATA_DIR / "district.yaml").read_text(encoding="utf-8"))
    found = set()
    for unit in district["units"]:
        if unit["id"] in adapters:
            unit["adapter"] = adapters[unit["id"]]
            found.add(unit["id"])
    assert found == set(adapters), f"not units of the demo district: {set(adapters) - found}"
    path = directory / "district-with-adapters.yaml"
    path.write_text(yaml.safe_dump(district, allow_unicode=True), encoding="utf-8")
    return path


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
