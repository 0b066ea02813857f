from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

from services.messaging.tables import deadletter_table, inbox_table, outbox_table
from services.storage.db import UtcDateTime
from services.web.ratewindow import rate_window_table

metadata = MetaData()

reports = Table(
    "intake_reports",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("linked", Boolean, nullable=False, doc="a duplicate linked to an open case"),
    Column("category", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("grid_id", String(64), nullable=False),
    Column("details", JSON, nullable=False),
    Column("anonymous", Boolean, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("household_flag", String(16)),
    Column("contact", JSON),
    Column("tracking_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

case_views = Table(
    "intake_case_views",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("category", String(64), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("reporters", Integer, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("tier", String(16)),
    Column("unit_id", String(64)),
    Column("unit_name", String(200)),
    Column("response_due", UtcDateTime()),
    Column("resolution_due", UtcDateTime()),
    Column("satisfaction_answered_at", UtcDateTime()),
    Column("cancel_requested_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime(), doc="the latest resolution; cleared when the case reopens"),
    Column("resolved_unit_id", String(64)),
    Column("result_note", Text, doc="the resolving unit's note, shown to the resident and in 公示"),
    Column("closed_at", UtcDateTime()),
    Column("satisfaction", String(16), doc="satisfied, unsatisfied or no_answer: the latest resolution's visit"),
    Index("ix_intake_case_views_open_nearby", "category", "status", "created_at"),
    Index("ix_intake_case_views_created_at", "created_at"),
    Index("ix_intake_case_views_resolved_at", "resolved_at", "case_id"),
    Column("updated_at", UtcDateTime(), nullable=False),
)

timeline = Table(
    "intake_timeline",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(64), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("type", String(32), nullable=False),
    Column("details", JSON, nullable=False),
    Index("ix_intake_timeline_case_step", "case_id", "id"),  # a case's steps; a step's status in Open311's updates
    Index("ix_intake_timeline_at", "at"),
)

# Staff accounts departments revoked (gridcall.staff.revoked): their tokens flag no household.
revoked_staff = Table(
    "intake_revoked_staff",
    metadata,
    Column("staff_id", String(64), primary_key=True),
    Column("revoked_at", UtcDateTime(), nullable=False),
)

idempotency_keys = Table(
    "intake_idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("case_id", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

open311_keys = Table(
    "intake_open311_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True, doc="SHA-256 of the key; the key itself is shown once"),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

outbox = outbox_table(metadata, "intake")
inbox = inbox_table(metadata, "intake")
deadletters = deadletter_table(metadata, "intake")
# The residents' rate limit, counted together by every intake replica (GRIDCALL_RATE_LIMIT_STORE).
rate_windows = rate_window_table(metadata, "intake")
