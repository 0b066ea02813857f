"""Liveness apart from readiness, the way an orchestrator asks.

`/livez`: the process answers; it touches no dependency, since a database outage that made
every replica "dead" would turn into a restart storm. `/readyz`: the process can do its work
now: its database answers, its tables are at their migrations' head, the bus answers, and its
relay is not stuck (the oldest outbox row is younger than `GRIDCALL_READY_OUTBOX_AGE`); a 503
names each thing missing, so the operator knows what to fix."""

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from services.messaging.bus import Bus
from services.runtime.context import ServiceParts
from services.runtime.retry import describe
from services.storage.db import Database

CHECK_SECONDS = 2.0


class Alive(BaseModel):
    status: str = Field("alive", description="the process answers; no dependency was asked")


class Readiness(BaseModel):
    status: str = Field(description="ready, or not ready")
    failing: dict[str, str] = Field(description="what is missing, by check: database, migrations, bus, relay")


async def failing(
    db: Database, bus: Bus, parts: Sequence[ServiceParts], heads: Mapping[str, frozenset[str]], outbox_age: float
) -> dict[str, str]:
    """What keeps this process from its work now, by check; empty when it is ready."""
    problems: dict[str, str] = {}
    try:
        async with asyncio.timeout(CHECK_SECONDS), db.sessions() as s:
            await s.execute(text("SELECT 1"))
            found = set((await s.scalars(text("SELECT version_num FROM alembic_version"))).all())
            behind = sorted(head for p in parts for head in heads.get(p.name, ()) if head not in found)
            if behind:
                problems["migrations"] = f"not at {', '.join(behind)}: run gridcall migrate"
            for p in parts:
                oldest = (await s.execute(select(func.min(p.store.outbox.c.created_at)))).scalar()
                waited = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
                if waited > outbox_age:
                    problems["relay"] = f"{p.name}'s oldest outbox row has waited {waited:.0f} s for the bus"
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        problems["database"] = f"not answering: {describe(exc)}"
    if (bus_problem := await bus.unready()) is not None:
        problems["bus"] = bus_problem
    return problems
