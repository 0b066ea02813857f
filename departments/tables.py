from sqlalchemy import JSON, BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from services.delivery.tables import delivery_table
from services.messaging.tables import deadletter_table, inbox_table, outbox_table
from services.storage.db import UtcDateTime

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
    Column("lat", Float),  # where the resident reported it (none on a ticket opened before it was kept)
    Column("lon", Float),
    Column("status", String(16), nullable=False),
    Column("claimed_by", String(200)),  # the claimer's name, as it was when they claimed
    Column("claimed_by_id", String(64)),  # … and their staff account
    Column("resolved_by", String(200)),
    Column("resolved_by_id", String(64)),
    Column("note", Text),  # the result, for the resident
    Column("response_due", UtcDateTime(), nullable=False),
    Column("resolution_due", UtcDateTime(), nullable=False),
    # The clock the queue sorts by: the response limit while open, the resolution limit after.
    Column("due_at", UtcDateTime(), nullable=False),
    Column("arrived_because", Text),  # why the case came to this unit (escalation, return, whistle, reopening)
    Column("handover_reason", Text),  # why it left
    Column("created_at", UtcDateTime(), nullable=False),
    Column("claimed_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    Column("closed_at", UtcDateTime()),
    Index("ix_departments_tickets_unit_status", "unit_id", "status"),
    Index("ix_departments_tickets_unit_due", "unit_id", "due_at", "ticket_id"),
    Index("ix_departments_tickets_case", "case_id"),
    Index("ix_departments_tickets_holder", "claimed_by_id", "due_at", "ticket_id"),  # "my tickets"
)

# People: a staff account belongs to one unit (a pool's members are accounts of the pool's
# unit); its token names it, and a revoked account's tokens are refused on the next request.
staff = Table(
    "departments_staff",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("unit_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # handler | supervisor
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),
    # How the notifier reaches the person about the tickets they hold (services/district/events.py: Reach)
    Column("email", String(254)),
    Column("phone", String(32)),
    Column("language", String(8), nullable=False, server_default="zh-CN"),
    Column("channels", String(32), nullable=False, server_default=""),  # the chosen ones, space-separated
    UniqueConstraint("unit_id", "name", name="uq_departments_staff_unit_name"),
)

# Notes (internal or public) and evidence links, each with who wrote it and when.
notes = Table(
    "departments_notes",
    metadata,
    Column("note_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ticket_id", String(64), nullable=False),
    Column("case_id", String(64), nullable=False),
    Column("unit_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # internal | public | evidence
    Column("text", Text, nullable=False),  # the note, or the evidence's caption
    Column("url", Text),
    Column("by_id", String(64), nullable=False),
    Column("by_name", String(200), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_departments_notes_ticket", "ticket_id"),
    Index("ix_departments_notes_case", "case_id"),
)

# The resident's call-back details, per case, from the report; shown to the handling unit only.
contacts = Table(
    "departments_contacts",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("contact", JSON, nullable=False),
)

# Assignments on their way to a unit's own system by webhook: written with the ticket, sent after
# commit by the kernel's delivery worker (services/delivery/worker.py, one lane per unit), in id
# order per unit and case (sequence "<unit>/<case>"), retried until dead.
deliveries = delivery_table(metadata, "departments")

# A unit's adapter that its system switched off (an answer 410 Gone): its deliveries wait
# until ops enable it again. No row: enabled.
adapters = Table(
    "departments_adapters",
    metadata,
    Column("unit_id", String(64), primary_key=True),
    Column("disabled_at", UtcDateTime()),
    Column("disabled_because", Text),
)

outbox = outbox_table(metadata, "departments")
inbox = inbox_table(metadata, "departments")
deadletters = deadletter_table(metadata, "departments")
