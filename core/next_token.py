"""What GPT-2 predicts next: the likeliest tokens, the rank curve, the prompt's perplexity.
Reads a Trace only; the tables a page shows are built by recipes.next_token.

Dimension names: vocab rank.
"""
from __future__ import annotations

import numpy as np

from .trace import Trace


def top_k_ids(probs: np.ndarray, k: int = 10) -> np.ndarray:
    """[min(k, vocab)] int64: the ids of the k likeliest tokens of probs [vocab], likeliest first."""
    probs = np.asarray(probs)
    k = int(min(k, probs.shape[0]))
    ids = np.argpartition(-probs, k - 1)[:k]
    return ids[np.argsort(-probs[ids], kind="stable")].astype(np.int64)


def rank_curve(probs: np.ndarray, max_points: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """(ranks [point], probabilities [point]) of the sorted distribution probs [vocab], ranks 1-based and
    log-spaced beyond the first 100 so a 50,257-token curve is drawn with ~1,500 points and looks the same."""
    p = np.sort(np.asarray(probs, dtype=np.float64))[::-1]
    n = p.shape[0]
    head = np.arange(1, min(n, 100) + 1)
    if n > 100:
        tail = np.unique(np.geomspace(101, n, num=max(2, max_points - head.size)).astype(np.int64))
    else:
        tail = np.empty(0, np.int64)
    ranks = np.concatenate([head, tail])
    return ranks, p[ranks - 1]


def prompt_perplexity(t: Trace) -> float:
    """2 ** mean surprisal (bits) over the tokens GPT-2 predicted (all but the first); NaN if none."""
    s = t.surprisal_bits[1:]
    return float(2 ** np.mean(s)) if s.size else float("nan")
