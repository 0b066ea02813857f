"""API keys for client apps and hotline consoles: Open311 POSTs need one, and a request that
carries a valid key is rate-limited per key instead of per IP address. Only SHA-256 hashes
are stored; `gridcall open311-key create NAME` prints a key once."""

import hashlib
import secrets
import time

from sqlalchemy import delete, func, select

from intake.tables import open311_keys
from services.district.clock import Clock
from services.storage.db import Database


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(db: Database, clock: Clock, name: str) -> str:
    """A new API key; only its hash is stored, so print it now."""
    key = secrets.token_urlsafe(24)
    async with db.transaction() as s:
        if await s.scalar(select(func.count()).where(open311_keys.c.name == name)):
            raise ValueError(f"an API key named {name!r} exists already; pick another name, or revoke it first")
        await s.execute(open311_keys.insert().values(key_hash=key_hash(key), name=name, created_at=clock.now()))
    return key


async def revoke_api_key(db: Database, name: str) -> bool:
    """Stop accepting the named key and free its name; False if there is no such key."""
    async with db.transaction() as s:
        gone = await s.scalar(delete(open311_keys).where(open311_keys.c.name == name).returning(open311_keys.c.name))
    return gone is not None


class ApiKeys:
    """Checks keys against the table. `valid` answers from the table every time (a revoked key
    stops at once); `known` may answer from a minute-old memory, for rate limiting."""

    def __init__(self, db: Database, remember: float = 60.0) -> None:
        self.db = db
        self.remember = remember
        self._known: dict[str, float] = {}  # hash -> until when it is taken as valid; valid keys only

    async def valid(self, key: str | None) -> bool:
        if not key:
            return False
        hashed = key_hash(key)
        async with self.db.sessions() as s:
            found = await s.scalar(select(func.count()).where(open311_keys.c.key_hash == hashed))
        if found:
            self._known[hashed] = time.monotonic() + self.remember
        return bool(found)

    async def known(self, key: str) -> bool:
        until = self._known.get(key_hash(key))
        return (until is not None and until > time.monotonic()) or await self.valid(key)
