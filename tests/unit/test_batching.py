"""The flat-combining batcher behind unary Decide: batches form under load, every caller gets
its own result, one bad request fails alone, and nothing wedges."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from engine.server.batching import Combiner


def _run_concurrently(combiner: Combiner, requests: list[int]) -> dict[int, object]:
    results: dict[int, object] = {}
    start = threading.Barrier(len(requests))

    def call(r: int) -> None:
        start.wait()
        try:
            results[r] = combiner.submit(r)
        except Exception as exc:
            results[r] = exc

    threads = [threading.Thread(target=call, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive(), "a caller hangs"
    return results


def test_concurrent_requests_are_batched_and_answered_each() -> None:
    sizes: list[int] = []

    def process(batch: Sequence[int]) -> list[int]:
        sizes.append(len(batch))
        time.sleep(0.01)  # work: let the queue fill meanwhile
        return [r * 10 for r in batch]

    combiner = Combiner(process, max_batch=100)
    results = _run_concurrently(combiner, list(range(40)))
    assert results == {r: r * 10 for r in range(40)}
    assert max(sizes) > 1  # batches formed
    assert sum(sizes) == 40


def test_max_batch_is_respected() -> None:
    sizes: list[int] = []

    def process(batch: Sequence[int]) -> list[int]:
        sizes.append(len(batch))
        time.sleep(0.005)
        return list(batch)

    _run_concurrently(Combiner(process, max_batch=3), list(range(20)))
    assert max(sizes) <= 3


def test_a_bad_request_fails_alone_and_nothing_wedges() -> None:
    def process(batch: Sequence[int]) -> list[int]:
        time.sleep(0.005)
        if 13 in batch:
            raise ValueError("13 is bad")
        return [r + 1 for r in batch]

    combiner = Combiner(process, max_batch=100)
    results = _run_concurrently(combiner, list(range(30)))
    assert isinstance(results[13], ValueError)
    assert all(results[r] == r + 1 for r in range(30) if r != 13)
    assert combiner.submit(5) == 6  # still serving


def test_per_request_errors_are_returned_to_their_callers() -> None:
    def process(batch: Sequence[int]) -> list[object]:
        return [KeyError(r) if r % 2 else r for r in batch]

    combiner = Combiner(process, max_batch=10)
    assert combiner.submit(2) == 2
    with pytest.raises(KeyError):
        combiner.submit(3)


def test_a_broken_process_never_leaves_callers_hanging() -> None:
    def process(batch: Sequence[int]) -> list[int]:
        return []  # wrong length

    combiner = Combiner(process, max_batch=10)
    results = _run_concurrently(combiner, list(range(8)))
    assert all(isinstance(v, Exception) for v in results.values())
    assert not combiner._busy and not combiner._queue
