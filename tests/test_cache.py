"""The trace cache is bounded by bytes, not entries."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from core import ByteBoundedCache


@dataclass
class Blob:
    nbytes: int


def test_evicts_oldest_to_stay_under_budget():
    cache = ByteBoundedCache(max_bytes=100)
    calls = []
    for i in range(5):
        cache.get_or_compute(i, lambda i=i: calls.append(i) or Blob(40))
    assert cache.nbytes <= 100 and len(cache) == 2 and 4 in cache and 3 in cache
    cache.get_or_compute(3, lambda: Blob(40))  # hit: not recomputed, becomes newest
    assert calls == [0, 1, 2, 3, 4] and cache.hits == 1
    cache.get_or_compute(5, lambda: Blob(40))
    assert 3 in cache and 4 not in cache


def test_room_is_made_before_computing():
    cache = ByteBoundedCache(max_bytes=100)
    cache.get_or_compute("a", lambda: Blob(60))
    seen = []
    cache.get_or_compute("b", lambda: seen.append(cache.nbytes) or Blob(60), expected_bytes=60)
    assert seen == [0]  # the old entry was dropped before the new one was computed


def test_oversized_value_is_returned_but_not_kept():
    cache = ByteBoundedCache(max_bytes=100)
    assert cache.get_or_compute("big", lambda: Blob(500)).nbytes == 500
    assert len(cache) == 0


def test_concurrent_requests_compute_once():
    cache = ByteBoundedCache(max_bytes=1000)
    calls = []
    barrier = threading.Barrier(4)

    def ask():
        barrier.wait()
        cache.get_or_compute("k", lambda: calls.append(1) or Blob(10))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert calls == [1]
