"""The contribution graph ("Information flow routes", Ferrando & Voita 2024): which earlier
residual states, through which layers, built the prediction at one position.

Each block writes residual state r(l+1, p) as a sum: the state below it, r(l, p) (the skip
path); what attention brought from every visible position j, sum over heads of
A_h[p, j] v_j^h W_O^h (plus the shared bias b_O); and the MLP's output. A part c of a sum y
gets the proximity weight max(0, |y|_1 - |y - c|_1), normalised over the parts, as in the
paper: a part close to the whole carries it. Starting from the chosen position at the top,
edges above the threshold are kept and their sources expanded, layer by layer downwards.

Dimension names: layer head pos d_model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .forward import attention_scale, split_heads
from .model import LoadedModel
from .trace import Trace

MAX_NODES = 400


@dataclass(frozen=True)
class Edge:
    layer: int  # the edge enters r(layer + 1, target)
    source: int  # source position (for "attention" and "skip"), the target position for "mlp"
    target: int
    kind: str  # "skip", "attention" or "mlp"
    weight: float  # share of r(layer + 1, target), 0..1


def _proximity(y: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """parts [n, d], y [d] -> [n] normalised proximity weights."""
    e = (y.abs().sum() - (y[None] - parts).abs().sum(-1)).clamp_min(0)
    return e / e.sum().clamp_min(1e-12)


def block_parts(lm: LoadedModel, t: Trace, layer: int, positions: list[int]) -> dict[int, dict]:
    """For each position q: the parts of r(layer + 1, q) as tensors: skip [d], attention [q+1, d]
    (one per source position, heads summed, bias b_O apart), bias [d], mlp [d]."""
    block = lm.model.transformer.h[layer]
    H, d = lm.n_head, lm.d_model
    hs = d // H
    resid = t.tensor("resid", (layer,))  # [pos, d_model]
    with torch.inference_mode():
        x = block.ln_1(resid)
        W, b = block.attn.c_attn.weight, block.attn.c_attn.bias
        q_all = split_heads(torch.addmm(b[:d], x, W[:, :d]), H)  # [head, pos, d_head]
        k_all = split_heads(torch.addmm(b[d:2 * d], x, W[:, d:2 * d]), H)
        v_all = split_heads(torch.addmm(b[2 * d:], x, W[:, 2 * d:]), H)
        W_O = block.attn.c_proj.weight.view(H, hs, d)
        lse = t.tensor("lse", (layer,))  # [head, pos]
        scale = attention_scale(block.attn, layer)
        mlp_out = t.layer_tensor(layer, "mlp_out")
        out = {}
        for q in positions:
            a = torch.exp(torch.einsum("hd,hjd->hj", q_all[:, q], k_all[:, : q + 1]) * scale - lse[:, q, None])  # [H, q+1]
            attn = torch.einsum("hj,hjd,hdm->jm", a, v_all[:, : q + 1], W_O)  # [q+1, d_model]
            out[q] = dict(skip=resid[q], attention=attn, bias=block.attn.c_proj.bias, mlp=mlp_out[q])
    return out


def contribution_graph(lm: LoadedModel, t: Trace, pos: int, threshold: float = 0.04) -> list[Edge]:
    """The edges, top (layer n_layer - 1) down, whose weight in the state they write is at least
    `threshold`, reachable from the final residual at `pos`. At most MAX_NODES states."""
    pos = pos % t.n_tokens
    edges: list[Edge] = []
    frontier = {pos}
    seen = 1
    for layer in range(t.n_layer - 1, -1, -1):
        parts = block_parts(lm, t, layer, sorted(frontier))
        below: set[int] = set()
        for q, p in parts.items():
            stack = torch.cat([p["skip"][None], p["attention"], p["mlp"][None], p["bias"][None]])
            y = stack.sum(0)
            w = _proximity(y, stack).cpu().numpy()
            if w[0] >= threshold:
                edges.append(Edge(layer, q, q, "skip", float(w[0])))
                below.add(q)
            for j in np.nonzero(w[1:q + 2] >= threshold)[0]:
                edges.append(Edge(layer, int(j), q, "attention", float(w[1 + j])))
                below.add(int(j))
            if w[q + 2] >= threshold:
                edges.append(Edge(layer, q, q, "mlp", float(w[q + 2])))
        if seen + len(below) > MAX_NODES:
            below = set(sorted(below, key=lambda j: -max(e.weight for e in edges if e.layer == layer and e.source == j))
                        [: max(0, MAX_NODES - seen)])
            edges = [e for e in edges if e.layer != layer or e.kind == "mlp" or e.source in below]
        seen += len(below)
        frontier = below
        if not frontier:
            break
    return edges
