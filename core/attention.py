"""Attention metrics read off a Trace: per-head scores, induction scores, pre-softmax scores.

Everything here works on the arrays one forward already produced (`Trace.attention`,
`Trace.resid`), except `induction_scores`, which runs the model once on random tokens
repeated twice; the app caches that per model. Never imports streamlit.

Dimension names as in core.trace: layer head query_pos key_pos pos d_model.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .model import LoadedModel
from .trace import Trace, _attention_scale, trace_ids

# Head-atlas metrics: key -> (label for a person, what it measures).
HEAD_METRICS: dict[str, tuple[str, str]] = {
    "previous": ("Previous token", "mean attention from each token to the token just before it"),
    "first": ("First token (sink)", "mean attention from each token to the first token of the prompt"),
    "self": ("Itself", "mean attention from each token to itself"),
    "entropy": ("Entropy (bits)", "mean entropy of each token's attention row, in bits; 0 = one key only"),
    "induction": ("Induction", "on random tokens repeated twice: mean attention from the second copy "
                               "to the token after the earlier occurrence of the current token"),
}

INDUCTION_LENGTH = 200  # random tokens in each copy (TransformerLens' tutorials use 50-300)
INDUCTION_SEED = 0


def _diagonal_mean(pattern: np.ndarray, offset: int, first_query: int) -> np.ndarray:
    """Mean of pattern[..., q, q - offset] over queries q >= first_query -> [...] float64."""
    n = pattern.shape[-1]
    q = np.arange(first_query, n)
    if len(q) == 0:
        return np.full(pattern.shape[:-2], np.nan)
    return pattern[..., q, q - offset].astype(np.float64).mean(axis=-1)


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean weight on key q-1 over queries 1..n-1."""
    return _diagonal_mean(pattern, 1, 1)


def self_score(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean weight on key q over queries 1..n-1.

    Query 0 sees only itself (weight 1 by construction), so it is left out.
    """
    return _diagonal_mean(pattern, 0, 1)


def first_token_score(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean weight on key 0 over queries 1..n-1."""
    n = pattern.shape[-1]
    if n < 2:
        return np.full(pattern.shape[:-2], np.nan)
    return pattern[..., 1:, 0].astype(np.float64).mean(axis=-1)


def mean_entropy(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean over queries of the row entropy in bits."""
    p = torch.from_numpy(np.ascontiguousarray(pattern, dtype=np.float32))
    nats = torch.special.entr(p).sum(dim=-1, dtype=torch.float64).mean(dim=-1)  # entr(0) = 0
    return nats.numpy() / np.log(2)


_PATTERN_METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "previous": previous_token_score,
    "first": first_token_score,
    "self": self_score,
    "entropy": mean_entropy,
}


def head_scores(t: Trace) -> dict[str, np.ndarray]:
    """Every pattern metric of HEAD_METRICS except induction, each [layer, head] float64.

    Goes one layer at a time so a 1,024-token prompt never holds more than one layer's
    pattern in float32 (12 x 1024 x 1024 x 4 = 50 MB for GPT-2 small).
    """
    out = {name: np.empty((t.n_layer, t.n_head)) for name in _PATTERN_METRICS}
    for L in range(t.n_layer):
        pattern = t.take("attention", (L,))  # [head, query_pos, key_pos]
        for name, fn in _PATTERN_METRICS.items():
            out[name][L] = fn(pattern)
    return out


# ---- induction ----------------------------------------------------------------------------
def repeated_random_ids(lm: LoadedModel, length: int = INDUCTION_LENGTH, seed: int = INDUCTION_SEED) -> list[int]:
    """[bos] + r + r for `length` random ordinary token ids r (fewer if the context is short)."""
    length = max(2, min(length, (lm.n_ctx - 1) // 2))
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    pool = np.array([i for i in range(lm.d_vocab) if i not in special])
    r = np.random.default_rng(seed).choice(pool, size=length, replace=len(pool) < length).tolist()
    bos = lm.tokenizer.bos_token_id
    return ([bos] if bos is not None else []) + r + r


def induction_score(pattern: np.ndarray, length: int, offset: int = 1) -> np.ndarray:
    """Induction score of patterns over [offset prefix tokens] + r + r, len(r) = length.

    [..., query_pos, key_pos] -> [...]. The query at the second copy's j-th token
    (position offset + length + j) reads the same token as position offset + j; an
    induction head attends to what came next, offset + j + 1. Averaged over j = 0..length-2.
    """
    j = np.arange(length - 1)
    return pattern[..., offset + length + j, offset + j + 1].astype(np.float64).mean(axis=-1)


def induction_scores(lm: LoadedModel, length: int = INDUCTION_LENGTH, seed: int = INDUCTION_SEED) -> np.ndarray:
    """[layer, head] induction scores from one forward on random tokens repeated twice."""
    ids = repeated_random_ids(lm, length, seed)
    length = (len(ids) - 1) // 2
    offset = len(ids) - 2 * length
    t = trace_ids(lm, ids)
    out = np.empty((t.n_layer, t.n_head))
    for L in range(t.n_layer):
        out[L] = induction_score(t.take("attention", (L,)), length, offset)
    return out


# ---- slices of the trace the views show ------------------------------------------------------
def layer_mean_pattern(t: Trace) -> np.ndarray:
    """[layer, query_pos, key_pos] float32: each layer's pattern averaged over its heads."""
    n = t.n_tokens
    out = np.empty((t.n_layer, n, n), dtype=np.float32)
    for L in range(t.n_layer):
        out[L] = t.take("attention", (L,)).mean(axis=0, dtype=np.float32)
    return out


def attends_to(t: Trace, pos: int) -> np.ndarray:
    """[layer, head, key_pos] for key_pos 0..pos: where the token at `pos` looks."""
    return t.take("attention", (slice(None), slice(None), pos, slice(0, pos + 1)))


def attended_by(t: Trace, pos: int) -> np.ndarray:
    """[layer, head, query_pos] for query_pos pos..n-1: who looks at the token at `pos`."""
    return t.take("attention", (slice(None), slice(None), slice(pos, None), pos))


# ---- pre-softmax scores --------------------------------------------------------------------
def pre_softmax_scores(lm: LoadedModel, t: Trace, layer: int, head: int) -> np.ndarray:
    """[query_pos, key_pos] float32: q·k/√d_head of one head, -inf above the diagonal.

    Recomputed from the block's weights and the trace's resid_pre, without a forward:
    x = ln_1(resid_pre); q and k are x times head `head`'s columns of c_attn (GPT-2's
    Conv1D stores its weight as [in, out], so columns are outputs) plus the bias.
    softmax of each row gives back `t.attention[layer, head]`.
    """
    block = lm.model.transformer.h[layer]
    d, hs = lm.d_model, lm.d_model // lm.n_head
    with torch.inference_mode():
        resid = torch.from_numpy(np.array(t.take("resid", (layer,)))).to(lm.device)  # [pos, d_model]
        x = block.ln_1(resid)
        W, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # [d_model, 3 d_model], [3 d_model]
        q_cols = slice(head * hs, (head + 1) * hs)
        k_cols = slice(d + head * hs, d + (head + 1) * hs)
        q = x @ W[:, q_cols] + b[q_cols]  # [pos, d_head]
        k = x @ W[:, k_cols] + b[k_cols]
        scores = (q @ k.T) * _attention_scale(block.attn, layer)  # [query_pos, key_pos]
        n = scores.shape[0]
        scores.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=scores.device).triu_(1), float("-inf"))
        return scores.float().cpu().numpy()
