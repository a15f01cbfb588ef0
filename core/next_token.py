"""What GPT-2 predicts next: top-k table, rank curve, per-token surprisal. Reads a Trace only."""
from __future__ import annotations

import numpy as np
import pandas as pd

from i18n import _

from .model import LoadedModel
from .tokens import characters_across_tokens, display_tokens, token_bytes
from .trace import Trace


def top_k_table(lm: LoadedModel, t: Trace, k: int = 10) -> pd.DataFrame:
    """The k likeliest next tokens after the prompt: rank, token, id, probability, logit."""
    probs, logits = t.next_probs, t.next_logits
    k = int(min(k, probs.shape[0]))
    ids = np.argpartition(-probs, k - 1)[:k]
    ids = ids[np.argsort(-probs[ids], kind="stable")]
    return pd.DataFrame({
        "rank": np.arange(1, k + 1),
        "token": display_tokens(lm, ids),
        "id": ids.astype(np.int64),
        "probability": probs[ids].astype(np.float64),
        "logit": logits[ids].astype(np.float64),
    })


def rank_curve(probs: np.ndarray, max_points: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """(rank, probability) of the sorted distribution, ranks 1-based and log-spaced beyond
    the first 100 so a 50,257-token curve is drawn with ~1,500 points and looks the same."""
    p = np.sort(np.asarray(probs, dtype=np.float64))[::-1]
    n = p.shape[0]
    head = np.arange(1, min(n, 100) + 1)
    tail = np.unique(np.geomspace(101, n, num=max(2, max_points - head.size)).astype(np.int64)) if n > 100 else np.empty(0, np.int64)
    ranks = np.concatenate([head, tail])
    return ranks, p[ranks - 1]



def prompt_perplexity(t: Trace) -> float:
    """2 ** mean surprisal (bits) over the tokens GPT-2 predicted (all but the first); NaN if none."""
    s = t.surprisal_bits[1:]
    return float(2 ** np.mean(s)) if s.size else float("nan")


def tokenization_table(lm: LoadedModel, t: Trace) -> pd.DataFrame:
    """One row per prompt token: position, token as shown, id, its bytes in hex, and, for a
    token that holds part of a character split over several tokens (Chinese, emoji), which
    tokens make that character together."""
    pieces = token_bytes(lm, t.token_ids)
    shared = [""] * len(pieces)
    across = _("{char} = tokens {first}–{last}")
    for ch, first, last in characters_across_tokens(pieces):
        for i in range(first, last + 1):
            note = across.format(char=ch, first=first, last=last)
            shared[i] = note if not shared[i] else f"{shared[i]}; {note}"
    return pd.DataFrame({
        "position": np.arange(len(pieces)),
        "token": list(t.tokens),
        "id": t.token_ids.astype(np.int64),
        "bytes": [" ".join(f"{b:02x}" for b in p) for p in pieces],
        "character split over tokens": shared,
    })
