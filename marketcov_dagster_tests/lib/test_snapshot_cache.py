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


def test_in_the_background_no_request_waits_for_a_recompute_and_a_failed_one_keeps_the_value() -> None:
    calls: list[int] = []
    release = threading.Event()
    fail = threading.Event()

    def compute() -> Any:
        calls.append(len(calls) + 1)
        if len(calls) >= 2:
            release.wait(10)  # every recomputation is slow
            if fail.is_set():
                raise RuntimeError("the instance is busy")
        return len(calls)

    cache = SnapshotCache(compute, ttl=0.2, background=True)
    assert cache.get() == 1  # the first value: computed in the request
    time.sleep(0.25)
    started = time.monotonic()
    assert cache.get() == 1 and cache.get() == 1  # stale: answered at once, the next one computing
    assert time.monotonic() - started < 1.0
    while len(calls) < 2:
        time.sleep(0.01)
    release.set()
    deadline = time.monotonic() + 10
    while cache.get() != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get() == 2 and len(calls) == 2
    fail.set()
    time.sleep(0.25)
    assert cache.get() == 2  # stale again: a background recompute starts, and fails
    while len(calls) < 3:
        time.sleep(0.01)
    time.sleep(0.1)
    assert cache.get() == 2  # the value stays, and the next request tries again
