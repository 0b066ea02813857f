"""Who a client is, behind and without a proxy, with `gridcall run` as a process: the rate
limit counts by the peer's address, and `X-Forwarded-For` changes that only when the peer is a
proxy named in GRIDCALL_TRUSTED_PROXIES (uvicorn's default believes any loopback peer)."""

from pathlib import Path

import httpx
import pytest

from tests.support.cluster import embedded, embedded_env
from tests.support.journey import STREETLIGHT_G11

pytestmark = pytest.mark.e2e


async def statuses(url: str) -> list[int]:
    """Three reports, each claiming to come from another address."""
    body = {**STREETLIGHT_G11, "insist": True}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        answers = [
            await client.post("/v1/reports", json=body, headers={"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(3)
        ]
    return [r.status_code for r in answers]


async def test_a_client_cannot_pick_its_own_address_unless_its_peer_is_a_trusted_proxy(tmp_path: Path):
    env = embedded_env(tmp_path / "direct", GRIDCALL_RATE_LIMIT="2/minute")
    with embedded(env, tmp_path) as gridcall:
        assert await statuses(gridcall.url) == [202, 202, 429]  # all from 127.0.0.1, whatever they say
    behind = embedded_env(tmp_path / "behind", GRIDCALL_RATE_LIMIT="2/minute", GRIDCALL_TRUSTED_PROXIES="127.0.0.1")
    with embedded(behind, tmp_path) as gridcall:
        assert await statuses(gridcall.url) == [202, 202, 202]  # three clients behind the proxy
