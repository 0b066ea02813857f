from sqlalchemy import Column, MetaData, String, Table, Text

from services.db import UtcDateTime
from services.messaging import inbox_table, outbox_table

metadata = MetaData()

cases = Table(
    "dispatcher_cases",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("category", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("grid_id", String(64), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("unit_id", String(64), nullable=False, index=True),
    Column("assignment_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

assignments = Table(
    "dispatcher_assignments",
    metadata,
    Column("assignment_id", String(64), primary_key=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("unit_id", String(64), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("assigned_at", UtcDateTime(), nullable=False),
    Column("claimed_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    Column("note", Text),
)

outbox = outbox_table(metadata, "dispatcher")
inbox = inbox_table(metadata, "dispatcher")
