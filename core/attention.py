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

from i18n import N_, _

from .arch import weights_at
from .cache import ByteBoundedCache, LayerArrays
from .model import LoadedModel
from .trace import PromptError, Trace, trace_ids

# Head-atlas metrics: key -> (label for a person, what it measures).
# key -> (name, description), English; shown translated: _(name), _(description)
HEAD_METRICS: dict[str, tuple[str, str]] = {
    "previous": (N_("Previous token"), N_("mean attention from each token to the token just before it")),
    "first": (N_("First token (sink)"), N_("mean attention from each token to the first token of the prompt")),
    "self": (N_("Itself"), N_("mean attention from each token to itself")),
    "entropy": (N_("Entropy (bits)"), N_("mean entropy of each token's attention row, in bits; 0 = one key only")),
    "induction": (N_("Induction"), N_("on random tokens repeated twice: mean attention from the second copy "
                                      "to the token after the earlier occurrence of the current token")),
}

INDUCTION_LENGTH = 200  # random tokens in each copy (TransformerLens' tutorials use 50-300)
INDUCTION_SEED = 0


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


def _layer_summary(t: Trace, layer: int, side: int) -> LayerArrays:
    """One layer's row entropy per head and pooled mean-over-heads pattern, from the scores
    and the stored log-sum-exp: p = exp(s - lse), entropy = lse - sum(p s). No softmax pass,
    no log, and at most one head's [pos, pos] at a time."""
    n = t.n_tokens
    q, k = _projection(t, layer, 0, slice(None)), _projection(t, layer, 1, slice(None))  # [head, pos, d_head]
    lse = t.tensor("lse", (layer,))  # [head, pos]
    scale = t.lm.arch.blocks[layer].scale
    future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu_(1)
    mean = torch.zeros(n, n, device=q.device)
    entropy = np.empty(t.n_head)
    for h in range(t.n_head):
        scores = (q[h] @ k[h].T).mul_(scale).masked_fill_(future, 0.0)  # [query_pos, key_pos]
        p = torch.exp(scores - lse[h, :, None]).masked_fill_(future, 0.0)
        entropy[h] = float((lse[h] - (p * scores).sum(-1)).double().mean()) / math.log(2)
        mean += p
    pooled, b = _pool(mean / t.n_head, side)
    return LayerArrays(entropy=entropy, mean=pooled.cpu().numpy(), block=np.array(b))


def pattern_summaries(t: Trace, side: int, on_layer: Callable[[int], None] | None = None) -> dict:
    """What the views that read every head of every layer show, one layer at a time:
    entropy [layer, head] (mean row entropy in bits) and `means` [layer, q', k'], each
    layer's pattern averaged over heads and max-pooled to at most `side` per axis in
    blocks of `block` tokens. Each layer's summary is kept in the trace's cache, so a second
    call (or a stopped one resumed) costs nothing for the layers already done.
    `on_layer(L)` is called before each layer that has to be computed."""
    entropy, means = [], []
    for L in range(t.n_layer):
        got = t.memo(("pattern_summary", L, side), _summary_of(t, L, side),
                     on_miss=on_layer and (lambda L=L: on_layer(L)),
                     label=_("Summarising layer {layer}'s attention heads…").format(layer=L))
        entropy.append(got["entropy"])
        means.append(got["mean"])
    return {"entropy": np.stack(entropy), "means": np.stack(means), "block": int(got["block"])}


def _summary_of(t: Trace, layer: int, side: int) -> Callable[[], LayerArrays]:
    def compute():
        with torch.inference_mode():
            return _layer_summary(t, layer, side)
    return compute


def prefetch_pattern_summaries(t: Trace, side: int) -> int:
    """Queue pattern_summaries(t, side)'s layers to be computed while the compute lane has nothing
    asked of it (core.lane), so a view that needs them later finds them done. Returns how many
    layers were queued."""
    return sum(t.prefetch_memo(("pattern_summary", L, side), _summary_of(t, L, side),
                               label=_("Summarising layer {layer}'s attention heads…").format(layer=L))
               for L in range(t.n_layer))


