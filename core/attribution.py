"""The residual stream at chosen positions, split into the parts that wrote it, without
recomputing whole layers.

A view that explains one prediction needs each layer's attention and MLP at one query
position only. Attention at query q reads every earlier position, but only through ln_1 of
their residuals: its scores are ln_1(x_j) · (W_K^h q^h) (the query projected back to
d_model), and since a head's weights sum to 1 its output is
(sum_j A[h, j] ln_1(x_j)) W_V^h + b_V^h. So one position costs O(head · pos · d_model) per
layer instead of a block's O(pos · d_model²): a few milliseconds at 1,024 tokens.

`attention_at` gives the weights of any set of queries (the contribution graph's
frontier); `position_parts` the whole decomposition at one position, kept in the trace's
cache, which direct logit attribution, neuron attribution and "what a head writes" read.

Dimension names as in core.trace: layer head pos d_model d_head d_mlp.
"""
from __future__ import annotations

import numpy as np
import torch

from .arch import mlp
from .cache import LayerArrays
from .model import LoadedModel
from .trace import Trace


def attention_at(lm: LoadedModel, t: Trace, layer: int, queries, h1: torch.Tensor | None = None) -> torch.Tensor:
    """[query, head, pos]: the attention weights of the given query positions in `layer`
    (0 after each query), from the stored residual. `h1` (ln_1 of the residual, rows
    0..max(queries)) may be passed when the caller has it already."""
    w = lm.arch.blocks[layer]
    queries = torch.as_tensor(np.asarray(queries, dtype=np.int64), device=lm.device)
    m = int(queries.max()) + 1
    if h1 is None:
        h1 = w.ln1(t.tensor("resid", (layer, slice(0, m))))  # [pos, d_model]
    q = w.project(h1[queries], 0).transpose(0, 1)  # [query, head, d_head]
    if len(queries) * lm.n_head < lm.d_model:  # few queries: project them back instead of forming every key
        back = torch.einsum("hds,qhs->qhd", w.W_K, q)  # [query, head, d_model]
        scores = back @ h1[:m].T + (q * w.b_K).sum(-1, keepdim=True)  # [query, head, pos]
    else:
        scores = torch.einsum("qhs,hjs->qhj", q, w.project(h1[:m], 1))
    scores = scores * w.scale
    later = torch.arange(m, device=lm.device)[None, :] > queries[:, None]  # [query, pos]
    return torch.softmax(scores.masked_fill_(later[:, None, :], float("-inf")), dim=-1)


def _layer_at(lm: LoadedModel, t: Trace, layer: int, pos: int):
    """(heads [head, d_model], mlp_post [d_mlp], mlp_out [d_model]) at one position."""
    w = lm.arch.blocks[layer]
    x = t.tensor("resid", (layer, slice(0, pos + 1)))  # [pos, d_model]
    h1 = w.ln1(x)
    a = attention_at(lm, t, layer, [pos], h1)[0]  # [head, pos]
    z = torch.einsum("hd,hds->hs", a @ h1, w.W_V) + w.b_V  # [head, d_head]: each head's weighted mean of ln_1(x)
    heads = torch.einsum("hs,hsm->hm", z, w.W_O)  # [head, d_model]
    _, post, out = mlp(w, x[pos] + heads.sum(0) + w.b_O)
    return heads, post, out


def position_parts(lm: LoadedModel, t: Trace, pos: int) -> LayerArrays:
    """Everything that was added into the residual stream at `pos`, kept in the trace's cache:
    embed, pos_embed [d_model]; heads [layer, head, d_model] (z W_O of each head, without
    b_O); attn_bias [layer, d_model] (b_O); mlp [layer, d_model] (the MLP's output, its bias
    included); mlp_post [layer, d_mlp] (activations after GELU); final [d_model] (the
    residual before ln_f, as the trace stored it). The parts add up to `final`."""
    pos = pos % t.n_tokens

    def compute() -> LayerArrays:
        with torch.inference_mode():
            per_layer = [_layer_at(lm, t, L, pos) for L in range(t.n_layer)]
            return LayerArrays(
                embed=t.tensor("embed", (pos,)).clone(), pos_embed=t.tensor("pos_embed", (pos,)).clone(),
                heads=torch.stack([h for h, _, _ in per_layer]),
                attn_bias=torch.stack([w.b_O for w in lm.arch.blocks]),
                mlp=torch.stack([o for _, _, o in per_layer]), mlp_post=torch.stack([p for _, p, _ in per_layer]),
                final=t.tensor("resid", (t.n_layer, pos)).clone())

    return t.memo(("position_parts", pos), compute)
