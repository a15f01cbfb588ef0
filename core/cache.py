"""A thread-safe LRU of traces bounded by bytes, so memory stays flat however many prompts come.

Counting entries is not enough: one 1,024-token trace of GPT-2 small holds ~500 MB
(the attention alone is 12 x 12 x 1024 x 1024 float16 = 302 MB) while a short one
holds a few hundred KB.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections import OrderedDict
from typing import Callable, Hashable

ENV_CACHE_MB = "GPT2VIZ_TRACE_CACHE_MB"
DEFAULT_CACHE_MB = 768  # one 1,024-token GPT-2 small trace (~480 MB) plus many short ones


def _load_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> None:
    """Hand memory freed by evicted traces back to the OS (glibc keeps it otherwise, and the
    app's resident size creeps up by a few hundred MB over many long prompts)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def default_budget_bytes() -> int:
    return int(float(os.environ.get(ENV_CACHE_MB, DEFAULT_CACHE_MB)) * 2**20)


class ByteBoundedCache:
    """get_or_compute(key, fn): the value for key, computing it once; oldest entries go first.

    Values must have an `nbytes` attribute. A value larger than the whole budget is
    returned but not kept. Computation is serialized per cache: on a 2-core CPU two
    1,024-token forwards at once only double the peak memory.
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = default_budget_bytes() if max_bytes is None else int(max_bytes)
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(v.nbytes for v in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def _get(self, key: Hashable):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return True, self._items[key]
        return False, None

    def _make_room(self, incoming: int) -> None:
        evicted = []
        with self._lock:
            while self._items and sum(v.nbytes for v in self._items.values()) + incoming > self.max_bytes:
                evicted.append(self._items.popitem(last=False))
        if evicted:
            del evicted
            release_freed_memory()

    def get_or_compute(self, key: Hashable, compute: Callable[[], object], expected_bytes: int = 0):
        found, value = self._get(key)
        if found:
            return value
        with self._compute_lock:
            found, value = self._get(key)  # another thread may have computed it meanwhile
            if found:
                return value
            self.misses += 1
            # Free room before computing, so old and new traces are not held at once.
            self._make_room(min(expected_bytes, self.max_bytes))
            value = compute()
            if value.nbytes <= self.max_bytes:
                self._make_room(value.nbytes)
                with self._lock:
                    self._items[key] = value
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
