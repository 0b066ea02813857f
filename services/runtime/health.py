"""Liveness apart from readiness, the way an orchestrator asks.

`/livez`: the process answers; it touches no dependency, since a database outage that made
every replica "dead" would turn into a restart storm. `/readyz`: the process can serve its
requests now: its database answers and its tables are at its migrations' head (or ahead of it:
a newer release migrated them while this one still runs). A 503 names what is missing.

The bus and the relay are reported beside, as `degraded`, and do not make a process unready: a
broker outage would otherwise empty every Service at once, while intake still accepts reports
durably (its outbox holds them) and the consumers' pages still answer from their databases."""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from services.messaging.bus import Bus
from services.runtime.context import ServiceParts
from services.runtime.retry import describe
from services.storage.db import Database

CHECK_SECONDS = 2.0  # for all the checks together, within a probe's usual 3 s timeout


@dataclass(frozen=True)
class Schema:
    """A service's migrations as this release knows them: the heads its tables must reach, and
    every revision it knows (a revision it does not know is a newer release's: ahead, not behind)."""

    heads: frozenset[str]
    known: frozenset[str]


class Alive(BaseModel):
    status: str = Field("alive", description="the process answers; no dependency was asked")


class Readiness(BaseModel):
    status: str = Field(description="ready, or not ready")
    failing: dict[str, str] = Field(description="what keeps it from serving, by check: database, migrations, draining")
    degraded: dict[str, str] = Field(
        default_factory=dict, description="what is wrong without making it unready, by check: bus, relay"
    )


async def readiness(
    db: Database, bus: Bus, parts: Sequence[ServiceParts], schemas: Mapping[str, Schema], outbox_age: float
) -> tuple[dict[str, str], dict[str, str]]:
    """(failing, degraded): what keeps this process from serving now, and what is wrong beside;
    the database and the bus are asked at once, within CHECK_SECONDS."""
    failing: dict[str, str] = {}
    degraded: dict[str, str] = {}

    async def database() -> None:
        try:
            async with asyncio.timeout(CHECK_SECONDS), db.sessions() as s:
                found = set((await s.scalars(text("SELECT version_num FROM alembic_version"))).all())
                behind = sorted(
                    head
                    for p in parts
                    if (schema := schemas.get(p.name)) is not None and not _ahead(found, schema, p.name)
                    for head in schema.heads
                    if head not in found
                )
                if behind:
                    failing["migrations"] = f"not at {', '.join(behind)}: run gridcall migrate"
                for p in parts:
                    oldest = (await s.execute(select(func.min(p.store.outbox.c.created_at)))).scalar()
                    waited = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
                    if waited > outbox_age:
                        degraded["relay"] = f"{p.name}'s oldest outbox row has waited {waited:.0f} s for the bus"
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            failing["database"] = f"not answering: {describe(exc)}"

    async def broker() -> None:
        if (problem := await bus.unready()) is not None:
            degraded["bus"] = problem

    await asyncio.gather(database(), broker())
    return failing, degraded


def _ahead(found: set[str], schema: Schema, service: str) -> bool:
    """The service's tables carry a revision this release does not know: a newer one's."""
    return any(r.startswith(f"{service}_") and r not in schema.known for r in found)
