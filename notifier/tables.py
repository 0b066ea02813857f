from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text

from services.messaging.tables import deadletter_table, inbox_table, outbox_table
from services.storage.db import UtcDateTime

metadata = MetaData()

_id = BigInteger().with_variant(Integer, "sqlite")

notifications = Table(
    "notifier_notifications",
    metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("audience", String(16), nullable=False),
    Column("recipient", String(100), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

deliveries = Table(
    "notifier_deliveries",
    metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("notification_id", _id, ForeignKey("notifier_notifications.id"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_error", Text),
    Column("delivered_at", UtcDateTime()),
    Index("ix_notifier_deliveries_due", "status", "next_attempt_at"),
)

outbox = outbox_table(metadata, "notifier")
inbox = inbox_table(metadata, "notifier")
deadletters = deadletter_table(metadata, "notifier")
