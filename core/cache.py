"""A thread-safe LRU of traces and per-layer arrays bounded by bytes, so memory stays flat
however many prompts and views come.

Counting entries is not enough: one layer's patterns of gpt2-xl at 1,024 tokens hold
105 MB (25 x 1024 x 1024 float32) while a short prompt's trace holds a few hundred KB.
The budget follows the model: `budget_for(lm)` fits a full-length trace plus several
whole layers of patterns; `GPT2VIZ_TRACE_CACHE_MB` overrides it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections import OrderedDict
from typing import Callable, Hashable

from .lane import lane

ENV_CACHE_MB = "GPT2VIZ_TRACE_CACHE_MB"
DEFAULT_CACHE_MB = 768  # the floor: GPT-2 small's full-length trace (50 MB) and ~15 whole layers of patterns
LAYERS_KEPT = 8  # whole layers of patterns at full length that the budget must hold besides a trace
MAX_SHARE_OF_RAM = 0.25


class LayerArrays(dict):
    """name -> array (tensor or numpy), with the `nbytes` the byte-bounded cache counts: what a
    trace keeps per layer, or per derived result (`Trace.memo`)."""

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes for v in self.values()))


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


def budget_override() -> int | None:
    value = os.environ.get(ENV_CACHE_MB, "").strip()
    return int(float(value) * 2**20) if value else None


def default_budget_bytes() -> int:
    override = budget_override()
    return override if override is not None else DEFAULT_CACHE_MB * 2**20


def _physical_ram() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None


def budget_for(trace_bytes: int, layer_pattern_bytes: int) -> int:
    """Bytes a cache needs for a model whose full-length trace and one layer's patterns
    take these many bytes: the floor, or a trace plus LAYERS_KEPT layers, whichever is
    larger, but at most a quarter of the machine's memory (never below one trace and
    two layers). `GPT2VIZ_TRACE_CACHE_MB` overrides."""
    override = budget_override()
    if override is not None:
        return override
    want = max(DEFAULT_CACHE_MB * 2**20, trace_bytes + LAYERS_KEPT * layer_pattern_bytes)
    ram = _physical_ram()
    if ram:
        want = min(want, max(int(ram * MAX_SHARE_OF_RAM), trace_bytes + 2 * layer_pattern_bytes))
    return want


class ByteBoundedCache:
    """get_or_compute(key, fn): the value for key, computing it once; oldest entries go first.

    Values must have an `nbytes` attribute. A value larger than the whole budget is
    returned but not kept. Misses are computed on the compute lane (core.lane), as many at a time
    as it has workers (one by default: on a 2-core CPU two 1,024-token forwards at once would only
    double the peak memory).
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = default_budget_bytes() if max_bytes is None else int(max_bytes)
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
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

    def get_or_compute(self, key: Hashable, compute: Callable[[], object], expected_bytes: int = 0,
                       label: str = ""):
        """The value for key; on a miss, compute() runs on the compute lane (core.lane), where a
        concurrent miss of the same key waits for the same computation. `label` says what it does
        (in the page's language), for the page to show while it waits."""
        found, value = self._get(key)
        if found:
            return value
        return lane().run((id(self), key), lambda: self._compute(key, compute, expected_bytes), label=label)

    def prefetch(self, key: Hashable, compute: Callable[[], object], expected_bytes: int = 0, label: str = "") -> bool:
        """Compute the value for key when the compute lane has nothing asked of it (core.lane's
        prefetch), unless it is cached or under way; a get_or_compute of the key meanwhile joins it.
        True when it was queued."""
        if key in self:
            return False
        return lane().prefetch((id(self), key), lambda: self._compute(key, compute, expected_bytes), label=label)

    def _compute(self, key: Hashable, compute: Callable[[], object], expected_bytes: int):
        found, value = self._get(key)  # computed by earlier work while this waited in the lane
        if found:
            return value
        with self._lock:
            self.misses += 1
        # Free room before computing, so old and new traces are not held at once.
        self._make_room(min(expected_bytes, self.max_bytes))
        value = compute()
        if value.nbytes <= self.max_bytes:
            self._make_room(value.nbytes)
            with self._lock:
                self._items[key] = value
        return value

    def ensure_budget(self, max_bytes: int) -> None:
        """Grow the budget to at least max_bytes (a larger model was loaded)."""
        self.max_bytes = max(self.max_bytes, int(max_bytes))

    def drop(self, match: Callable[[Hashable], bool]) -> None:
        """Forget every entry whose key matches (for example those of an unloaded model)."""
        with self._lock:
            gone = [k for k in self._items if match(k)]
            for k in gone:
                del self._items[k]
        if gone:
            release_freed_memory()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_SHARED: ByteBoundedCache | None = None
_SHARED_LOCK = threading.Lock()


def shared_cache() -> ByteBoundedCache:
    """The process-wide cache that traces use for their per-layer arrays unless given another."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ByteBoundedCache()
        return _SHARED