def summaries_cached(t: Trace, side: int) -> bool:
    """Whether pattern_summaries(t, side) would compute nothing."""
    return all((t.key, "memo", ("pattern_summary", L, side)) in t.cache for L in range(t.n_layer))


def summaries_seconds(t: Trace) -> float:
    """A rough guess of pattern_summaries' seconds on a 2-core CPU, to ask before a long one:
    its flops at 40 GFLOP/s (measured: ~55 for gpt2-small's shape at 1,024 tokens, where it
    takes 0.9 s; gpt2-large's shape comes out at ~9 s, gpt2-xl's at ~17 s)."""
    n, d = t.n_tokens, t.lm.d_model
    flops = t.n_layer * (2 * n * d * 2 * d + t.n_head * (2 * n * n * (d // t.n_head) + 12 * n * n))
    return flops / 40e9


def head_across_layers(t: Trace, head: int, side: int) -> tuple[np.ndarray, int]:
    """[layer, q', k'] head `head`'s pattern in every layer, max-pooled to at most `side` per
    axis (blocks of the returned size); one head at a time, never [layer, head, pos, pos]."""
    got = t.memo(("head_across", head, side), _head_across_of(t, head, side),
                 label=_("Computing head {head}'s pattern in every layer…").format(head=head))
    return got["grids"], int(got["block"])


def _head_across_of(t: Trace, head: int, side: int) -> Callable[[], LayerArrays]:
    def compute():
        grids = [_pool(t.pattern_tensor(L, head, keep=False), side) for L in range(t.n_layer)]  # pooled on the device
        return LayerArrays(grids=torch.stack([g for g, _ in grids]).cpu().numpy(), block=np.array(grids[0][1]))
    return compute


def head_across_cached(t: Trace, head: int, side: int) -> bool:
    """Whether head_across_layers(t, head, side) would compute nothing."""
    return (t.key, "memo", ("head_across", head, side)) in t.cache


def prefetch_head_across(t: Trace, head: int, side: int) -> bool:
    """Queue head_across_layers(t, head, side) to be computed while the compute lane has nothing asked
    of it (core.lane). True when it was queued."""
    return t.prefetch_memo(("head_across", head, side), _head_across_of(t, head, side),
                           label=_("Computing head {head}'s pattern in every layer…").format(head=head))


# ---- induction ----------------------------------------------------------------------------
INDUCTION_MIN_LENGTH = 2  # random tokens in each copy, at least: the second copy's first token is then a query


def repeated_random_ids(lm: LoadedModel, length: int = INDUCTION_LENGTH, seed: int = INDUCTION_SEED) -> list[int]:
    """[bos] + r + r for `length` random ordinary token ids r, sized to the model's context: fewer
    tokens when it is short, and no bos when even 2 tokens a copy would not fit with it; drawn from
    the tokens the model learned where its checkpoint lists them. Raises PromptError, saying so, when
    the context is shorter than two copies of INDUCTION_MIN_LENGTH tokens."""
    bos = lm.tokenizer.bos_token_id
    if bos is not None and (lm.n_ctx - 1) // 2 < INDUCTION_MIN_LENGTH:
        bos = None
    room = (lm.n_ctx - (bos is not None)) // 2
    if room < INDUCTION_MIN_LENGTH:
        raise PromptError(_("This model reads at most {n_ctx} tokens; measuring induction needs {need}: random "
                            "tokens, then the same tokens again.").format(n_ctx=lm.n_ctx,
                                                                         need=2 * INDUCTION_MIN_LENGTH))
    length = max(INDUCTION_MIN_LENGTH, min(length, room))
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    pool = np.array([i for i in (lm.trained_token_ids or range(lm.d_vocab)) if i not in special])
    r = np.random.default_rng(seed).choice(pool, size=length, replace=len(pool) < length).tolist()
    return ([bos] if bos is not None else []) + r + r


def _projection(t: Trace, layer: int, part: int, rows) -> torch.Tensor:
    """q (part 0) or k (part 1) of every head for the given rows, [head, rows, d_head]: one
    matrix product over that part's columns, from ln_1 of the stored residual."""
    w = t.lm.arch.blocks[layer]
    return w.project(w.ln1(t.tensor("resid", (layer,))[rows]), part)


def induction_scores(lm: LoadedModel, length: int = INDUCTION_LENGTH, seed: int = INDUCTION_SEED) -> np.ndarray:
    """[layer, head] induction scores from one forward on random tokens repeated twice.

    Each weight read is exp(q·k·scale - lse) of one (query, key) pair, so no layer's
    pattern is formed or cached."""
    ids = repeated_random_ids(lm, length, seed)
    length = len(ids) // 2  # the bos, if any, is the odd one
    offset = len(ids) - 2 * length
    t = trace_ids(lm, ids, cache=ByteBoundedCache(0))
    out = np.empty((t.n_layer, t.n_head))
    with torch.inference_mode():
        for L in range(t.n_layer):
            q, k = _projection(t, L, 0, slice(None)), _projection(t, L, 1, slice(None))
            # [head, query - (length - 1)]
            w = weights_at(q, k, t.tensor("lse", (L,)), lm.arch.blocks[L].scale, length - 1)
            queries = offset + length + np.arange(length - 1)
            out[L] = w[:, queries - (length - 1)].double().mean(-1).cpu().numpy()
    return out


# ---- slices of the trace the views show ------------------------------------------------------
def token_focus(t: Trace, pos: int) -> tuple[np.ndarray, np.ndarray]:
    """(attends_to, attended_by) of the token at `pos`, computed once per trace (see _token_focus)."""
    got = t.memo(("focus", pos), lambda: LayerArrays(zip(("to", "from"), _token_focus(t, pos))),
                 label=_("Reading every layer's attention to and from token {pos}…").format(pos=pos))
    for a in got.values():
        a.flags.writeable = False
    return got["to"], got["from"]


def _token_focus(t: Trace, pos: int) -> tuple[np.ndarray, np.ndarray]:
    """(attends_to [layer, head, key_pos 0..pos], attended_by [layer, head, query_pos pos..n-1]):
    where the token at `pos` looks, and who looks at it, in every layer and head.

    Each weight is exp(q·k·scale - lse): per layer, q of the queries pos..n-1 and k of the
    keys 0..pos, one projection of n + 1 rows in all, and no pattern."""
    n = t.n_tokens
    to = np.empty((t.n_layer, t.n_head, pos + 1), dtype=np.float32)
    frm = np.empty((t.n_layer, t.n_head, n - pos), dtype=np.float32)
    with torch.inference_mode():
        for L in range(t.n_layer):
            q = _projection(t, L, 0, slice(pos, None))  # [head, n - pos, d_head]; row 0 is `pos` itself
            k = _projection(t, L, 1, slice(0, pos + 1))  # [head, pos + 1, d_head]; the last row is `pos`
            lse = t.tensor("lse", (L, slice(None), slice(pos, None)))  # [head, n - pos]
            scale = t.lm.arch.blocks[L].scale
            to[L] = torch.exp(torch.bmm(q[:, :1], k.transpose(1, 2))[:, 0] * scale - lse[:, :1]).cpu().numpy()
            frm[L] = torch.exp(torch.bmm(q, k[:, -1:].transpose(1, 2))[..., 0] * scale - lse).cpu().numpy()
    return to, frm


def attends_to(t: Trace, pos: int) -> np.ndarray:
    """[layer, head, key_pos] for key_pos 0..pos: where the token at `pos` looks."""
    return token_focus(t, pos)[0]


def attended_by(t: Trace, pos: int) -> np.ndarray:
    """[layer, head, query_pos] for query_pos pos..n-1: who looks at the token at `pos`."""
    return token_focus(t, pos)[1]
