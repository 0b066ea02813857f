"""Group commit: the small writes of many concurrent requests become one transaction.

A request that may be answered only once its write is durable costs a transaction and an
fsync when it writes alone. A `GroupCommit` gives each process one writer: callers `submit`
an item and wait; the writer takes whatever is waiting (up to `max_batch`), hands it to
`apply` (one transaction), and answers every caller once `apply` has returned, that is once
the batch is committed. Durability stays per request; the fsync becomes per batch.

Why a single writer: the items of a batch are applied in the order they were submitted, so
rules that read what an earlier request wrote (the same idempotency key, a duplicate of a
case reported a moment ago) can hold inside a batch as they hold between batches, and the
process's own writes never wait on each other's locks.

Failures:
- `apply` answers each item with its result, or with an exception that is that item's alone
  (a conflict with an earlier request, say); the other items of the batch are committed.
- If `apply` raises, the batch was rolled back. An error that belongs to no item (`shared`:
  by default a transient failure, the database is away) goes to every caller of the batch.
  Any other error (an IntegrityError, say) is some item's: the batch is taken again one item
  per `apply`, so only the culprit gets it, as `Consumer.handle_batch` does with records.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from services.runtime.retry import transient

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Apply = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[T, R]):
    """One writer per process that commits what concurrent callers submit, a batch at a time.

    The writer task starts on the first `submit` in the running loop and ends when nothing
    is waiting; `close` waits for it, so a shutdown finishes the requests it accepted."""

    def __init__(
        self,
        name: str,
        apply: Apply[T, R],
        *,
        max_batch: int = 256,
        linger: float = 0.0,
        shared: Callable[[BaseException], bool] = transient,
    ) -> None:
        self.name = name
        self.apply = apply
        self.max_batch = max_batch
        self.linger = linger
        self.shared = shared
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Apply `item` in the next batch; its result once the batch is committed, or its error."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, answer))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name=f"{self.name}.writer")
        return await answer

    async def close(self) -> None:
        """Wait until everything submitted so far is committed and answered."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                if self.linger and len(self._waiting) < self.max_batch:
                    await asyncio.sleep(self.linger)  # let a few more requests join this batch
                batch = self._take()
                await self._commit(batch)
        finally:
            # Work is left here only if the writer itself failed (a bug, a cancellation): nobody waits forever.
            stopped = RuntimeError(f"{self.name}: the batch writer stopped")
            for _, answer in [*batch, *self._waiting]:
                if not answer.done():
                    answer.set_exception(stopped)
            self._waiting.clear()

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while self._waiting and len(batch) < self.max_batch:
            item, answer = self._waiting.popleft()
            if not answer.cancelled():  # its caller went away before the batch began
                batch.append((item, answer))
        return batch

    async def _commit(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        items = [item for item, _ in batch]
        try:
            outcomes = await self._apply(items)
        except Exception as exc:
            if len(items) == 1 or self.shared(exc):
                outcomes = [exc] * len(items)
            else:
                log.info("%s: a batch of %d failed (%r); taking it one item at a time", self.name, len(items), exc)
                outcomes = [await self._alone(item) for item in items]
        for (_, answer), outcome in zip(batch, outcomes, strict=True):
            if answer.done():
                continue
            if isinstance(outcome, Exception):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)

    async def _apply(self, items: list[T]) -> Sequence[R | Exception]:
        outcomes = await self.apply(items)
        if len(outcomes) != len(items):
            raise RuntimeError(f"{self.name}: apply answered {len(outcomes)} of {len(items)} items")
        return outcomes

    async def _alone(self, item: T) -> R | Exception:
        try:
            return (await self._apply([item]))[0]
        except Exception as exc:
            return exc
