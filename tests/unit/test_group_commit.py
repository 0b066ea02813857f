"""The kernel's group commit (services/storage/batching.py) on its own: what callers submit together is
applied together, in order; each caller gets its own answer or its own error."""

import asyncio
from collections.abc import Sequence

import pytest

from services.storage.batching import GroupCommit


class Recorder:
    """An `apply` that answers each item with its double and records the batches it was given.
    Items named in `refused` get an error of their own; a batch holding one of `poison` fails
    as a whole; `gate`, when given, holds each batch until it is opened."""

    def __init__(self, refused=(), poison=(), gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.refused = set(refused)
        self.poison = set(poison)
        self.gate = gate

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if self.poison & set(items):
            raise ValueError(f"poison among {list(items)}")
        return [LookupError(f"refused {i}") if i in self.refused else 2 * i for i in items]


async def test_what_waits_together_is_applied_together_in_the_order_submitted():
    apply = Recorder()
    commits = GroupCommit("test", apply)
    answers = await asyncio.gather(*(commits.submit(i) for i in range(10)))
    assert answers == [2 * i for i in range(10)]
    assert apply.batches == [list(range(10))]


async def test_a_batch_holds_at_most_max_batch_items_and_what_arrives_meanwhile_forms_the_next():
    gate = asyncio.Event()
    apply = Recorder(gate=gate)
    commits = GroupCommit("test", apply, max_batch=4)
    first = [asyncio.create_task(commits.submit(i)) for i in range(6)]
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(commits.submit(i)) for i in range(6, 9)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*first, *later) == [2 * i for i in range(9)]
    assert apply.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


async def test_an_items_own_error_goes_to_its_caller_only():
    apply = Recorder(refused={2})
    commits = GroupCommit("test", apply)
    answers = await asyncio.gather(*(commits.submit(i) for i in range(4)), return_exceptions=True)
    assert answers[:2] == [0, 2] and answers[3] == 6
    assert isinstance(answers[2], LookupError)
    assert apply.batches == [[0, 1, 2, 3]]


async def test_a_batch_that_fails_because_of_one_item_is_taken_again_one_by_one():
    apply = Recorder(poison={2})
    commits = GroupCommit("test", apply)
    answers = await asyncio.gather(*(commits.submit(i) for i in range(4)), return_exceptions=True)
    assert answers[:2] == [0, 2] and answers[3] == 6
    assert isinstance(answers[2], ValueError)
    assert apply.batches == [[0, 1, 2, 3], [0], [1], [2], [3]]


async def test_a_failure_that_is_no_items_own_goes_to_every_caller_at_once():
    async def database_away(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        raise ConnectionRefusedError("the database is away")

    calls: list[list[int]] = []
    commits = GroupCommit("test", database_away)
    answers = await asyncio.gather(*(commits.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(a, ConnectionRefusedError) for a in answers)
    assert calls == [[0, 1, 2]]


async def test_close_finishes_what_was_submitted():
    gate = asyncio.Event()
    apply = Recorder(gate=gate)
    commits = GroupCommit("test", apply, max_batch=2)
    waiting = [asyncio.create_task(commits.submit(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(commits.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    gate.set()
    await asyncio.wait_for(closing, 5)
    assert all(t.done() for t in waiting)
    assert [t.result() for t in waiting] == [0, 2, 4, 6, 8]


async def test_the_writer_starts_again_after_it_went_idle():
    apply = Recorder()
    commits = GroupCommit("test", apply)
    assert await commits.submit(1) == 2
    await commits.close()
    assert await commits.submit(2) == 4
    assert apply.batches == [[1], [2]]


async def test_an_apply_that_loses_answers_fails_its_callers_instead_of_leaving_them_waiting():
    async def forgetful(items: Sequence[int]) -> list[int | Exception]:
        return [2 * i for i in items[:-1]]

    commits = GroupCommit("test", forgetful)
    answers = await asyncio.wait_for(asyncio.gather(commits.submit(1), return_exceptions=True), 5)
    assert isinstance(answers[0], RuntimeError)


async def test_a_caller_that_went_away_before_its_batch_began_is_not_applied():
    gate = asyncio.Event()
    apply = Recorder(gate=gate)
    commits = GroupCommit("test", apply)
    first = asyncio.create_task(commits.submit(1))
    await asyncio.sleep(0.01)  # the first batch [1] is being applied
    gone = asyncio.create_task(commits.submit(2))
    kept = asyncio.create_task(commits.submit(3))
    await asyncio.sleep(0.01)
    gone.cancel()
    gate.set()
    assert (await first, await kept) == (2, 6)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert apply.batches == [[1], [3]]


async def test_linger_lets_stragglers_join_the_batch():
    apply = Recorder()
    commits = GroupCommit("test", apply, linger=0.05)
    first = asyncio.create_task(commits.submit(1))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(commits.submit(2))
    assert (await first, await second) == (2, 4)
    assert apply.batches == [[1, 2]]
