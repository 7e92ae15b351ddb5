"""The API's snapshot cache: computed once per TTL however many threads ask, the previous picture
served while one thread recomputes, and kept longer when computing is slow."""

from __future__ import annotations

import threading
import time
from typing import Any

from marketcov_dagster.api.snapshot import COMPUTE_SHARE, SnapshotCache


def test_one_computation_per_ttl_and_readers_never_wait_for_a_recompute() -> None:
    calls: list[float] = []
    release = threading.Event()

    def compute() -> Any:
        calls.append(time.monotonic())
        if len(calls) == 2:
            release.wait(10)  # the second computation is slow
        return len(calls)

    cache = SnapshotCache(compute, ttl=1.0)  # long enough that a busy machine's stall cannot expire it
    assert [cache.get() for _ in range(50)] == [1] * 50 and len(calls) == 1
    time.sleep(1.05)
    worker = threading.Thread(target=cache.get)
    worker.start()
    while len(calls) < 2:
        time.sleep(0.01)
    # while the recompute hangs, every reader gets the previous picture at once
    started = time.monotonic()
    assert [cache.get() for _ in range(20)] == [1] * 20
    assert time.monotonic() - started < 1.0
    release.set()
    worker.join(10)
    assert cache.get() == 2 and len(calls) == 2


def test_a_slow_computation_is_kept_proportionally_longer() -> None:
    def slow() -> Any:
        time.sleep(0.1)
        return object()

    cache = SnapshotCache(slow, ttl=0.01)
    cache.get()
    assert cache.ttl >= COMPUTE_SHARE * 0.1
