"""CPU per record on the event path, in one process, no database or broker:
- wrap+encode: `Envelope.wrap(event).encode()` for N events, as `Tx.emit` and the outbox do;
- skip: `Consumer.handle_batch` on N records of a type the consumer has no handler for
  (what the notifier, intake and the dispatcher do with most of the cases topic).

Run: .venv/bin/python -m bench.event_path [-n 10000]
"""

import argparse
import asyncio
import time
from datetime import UTC, datetime

from services.district.events import CaseAssigned, CaseReported, Location, Stream
from services.messaging.bus import Record
from services.messaging.consumer import Consumer
from services.messaging.envelope import Envelope

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _events(n: int) -> list[CaseReported]:
    where = Location(lat=30.505, lon=114.305)
    return [
        CaseReported(
            case_id=f"c-{i}", category="garbage", description="bags by the gate", location=where, grid_id="G11"
        )
        for i in range(n)
    ]


class _Store:
    """Enough of a Store for a batch that never reaches the database."""

    def topic(self, stream: Stream) -> str:
        return stream.value


async def _noop(tx, envelope, event) -> None:  # type: ignore[no-untyped-def]
    raise AssertionError("not reached")


def _records(events: list[CaseReported], headers: bool) -> list[Record]:
    out = []
    for n, e in enumerate(events):
        env = Envelope.wrap(e, source="/intake", time=NOW)
        out.append(Record("cases", 0, n, e.case_id, env.encode(), {"ce_type": env.type} if headers else {}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    events = _events(args.n)
    best = min(
        _time(lambda: [Envelope.wrap(e, source="/intake", time=NOW).encode() for e in events])
        for _ in range(args.rounds)
    )
    print(f"wrap+encode: {best / args.n * 1e6:.2f} µs/event ({args.n} events, best of {args.rounds})")
    consumer = Consumer("bench", _Store(), None, {CaseAssigned: _noop}, [Stream.CASES])  # type: ignore[arg-type]
    for headers in (False, True):
        records = _records(events[: args.batch], headers)
        best = min(asyncio.run(_time_batch(consumer, records)) for _ in range(args.rounds))
        label = "with ce_type header" if headers else "without header"
        print(
            f"handle_batch, unhandled type, {label}: {best / len(records) * 1e6:.2f} µs/record ({len(records)} records)"
        )


async def _time_batch(consumer: Consumer, records: list[Record]) -> float:
    start = time.process_time()
    assert await consumer.handle_batch(records)
    return time.process_time() - start


def _time(work) -> float:  # type: ignore[no-untyped-def]
    start = time.process_time()
    work()
    return time.process_time() - start


if __name__ == "__main__":
    main()
