"""The deliveries table's one shape (each service keeps its own, `<prefix>_deliveries`) and
the states a delivery goes through.

    created ──claim──▶ sending ──▶ delivered
       ▲                  │ ├────▶ temporary-failure ──(its time comes)──▶ sending …
       │                  │ ├────▶ permanent-failure        (never retried by itself)
       └────(re-drive)────┘ └────▶ dead                     (out of retries; ops re-drive)
    suppressed: written but never sent, on purpose (a duplicate, unsubscribed), with the reason

A row in `created` whose `next_attempt_at` is ahead is held (quiet hours): `reason` says so.
A row in `sending` is leased by a worker until `next_attempt_at`, or (a channel with receipts,
after an ambiguous answer) waits for its receipt until then. A row in a FINISHED state has as
its `next_attempt_at` the time it finished, on the service's clock (the worker's outcome, a
receipt, an unsubscribe write it): its retention counts from there (`retention`)."""

from collections.abc import Collection
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    text,
)

from services.storage.db import UtcDateTime
from services.storage.pruning import Horizon


class State(StrEnum):
    CREATED = "created"
    SENDING = "sending"
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"
    PERMANENT_FAILURE = "permanent-failure"
    DEAD = "dead"
    SUPPRESSED = "suppressed"


FINISHED = frozenset({State.DELIVERED, State.PERMANENT_FAILURE, State.SUPPRESSED})  # nothing more will happen
REDRIVABLE = frozenset({State.DEAD, State.PERMANENT_FAILURE})
# A row in one of these holds the later rows of its sequence back (a dead one until it is re-driven).
UNFINISHED = frozenset({State.CREATED, State.SENDING, State.TEMPORARY_FAILURE, State.DEAD})


# The states a worker claims rows in; the index above covers them, and the worker's queries name
# them as literals (`waiting()`), so the planner can prove the index applies whatever the plan.
WAITING_STATES = (State.CREATED, State.SENDING, State.TEMPORARY_FAILURE)
WAITING = text("state IN ({})".format(", ".join(f"'{s.value}'" for s in WAITING_STATES)))


def waiting(column: ColumnElement[str], states: Collection[State]) -> ColumnElement[bool]:
    """`column IN (states)`, the states written into the statement (constants, not parameters),
    after the index's own term: SQLite uses a partial index only where the query repeats its
    WHERE term as it is (PostgreSQL proves the narrower list implies it)."""
    assert set(states) <= set(WAITING_STATES), states

    def listed(values: Collection[State]) -> ColumnElement[bool]:
        return column.in_(bindparam(None, [s.value for s in values], literal_execute=True))

    return and_(listed(WAITING_STATES), listed(sorted(states)))


def retention(table: Table, keep: timedelta) -> Horizon:
    """What the pruner deletes of a deliveries table: the rows nothing more will happen to
    (delivered, failed for good, suppressed) `keep` after they finished, by the index on
    (state, next_attempt_at). Never a row on its way, and never a dead one, however old: it
    holds the later rows of its sequence back until ops re-drive it, and deleting it would let
    them go out of order. A permanent failure may still be re-driven by ops within `keep`."""
    return Horizon(table, table.c.next_attempt_at, keep, where=table.c.state.in_(sorted(FINISHED)))


def delivery_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}_deliveries",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        # The message's own id, derived from what made it (event, recipient, channel): a redelivered
        # event or a second replica writes the same id, and the unique key keeps one row. It is
        # also the id the receiver sees: webhook-id, the Message-ID's local part, the SMS out-id.
        Column("msg_id", String(64), nullable=False),
        Column("channel", String(16), nullable=False),  # webhook | email | sms | log
        Column("destination", String(320), nullable=False),  # a unit id, an email address, a phone number
        Column("case_id", String(64)),
        # Rows of one sequence are sent in id order: none while an earlier one is unfinished
        # (created, sending, temporary-failure or dead). NULL: no order to keep.
        Column("sequence", String(200)),
        Column("kind", String(64), nullable=False),  # what it says: an event type, a message kind
        Column("body", Text, nullable=False),  # exactly what the sender sends (JSON)
        Column("state", String(24), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", UtcDateTime(), nullable=False),
        Column("reason", Text),  # the last error, or why it is held or suppressed
        Column("last_status", Integer),  # the receiver's last answer (HTTP or SMTP code)
        Column("provider_ref", String(128)),  # the provider's id for it (an SMS gateway's BizId)
        Column("ref", String(64)),  # the service's own record it belongs to (the notifier's notification)
        Column("created_at", UtcDateTime(), nullable=False),
        Column("delivered_at", UtcDateTime()),
        UniqueConstraint("msg_id", name=f"uq_{prefix}_deliveries_msg_id"),
        Index(f"ix_{prefix}_deliveries_due", "state", "next_attempt_at"),
        # What a worker claims from, soonest due first: only the rows still to send, however many were
        # sent before (without it PostgreSQL may walk the primary key past every delivered row).
        Index(
            f"ix_{prefix}_deliveries_waiting",
            "channel",
            "next_attempt_at",
            "id",
            postgresql_where=WAITING,
            sqlite_where=WAITING,
        ),
        Index(f"ix_{prefix}_deliveries_sequence", "sequence", "id"),
        Index(f"ix_{prefix}_deliveries_case", "case_id"),
        Index(f"ix_{prefix}_deliveries_provider_ref", "provider_ref"),  # a receipt names the provider's id
    )
