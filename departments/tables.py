from sqlalchemy import JSON, Column, Index, Integer, MetaData, String, Table, Text

from services.db import UtcDateTime
from services.messaging import deadletter_table, inbox_table, outbox_table

metadata = MetaData()

tickets = Table(
    "departments_tickets",
    metadata,
    Column("ticket_id", String(64), primary_key=True),
    Column("case_id", String(64), nullable=False),
    Column("unit_id", String(64), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("role", String(8), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("category", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("reporters", Integer, nullable=False),
    Column("grid_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("claimed_by", String(200)),
    Column("note", Text),
    Column("response_due", UtcDateTime(), nullable=False),
    Column("resolution_due", UtcDateTime(), nullable=False),
    Column("handover_reason", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("claimed_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    Column("closed_at", UtcDateTime()),
    Index("ix_departments_tickets_unit_status", "unit_id", "status"),
    Index("ix_departments_tickets_case", "case_id"),
)

outbox = outbox_table(metadata, "departments")
inbox = inbox_table(metadata, "departments")
deadletters = deadletter_table(metadata, "departments")
