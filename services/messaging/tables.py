"""The tables every service has, each named with its service's prefix: its outbox, its inbox
and its dead letters."""

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from services.storage.db import UtcDateTime


def outbox_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_outbox",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False, server_default=func.now()),
    )


def inbox_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("handled_at", UtcDateTime(), nullable=False, server_default=func.now()),
        # the pruner's (services/storage/pruning.py): BRIN, since rows come in time order
        Index(f"ix_{prefix}_inbox_handled_at", "handled_at", postgresql_using="brin"),
    )


def deadletter_table(metadata: MetaData, prefix: str) -> Table:
    """Records a consumer could not handle, kept until ops re-drive them; one row per source
    record, so a redelivered poison record counts another attempt instead of another row."""
    return Table(
        f"{prefix}_deadletters",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("consumer", String(100), nullable=False),
        Column("event_id", String(200), doc="absent when the payload is not a gridcall event"),
        Column("event_type", String(200)),
        Column("case_id", String(200), nullable=False, doc="the event's subject, else the record's key"),
        Column("payload", LargeBinary, nullable=False),
        Column("source_topic", String(200), nullable=False),
        Column("source_partition", Integer, nullable=False),
        Column("source_offset", BigInteger, nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("parked_at", UtcDateTime(), nullable=False),
        UniqueConstraint(
            "consumer", "source_topic", "source_partition", "source_offset", name=f"uq_{prefix}_deadletters_source"
        ),
        Index(f"ix_{prefix}_deadletters_consumer_event", "consumer", "event_id"),
    )


ERROR_LIMIT = 2000


def error_text(error: BaseException) -> str:
    """The error as a column can hold it on any database: NUL-free, truncated."""
    return f"{type(error).__name__}: {error}".replace("\x00", "\\x00")[:ERROR_LIMIT]


def column_text(text: str) -> str:
    return text.replace("\x00", "\\x00")[:200]
