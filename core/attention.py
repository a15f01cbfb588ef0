"""Attention metrics and the slices the views show, read off a Trace without ever forming
[layer, head, pos, pos]: per-head scores, layer summaries, one head across layers, one
token's row and column, induction scores, pre-softmax scores.

The forward kept each layer's residual and each query's log-sum-exp of scores (`lse`),
so any attention weight is exp(q·k·scale - lse): a token's row or column in every layer
costs a projection of q or k, not a pattern. `induction_scores` runs the model once on
random tokens repeated twice; the app caches that per model. Never imports streamlit.

Dimension names as in core.trace: layer head query_pos key_pos pos d_model.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .cache import ByteBoundedCache
from .forward import attention_scale, row_entropy_bits, weights_at
from .layers import LayerArrays, head_qk, stored_resid
from .model import LoadedModel
from .trace import Trace, trace_ids

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


def head_scores(t: Trace, *, with_entropy: bool = True) -> dict[str, np.ndarray]:
    """Every pattern metric of HEAD_METRICS except induction, each [layer, head] float64.

    previous, first and self were summed up during the forward (from each query's
    log-sum-exp, without forming patterns); entropy needs every pattern, so it comes from
    `pattern_summaries`, one layer at a time (left out if with_entropy is False)."""
    out = {name: t.take(f"head_{name}").astype(np.float64) for name in ("previous", "first", "self")}
    if with_entropy:
        out["entropy"] = pattern_summaries(t, side=16)["entropy"]
    return out


def _pool(x: torch.Tensor, side: int) -> tuple[torch.Tensor, int]:
    """Max-pool [..., n, n] (weights >= 0) in square blocks so each side is at most `side`."""
    n = x.shape[-1]
    b = max(1, math.ceil(n / side))
    if b == 1:
        return x, 1
    lead = x.shape[:-2]
    pooled = torch.nn.functional.max_pool2d(x.reshape(-1, 1, n, n), b, b, ceil_mode=True)
    return pooled.reshape(*lead, *pooled.shape[-2:]), b


def pattern_summaries(t: Trace, side: int, on_layer: Callable[[int], None] | None = None) -> dict:
    """What the views that read every head of every layer show, one layer at a time:
    entropy [layer, head] (mean row entropy in bits) and `means` [layer, q', k'], each
    layer's pattern averaged over heads and max-pooled to at most `side` per axis in
    blocks of `block` tokens. Each layer is formed, summarized and dropped; the summary is
    kept in the trace's cache, so a second call (or a stopped one resumed) costs nothing
    for the layers already done. `on_layer(L)` is called before each layer is computed."""
    entropy, means = [], []
    for L in range(t.n_layer):
        def compute(L=L):
            if on_layer is not None:
                on_layer(L)
            p = torch.from_numpy(np.array(t.pattern(L, keep=False)))  # [head, query_pos, key_pos]
            pooled, b = _pool(p.mean(0), side)
            return LayerArrays(entropy=row_entropy_bits(p).numpy(), mean=pooled.numpy(), block=np.array(b))
        got = t.memo(("pattern_summary", L, side), compute)
        entropy.append(got["entropy"])
        means.append(got["mean"])
    return {"entropy": np.stack(entropy), "means": np.stack(means), "block": int(got["block"])}


def head_across_layers(t: Trace, head: int, side: int) -> tuple[np.ndarray, int]:
    """[layer, q', k'] head `head`'s pattern in every layer, max-pooled to at most `side` per
    axis (blocks of the returned size); one head at a time, never [layer, head, pos, pos]."""
    def compute():
        grids = [_pool(torch.from_numpy(np.array(t.pattern(L, head, keep=False))), side) for L in range(t.n_layer)]
        return LayerArrays(grids=torch.stack([g for g, _ in grids]).numpy(), block=np.array(grids[0][1]))
    got = t.memo(("head_across", head, side), compute)
    return got["grids"], int(got["block"])


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


def _layer_qk(t: Trace, layer: int, q_rows=slice(None), k_rows=slice(None)) -> tuple[torch.Tensor, torch.Tensor, float]:
    """q of the given query rows and k of the given key rows, every head: [head, rows, d_head]."""
    lm = t.lm
    block = lm.model.transformer.h[layer]
    x = block.ln_1(stored_resid(lm, t, layer))
    q = head_qk(block, x, range(lm.n_head), lm.n_head, q_rows)[0]
    k = head_qk(block, x, range(lm.n_head), lm.n_head, k_rows)[1]
    return q, k, attention_scale(block.attn, layer)


def induction_scores(lm: LoadedModel, length: int = INDUCTION_LENGTH, seed: int = INDUCTION_SEED) -> np.ndarray:
    """[layer, head] induction scores from one forward on random tokens repeated twice.

    Each weight read is exp(q·k·scale - lse) of one (query, key) pair, so no layer's
    pattern is formed or cached."""
    ids = repeated_random_ids(lm, length, seed)
    length = (len(ids) - 1) // 2
    offset = len(ids) - 2 * length
    t = trace_ids(lm, ids, cache=ByteBoundedCache(0))
    out = np.empty((t.n_layer, t.n_head))
    with torch.inference_mode():
        for L in range(t.n_layer):
            q, k, scale = _layer_qk(t, L)
            lse = torch.from_numpy(np.array(t.take("lse", (L,))))
            w = weights_at(q, k, lse, scale, length - 1)  # [head, query - (length - 1)]
            queries = offset + length + np.arange(length - 1)
            out[L] = w[:, queries - (length - 1)].double().mean(-1).numpy()
    return out


# ---- slices of the trace the views show ------------------------------------------------------
def layer_mean_pattern(t: Trace) -> np.ndarray:
    """[layer, query_pos, key_pos] float32: each layer's pattern averaged over its heads
    (whole, for short prompts; the page reads `pattern_summaries`)."""
    return np.stack([t.pattern(L, keep=False).mean(axis=0, dtype=np.float32) for L in range(t.n_layer)])


def attends_to(t: Trace, pos: int) -> np.ndarray:
    """[layer, head, key_pos] for key_pos 0..pos: where the token at `pos` looks.

    One query row per layer: q at `pos`, k up to `pos`, weights exp(q·k·scale - lse)."""
    out = np.empty((t.n_layer, t.n_head, pos + 1), dtype=np.float32)
    with torch.inference_mode():
        for L in range(t.n_layer):
            q, k, scale = _layer_qk(t, L, slice(pos, pos + 1), slice(0, pos + 1))
            lse = torch.from_numpy(np.array(t.take("lse", (L, slice(None), slice(pos, pos + 1)))))
            out[L] = torch.exp(torch.bmm(q, k.transpose(1, 2))[:, 0] * scale - lse).numpy()
    return out


def attended_by(t: Trace, pos: int) -> np.ndarray:
    """[layer, head, query_pos] for query_pos pos..n-1: who looks at the token at `pos`."""
    out = np.empty((t.n_layer, t.n_head, t.n_tokens - pos), dtype=np.float32)
    with torch.inference_mode():
        for L in range(t.n_layer):
            q, k, scale = _layer_qk(t, L, slice(pos, None), slice(pos, pos + 1))
            lse = torch.from_numpy(np.array(t.take("lse", (L, slice(None), slice(pos, None)))))
            out[L] = torch.exp(torch.bmm(q, k.transpose(1, 2))[..., 0] * scale - lse).numpy()
    return out


# ---- pre-softmax scores --------------------------------------------------------------------
def pre_softmax_scores(lm: LoadedModel, t: Trace, layer: int, head: int) -> np.ndarray:
    """[query_pos, key_pos] float32: q·k/√d_head of one head, -inf above the diagonal.

    Recomputed from the block's weights and the trace's resid_pre (see Trace.attn_scores);
    softmax of each row gives back `t.pattern(layer, head)`.
    """
    return t.attn_scores(layer, head)
