"""N-gram models by counting, as Wolfram's essay starts before any neural net: the next letter (or
word) drawn from how often it followed the last n−1 letters (words) in a text, n = 1 … MAX_N.

A text becomes a sequence of units: for letters the lowercase letters a–z and space, for words the
lowercase runs of a–z. All orders share one index: the text's positions sorted by the MAX_N units
that start there (`Ngrams.order`). The positions where a context occurs are then one contiguous
run of that order, found by binary search, and the units after them come out sorted: counting
the continuations of a context is a slice, and drawing one with probability count/total is
picking a random position of the run. No smoothing: a context the text never has has no
continuation.
"""
from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

MAX_N = 5
MAX_CHARS = 2_000_000  # a longer paste is cut here: counting it stays a second or two, its index ~25 MB
ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # the letter models' units, in id order (space first)
UNITS = ("letter", "word")
BUNDLED_TEXT = Path(__file__).resolve().parent.parent / "bundled" / "texts" / "kjv_genesis.txt"

_NOT_LETTERS = re.compile(r"[^a-z]+")
_WORD = re.compile(r"[a-z]+")


def _ascii_lower(text: str) -> str:
    """Lowercase, accents dropped (é -> e, ﬁ -> fi, full-width ａ -> a); other scripts stay as they are."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def letters_of(text: str) -> str:
    """`text` as the letter models read it: lowercase a–z, every run of anything else one space."""
    return _NOT_LETTERS.sub(" ", _ascii_lower(text))


def words_of(text: str) -> list[str]:
    """`text` as the word models read it: its lowercase runs of a–z (anything else separates words)."""
    return _WORD.findall(_ascii_lower(text))


def units_of(text: str, unit: str) -> list[str]:
    """A context's units. A letter context keeps a space at its end (a word just ended), not at its start."""
    return list(letters_of(text).lstrip(" ")) if unit == "letter" else words_of(text)


def fit_text(text: str) -> tuple[str, int]:
    """`text` cut to MAX_CHARS characters, and how many were cut."""
    return text[:MAX_CHARS], max(0, len(text) - MAX_CHARS)


def bundled_text() -> str:
    return BUNDLED_TEXT.read_text(encoding="utf-8")


@dataclass(frozen=True, eq=False)
class Ngrams:
    """Every n-gram (n ≤ MAX_N) of one text's units, indexed by sorting."""
    unit: str  # "letter" or "word"
    vocab: tuple[str, ...]  # unit id -> unit, sorted
    ids: np.ndarray  # (length,) int32: the text as unit ids
    order: np.ndarray  # (length,) int32: positions, sorted by the MAX_N units from each (a shorter tail first)

    @property
    def length(self) -> int:
        return int(self.ids.shape[0])

    def n_grams(self, n: int) -> int:
        """How many n-grams the text has (positions, repeats included)."""
        return max(0, self.length - n + 1)

    @cached_property
    def _id_of(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.vocab)}

    def _ids_of(self, context: Sequence[str]) -> list[int] | None:
        ids = [self._id_of.get(u, -1) for u in context]
        return None if -1 in ids else ids

    def _run(self, ids: list[int]) -> tuple[int, int]:
        """[lo, hi) of `order`: the positions where `ids` occurs with at least one unit after it."""
        m = len(ids)
        if m == 0:
            return 0, self.length

        def key(p):
            return self.ids[p:p + m].tolist()
        lo = bisect_left(self.order, ids, key=key)
        hi = bisect_right(self.order, ids, lo=lo, key=key)
        if lo < hi and int(self.order[lo]) + m == self.length:  # the context that ends the text: nothing follows
            lo += 1
        return lo, hi

    def next_counts(self, context: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Each unit seen right after `context` (the n−1 units of the order-n model; empty for n = 1)
        and how many times, most frequent first (ties in vocabulary order). Empty if never seen."""
        ids = self._ids_of(context)
        if ids is None:
            return [], np.zeros(0, np.int64)
        lo, hi = self._run(ids)
        following = self.ids[self.order[lo:hi].astype(np.int64) + len(ids)]  # sorted: the run is sorted
        if not following.size:
            return [], np.zeros(0, np.int64)
        units, counts = np.unique(following, return_counts=True)
        rank = np.argsort(-counts, kind="stable")
        return [self.vocab[int(u)] for u in units[rank]], counts[rank].astype(np.int64)

    def sample(self, n: int, length: int, seed: int) -> list[list[str]]:
        """`length` units from the order-n model: the first n−1 copied from a random place in the
        text, then each drawn after the n−1 before it with probability count / total. Where the
        last n−1 units occur only at the very end of the text, nothing follows them: the sample
        starts afresh at another random place, as a new run. Returns the runs; every n-gram inside
        a run occurs in the text. Same (n, length, seed), same sample."""
        if not 1 <= n <= MAX_N:
            raise ValueError(f"n must be 1 to {MAX_N}, got {n}")
        if self.n_grams(n) == 0:
            return []
        rng = np.random.default_rng([int(seed), n, UNITS.index(self.unit)])
        runs, total = [], 0
        while total < length:
            start = int(rng.integers(0, self.n_grams(n)))
            run = self.ids[start:start + min(n - 1, length - total)].tolist()
            while len(run) + total < length:
                lo, hi = self._run(run[len(run) - (n - 1):] if n > 1 else [])
                if lo >= hi:
                    break
                run.append(int(self.ids[int(self.order[int(rng.integers(lo, hi))]) + n - 1]))
            runs.append([self.vocab[i] for i in run])
            total += len(run)
        return runs

    def pair_counts(self) -> np.ndarray:
        """(27, 27) int64: how often letter j follows letter i (the letter 2-gram counts, ALPHABET order)."""
        if self.unit != "letter":
            raise ValueError("pair counts are for letters (a word vocabulary squared is too big)")
        v = len(self.vocab)
        pairs = self.ids[:-1].astype(np.int64) * v + self.ids[1:]
        return np.bincount(pairs, minlength=v * v).reshape(v, v)


def _index(ids: np.ndarray) -> np.ndarray:
    """Positions sorted by the MAX_N units from each; a missing unit past the end sorts first."""
    padded = np.concatenate([ids.astype(np.int64), np.full(MAX_N, -1)])
    keys = [padded[k:k + ids.shape[0]] for k in range(MAX_N)]
    return np.lexsort(keys[::-1]).astype(np.int32)  # lexsort's last key is the primary one


def count_ngrams(text: str, unit: str) -> Ngrams:
    """Index `text` (cut to MAX_CHARS) as letters or words. The letters' outer spaces are dropped."""
    text, _ = fit_text(text)
    if unit == "letter":
        letters = letters_of(text).strip(" ")
        ids = (np.frombuffer(letters.encode("ascii"), np.uint8).astype(np.int32) - ord("a") + 1).clip(0)
        return Ngrams("letter", tuple(ALPHABET), ids, _index(ids))
    if unit != "word":
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    words = words_of(text)
    vocab = sorted(set(words))
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.fromiter((index[w] for w in words), np.int32, len(words))
    return Ngrams("word", tuple(vocab), ids, _index(ids))


@lru_cache(maxsize=4)
def counted(text: str, unit: str) -> Ngrams:
    """count_ngrams, cached for the last few texts (the bundled one and a pasted one, as letters and words)."""
    return count_ngrams(text, unit)
