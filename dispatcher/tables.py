from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from services.messaging.tables import deadletter_table, inbox_table, outbox_table
from services.storage.db import UtcDateTime

metadata = MetaData()


def only(condition: str) -> dict[str, Any]:
    """A partial index's condition, on both databases. The queries that should use one state its
    condition with the same constants in the SQL text (`services.storage.db.fixed`), not as bound
    parameters, which a generic plan cannot match to it."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


# jsonb on PostgreSQL: the figures read fields of a year's history, which json parses row by row
DETAILS = JSON().with_variant(JSONB(), "postgresql")

cases = Table(
    "dispatcher_cases",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("category", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("grid_id", String(64), nullable=False),
    Column("community_id", String(64), nullable=False),
    Column("street_id", String(64), nullable=False),
    Column("lat", Float),  # where the case is: routes it to the compound's property company
    Column("lon", Float),
    Column("priority", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("unit_id", String(64), nullable=False, index=True),
    Column("returns", Integer, nullable=False),
    Column("supervised", Boolean, nullable=False),
    Column("resolved", Boolean, nullable=False),
    Column("closed", Boolean, nullable=False),
    Column("resolved_by", String(64)),
    Column("resolved_at", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # a window's cases: those still open, and the closed ones touched since it began
    Index("ix_dispatcher_cases_open", "case_id", **only("NOT closed")),
    Index("ix_dispatcher_cases_updated_at", "updated_at"),
)

assignments = Table(
    "dispatcher_assignments",
    metadata,
    Column("assignment_id", String(64), primary_key=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("unit_id", String(64), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("role", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("assigned_at", UtcDateTime(), nullable=False),
    Column("response_due", UtcDateTime(), nullable=False),
    Column("resolution_due", UtcDateTime(), nullable=False),
    Column("response_warn_at", UtcDateTime(), nullable=False),
    Column("resolution_warn_at", UtcDateTime(), nullable=False),
    Column("response_warned", Boolean, nullable=False),
    Column("resolution_warned", Boolean, nullable=False),
    Column("response_breached", Boolean, nullable=False),
    Column("resolution_breached", Boolean, nullable=False),
    Column("next_alert_at", UtcDateTime()),
    Column("alerts", Integer, nullable=False),
    Column("claimed_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    Column("end_reason", String(32)),
    Column("ended_at", UtcDateTime()),
    Column("note", Text),
    # the live ones past a limit (the board, the breach list): a few thousand of millions
    Index("ix_dispatcher_assignments_response_open", "response_due", **only("status = 'open'")),
    Index("ix_dispatcher_assignments_resolution_open", "resolution_due", **only("status IN ('open', 'claimed')")),
)

timers = Table(
    "dispatcher_timers",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(64), nullable=False),
    Column("assignment_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", UtcDateTime()),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    UniqueConstraint("case_id", "assignment_id", "kind", name="uq_dispatcher_timers_case_assignment_kind"),
    Index("ix_dispatcher_timers_due_at", "due_at"),
)

history = Table(
    "dispatcher_history",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(64), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("type", String(64), nullable=False),
    Column("details", DETAILS, nullable=False),
    # a case's history, and the chosen cases' events in a window (rows of a case lie far apart on disk)
    Index("ix_dispatcher_history_case_at", "case_id", "at"),
    Index("ix_dispatcher_history_at", "at", postgresql_using="brin"),  # the figures' windows; rows come in time order
    # the breaches by time (the breach list, the board): a third of the rows, most of them a supervised case's alerts
    Index("ix_dispatcher_history_breaches", "at", "id", **only("type = 'case.sla_breached'")),
)

outbox = outbox_table(metadata, "dispatcher")
inbox = inbox_table(metadata, "dispatcher")
deadletters = deadletter_table(metadata, "dispatcher")
