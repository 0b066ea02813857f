from sqlalchemy import JSON, BigInteger, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from services.delivery.tables import delivery_table
from services.messaging.tables import deadletter_table, inbox_table, outbox_table
from services.storage.db import UtcDateTime

metadata = MetaData()

_id = BigInteger().with_variant(Integer, "sqlite")

# What the notifier keeps of a case to word later messages.
cases = Table(
    "notifier_cases",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("category", String(64)),
    Column("grid_id", String(64)),
    Column("priority", String(16), nullable=False),
    Column("lead_unit_id", String(64)),
)

# The residents who follow a case (the reporter and those whose reports joined it), with where
# they hear of it. Only the tracking token's hash is kept: with the token a resident proves who
# they are to stop the messages.
followers = Table(
    "notifier_followers",
    metadata,
    Column("report_id", String(64), primary_key=True),
    Column("case_id", String(64), nullable=False, index=True),
    Column("email", String(254)),
    Column("phone", String(32)),
    Column("language", String(8), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("unsubscribed_at", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
)

# Who holds a unit's ticket of a case, and how they chose to be reached (case.holder_changed):
# what is told to the unit of that ticket (and a reopening of the case) is told to them too.
holders = Table(
    "notifier_holders",
    metadata,
    Column("key", String(140), primary_key=True),  # <case id>/<unit id>
    Column("case_id", String(64), nullable=False, index=True),
    Column("unit_id", String(64), nullable=False),
    Column("ticket_id", String(64), nullable=False),
    Column("staff_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("email", String(254)),
    Column("phone", String(32)),
    Column("language", String(8), nullable=False),
    Column("channels", String(32), nullable=False),  # the chosen ones, space-separated
)

# What was told to whom: one row per (event, recipient), in the recipient's language; its
# deliveries (one per channel) carry its key as their `ref`.
notifications = Table(
    "notifier_notifications",
    metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False),
    Column("case_id", String(64), index=True),  # none for a unit's digest
    Column("audience", String(16), nullable=False),
    Column("recipient", String(100), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("language", String(8), nullable=False),
    Column("subject", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("key", name="uq_notifier_notifications_key"),
    Index("ix_notifier_notifications_created_at", "created_at"),  # the pruner's (notifier/bootstrap.py)
)

deliveries = delivery_table(metadata, "notifier")
# A notification's deliveries, which the pruner asks for before it deletes the notification.
Index("ix_notifier_deliveries_ref", deliveries.c.ref)

# New tickets waiting for their unit's digest; `digest_key` is set when the digest is made.
digest_items = Table(
    "notifier_digest_items",
    metadata,
    Column("id", _id, primary_key=True, autoincrement=True),
    Column("unit_id", String(64), nullable=False),
    Column("case_id", String(64), nullable=False),
    Column("facts", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("key", String(64), nullable=False),  # the notice's: a redelivered event adds nothing
    Column("digest_key", String(64)),
    UniqueConstraint("key", name="uq_notifier_digest_items_key"),
    Index("ix_notifier_digest_items_waiting", "unit_id", "digest_key"),
)

outbox = outbox_table(metadata, "notifier")
inbox = inbox_table(metadata, "notifier")
deadletters = deadletter_table(metadata, "notifier")
