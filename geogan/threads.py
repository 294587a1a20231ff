"""Jobs on a thread pool, results in order: the generator's batches and a texture bank's strips."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Hashable, Iterable, Iterator


def ordered_results(pool: ThreadPoolExecutor, jobs: Iterable[tuple], ahead: int) -> Iterator[tuple[Hashable, object]]:
    """``(key, fn(*args))`` for ``(key, fn, args)`` jobs run on ``pool``, in job order; jobs are drawn (and
    submitted) at most ``ahead + 1`` before their result is yielded, so one waits in the queue while the
    caller works on the last result."""
    pending: deque = deque()
    for key, fn, args in jobs:
        pending.append((key, pool.submit(fn, *args)))
        if len(pending) > ahead:
            key0, future = pending.popleft()
            yield key0, future.result()
    while pending:
        key0, future = pending.popleft()
        yield key0, future.result()
