"""The contribution graph ("Information flow routes", Ferrando & Voita 2024): which earlier
residual states, through which heads and MLPs, built the prediction at one position.

Each block updates the residual stream in two steps, each a sum of parts:

    mid(L, q)  = pre(L, q) + sum over heads h and positions j <= q of A_h[q, j] v_j^h W_O^h + b_O
    post(L, q) = mid(L, q) + MLP(mid(L, q))

A part c of a sum y gets the proximity max(0, |y|_1 - |y - c|_1), normalised over the
parts of that sum (Ferrando & Voita 2024): a part close to the whole carries it. Every
(head, source) pair is a part of its own; an attention edge j -> q carries the summed share
of the heads' parts from j. Starting from post(n_layer - 1, pos), edges are kept and their
sources expanded, layer by layer downwards (pre(L, q) is post(L - 1, q); pre(0, q) is the
embeddings). Two conventions (`CONVENTIONS`):

- EVERY_PART (the default): every term of the sum is a part, so the shares account for the
  whole state: b_O is a part of mid's sum, b_V stays inside each (head, source) part (it is
  A v W_O with v = ln_1(x) W_V + b_V); an edge is kept when its share is >= the threshold;
  shares are never renormalised; the prompt is read as traced, with no token added.
- LLMTT: Meta's LLM Transparency Tool as its app runs GPT-2 (routes/contributions.py,
  routes/graph.py, server/app.py, with TransformerLens' from_pretrained, which folds the value
  biases into b_O): <|endoftext|> is put in front of the prompt; v = ln_1(x) W_V, so no part
  carries b_V, and b_O (with sum_h b_V^h W_O^h folded in) is in the whole but in no part and
  not in the denominator; a proximity is |y|_1 - |y - c + 1e-6|_1 (torch's pairwise_distance
  adds its eps) floored at 1e-5, and every head's part from every later position (0, so
  floored at that) is in the denominator too; with `renormalise` (the app's default) every
  part, each (head, source) on its own, at or below the threshold is set to 0 and the rest of
  its sum rescaled to 1, then an edge is kept when it is > 0; without, when it is > the
  threshold; the residual and the attention from a position to itself are one edge there
  (their sum is compared), drawn here as its two parts.

Exact, and fast at 1,024 tokens without forming the [head, pos, d_model] parts. Where a
part c is no larger than y coordinate by coordinate, |y|_1 - |y - c|_1 is the linear
sign(y) · c, which for every (head, source) at once is one projection of sign(y) back
through W_O. A part can only break that on coordinates where |y| is below its largest
coordinate, which is at most A_h[q, j] |v_j^h|_2 times W_O^h's largest column norm: the
parts under a cutoff get those few coordinates (the k where |y| is smallest) corrected
exactly, the parts over it are measured in full, and k is chosen per layer to cost least.
A state's shares are computed once and kept in the trace's cache, so moving the threshold
only computes the states it newly reaches.

Dimension names: layer head pos d_model d_head.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .arch import BlockWeights, attn_out, mlp
from .attribution import attention_at
from .cache import LayerArrays
from .model import LoadedModel
from .trace import Trace, trace_ids

MAX_NODES = 400  # residual states in one graph, at most
EVERY_PART, LLMTT = "every_part", "llm_tt"
CONVENTIONS = (EVERY_PART, LLMTT)
LLMTT_FLOOR = 1e-5  # LLM-TT's get_contributions: every proximity clipped to at least this
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's eps: |x1 - x2 + eps|
_CUTOFFS = (0, 4, 8, 16, 32, 64, 128, 256, 512)  # coordinates corrected for every small part, candidates
_CHUNK_ELEMENTS = 1 << 23  # of the [query, head, source, coordinate] corrections formed at once
DENSE_FROM = 12  # form every value vector once queries x heads x this reaches d_model (see _Values)


@dataclass(frozen=True)
class Edge:
    """One route into a residual state at position `target` in block `layer`.

    kind "attention": pre(layer, source) -> mid(layer, target) through the heads in `heads`
    ((head, share) pairs, largest first, summing to about `weight`); "skip":
    pre(layer, target) -> mid(layer, target), the residual around attention; "mlp":
    mid -> post through the MLP; "mlp_skip": mid -> post around the MLP (source = target).
    `weight`: the part's share of the state it enters, 0..1."""

    layer: int
    source: int
    target: int
    kind: str
    weight: float
    heads: tuple = ()


class _Values:
    """The value vectors v[j, h] = ln_1(x_j) W_V^h + b_V^h of one layer, as the shares need them:
    formed for every position when many queries share them (`dense`), otherwise only ever
    read through products with ln_1(x) (no [pos, d_model] x [d_model, d_model] product, which
    dominates gpt2-xl at 1,024 tokens when the graph reaches a position or two per layer)."""

    def __init__(self, h1: torch.Tensor, W_V: torch.Tensor, b_V: torch.Tensor, dense: bool):
        self.h1, self.W_V, self.b_V = h1, W_V, b_V  # [pos, d_model], [d_model, head, d_head], [head, d_head]
        self.v = None  # [pos, head, d_head] once formed
        if dense:
            self.densify()

    def densify(self) -> None:
        self.v = torch.einsum("jd,dhs->jhs", self.h1, self.W_V) + self.b_V

    def costs(self) -> tuple[int, int]:
        """Multiply-adds (per part and corrected coordinate, per part measured in full)."""
        d, hs = self.W_V.shape[0], self.W_V.shape[2]
        return (hs, hs * d + d) if self.v is not None else (d, 2 * d * hs + d)  # a part measured in full: its v W_O

    def mix(self, A: torch.Tensor) -> torch.Tensor:
        """[query, head, d_head]: sum_j A[q, h, j] v[j, h] (each row of A sums to 1)."""
        if self.v is not None:
            return torch.einsum("qhj,jhs->qhs", A, self.v)
        return torch.einsum("qhd,dhs->qhs", A @ self.h1, self.W_V) + self.b_V

    def dot(self, w: torch.Tensor) -> torch.Tensor:
        """[query, head, pos]: v[j, h] · w[q, h] for w [query, head, d_head]."""
        if self.v is not None:
            return torch.einsum("jhs,qhs->qhj", self.v, w)
        back = torch.einsum("dhs,qhs->qhd", self.W_V, w)  # w read back to d_model
        return back @ self.h1.T + torch.einsum("hs,qhs->qh", self.b_V, w)[..., None]

    def times(self, M: torch.Tensor) -> torch.Tensor:
        """[query, head, pos, k]: v[j, h] @ M[h, :, q, :] for M [head, d_head, query, k]."""
        if self.v is not None:
            return torch.einsum("jhs,hsqk->qhjk", self.v, M)
        P = torch.einsum("dhs,hsqk->qhdk", self.W_V, M)
        return torch.einsum("jd,qhdk->qhjk", self.h1, P) + torch.einsum("hs,hsqk->qhk", self.b_V, M)[:, :, None]

    def rows(self, j: torch.Tensor) -> torch.Tensor:
        """[n, head, d_head]: v[j] for the positions j."""
        if self.v is not None:
            return self.v[j]
        return (self.h1[j] @ self.W_V.reshape(self.W_V.shape[0], -1)).view(len(j), *self.b_V.shape) + self.b_V


_VO_BOUNDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _vo_bounds(w: BlockWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """([head], [head]): the largest column norm of W_V^h W_O^h and the largest |b_V^h W_O^h|,
    so that every coordinate of v[j, h] W_O^h is at most |ln_1(x_j)|_2 cv[h] + cb[h].
    Weights only: computed once per block."""
    if w not in _VO_BOUNDS:
        G = torch.einsum("hds,hdt->hst", w.W_V, w.W_V)  # W_V^h' W_V^h [head, d_head, d_head]
        cv = torch.einsum("hsd,hst,htd->hd", w.W_O, G, w.W_O).clamp_min(0).sqrt().amax(-1)
        cb = torch.einsum("hs,hsd->hd", w.b_V, w.W_O).abs().amax(-1)
        _VO_BOUNDS[w] = (cv, cb)
    return _VO_BOUNDS[w]


def _plan(bound: torch.Tensor, y_sorted: torch.Tensor, per_coord: int, per_big: int) -> tuple[int, int]:
    """(k, multiply-adds): parts whose bound is at most the (k+1)-th smallest |y| get k
    coordinates corrected, larger ones are measured in full; the k that costs least."""
    ks = [k for k in _CUTOFFS if k < y_sorted.shape[1]]
    flat = bound.flatten(1).sort(dim=-1).values  # [query, parts]
    n_big = flat.shape[1] - torch.searchsorted(flat, y_sorted[:, ks].contiguous(), right=True)  # [query, cutoff]
    cost = [k * per_coord * bound.numel() + per_big * n for k, n in zip(ks, n_big.sum(0).tolist())]
    best = min(range(len(ks)), key=cost.__getitem__)
    return ks[best], cost[best]


def _head_proximities(mids: torch.Tensor, A: torch.Tensor, values: _Values, W_O: torch.Tensor,
                      bound: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """[query, head, src] unnormalised proximities of the parts c = A[q, h, j] v[j, h] W_O[h] of
    the states mids [query, d_model], for A [query, head, src] (0 after each query), W_O
    [head, d_head, d_model] and bound [query, head, src] >= max_d |c_d| (clamped at 0 unless
    `clamp` is False). Whole-layer tensor operations: no loop over positions (many small
    operations are slow on a busy CPU)."""
    Q, d = mids.shape
    y_abs = mids.abs()
    y_sorted, order = torch.sort(y_abs, dim=-1)
    rho = y_sorted[:, _plan(bound, y_sorted, *values.costs())[0], None]  # [query, 1]
    small = torch.where(bound <= rho[:, :, None], bound, 0).amax((1, 2))  # [query]: the largest small part
    k = int(torch.searchsorted(y_sorted, small[:, None]).max())  # coordinates a small part can overshoot
    sign = torch.sign(mids)
    e = A * values.dot(torch.einsum("hsd,qd->qhs", W_O, sign))  # the linear term sign(y) · c, exact where |c| <= |y|
    D = order[:, :k]  # [query, k]: where |y| is smallest
    step = max(1, _CHUNK_ELEMENTS // (A.shape[1] * max(A.shape[2], d) * max(k, 1)))
    for s in range(0, Q if k else 0, step):
        rows = slice(s, s + step)
        cD = A[rows, ..., None] * values.times(W_O[:, :, D[rows]])  # [query, head, src, k]
        yD, sD = mids[rows].gather(1, D[rows])[:, None, None], sign[rows].gather(1, D[rows])[:, None, None]
        e[rows] += (yD.abs() - (yD - cD).abs() - sD * cD).sum(-1)
    qi, hi, ji = torch.nonzero(bound > rho[:, :, None]).unbind(1)  # the parts measured in full
    sources, which = torch.unique(ji, return_inverse=True)
    step = max(1, _CHUNK_ELEMENTS // (W_O.shape[0] * d))
    for s in range(0, len(sources), step):  # every head's v W_O at a block of the sources involved
        vo = torch.einsum("nhs,hsd->nhd", values.rows(sources[s:s + step]), W_O)  # [source, head, d_model]
        at = (which >= s) & (which < s + step)
        c = A[qi[at], hi[at], ji[at], None] * vo[which[at] - s, hi[at]]  # [part, d_model]
        e[qi[at], hi[at], ji[at]] = y_abs[qi[at]].sum(-1) - (mids[qi[at]] - c).abs().sum(-1)
    return e.clamp_min_(0) if clamp else e


def _compute_states(lm: LoadedModel, t: Trace, layer: int, queries: list[int],
                    convention: str = EVERY_PART) -> dict[int, LayerArrays]:
    """For each query position q: the shares of the parts of mid(layer, q) and post(layer, q)."""
    w = lm.arch.blocks[layer]
    H, d = lm.n_head, lm.d_model
    m = max(queries) + 1
    llmtt = convention == LLMTT
    out = {}
    with torch.inference_mode():
        x = t.tensor("resid", (layer, slice(0, m)))
        h1 = w.ln1(x)
        A = attention_at(lm, t, layer, queries, h1)  # [query, head, pos], 0 after each query
        W_V = w.W_V.permute(1, 0, 2)  # [d_model, head, d_head], as _Values reads it
        b_V = torch.zeros_like(w.b_V) if llmtt else w.b_V  # LLM-TT: folded into b_O, so in no part
        values = _Values(h1, W_V, b_V, dense=len(queries) * H * DENSE_FROM >= d)
        qs = torch.as_tensor(queries, device=x.device)
        mids = x[qs] + attn_out(w, values.mix(A).transpose(0, 1))  # [query, d_model]
        if llmtt:  # the folded b_V: each row of A sums to 1
            mids = mids + torch.einsum("hs,hsd->d", w.b_V, w.W_O)
        mlp_out = mlp(w, mids)[2]
        W_O, b_O = w.W_O, w.b_O
        cv, cb = _vo_bounds(w)
        cb = torch.zeros_like(cb) if llmtt else cb  # no part carries b_V
        bound = A * (h1.norm(dim=-1)[None, None] * cv[None, :, None] + cb[None, :, None])
        if values.v is None:  # where the residual is small (early layers) that bound may leave too much to measure
            planned = _plan(bound, mids.abs().sort(dim=-1).values, *values.costs())[1]
            if planned + 3 * len(queries) * H * m * d > m * d * d:
                values.densify()
        if values.v is not None:  # |v| known: a tighter bound
            bound = torch.minimum(bound, A * (values.v.norm(dim=-1).T * W_O.norm(dim=1).amax(-1)[:, None])[None])
        posts = mids + mlp_out
        l1 = lambda z: z.abs().sum(-1)  # noqa: E731
        if llmtt:
            e_fixed, e_heads, e_mlp, later = _llmtt_proximities(mids, x[qs], mlp_out, A, values, W_O, bound)
            later = later * H * (t.n_tokens - 1 - qs)  # every head's part from every later position
            e_heads.masked_fill_((torch.arange(m, device=x.device)[None] > qs[:, None])[:, None], 0)
        else:
            e_heads = _head_proximities(mids, A, values, W_O, bound)  # [query, head, pos]
            e_fixed = torch.stack([l1(mids) - l1(mids - x[qs]), l1(mids) - l1(mids - b_O)], -1).clamp_min(0)
            e_mlp = torch.stack([l1(posts) - l1(mids), l1(posts) - l1(mlp_out)], -1).clamp_min(0)  # mlp, mlp_skip
            later = 0
        total = (e_fixed.sum(-1) + e_heads.sum((1, 2)) + later).clamp_min(1e-12)[:, None]
        stages = torch.cat([e_fixed / total, e_mlp / e_mlp.sum(-1, keepdim=True).clamp_min(1e-12)], -1).cpu().numpy()
        heads = (e_heads / total[..., None]).cpu().numpy()
        for i, q in enumerate(queries):
            out[q] = LayerArrays(stages=stages[i], heads=heads[i, :, : q + 1].copy())
    return out


def _llmtt_proximities(mids, resid, mlp_out, A, values, W_O, bound):
    """LLM-TT's unnormalised proximities max(1e-5, |y|_1 - |y - c + eps|_1) of the parts of mid
    (skip, b_O = 0: [query, 2]; heads [query, head, src]) and of post (mlp, mlp_skip: [query, 2]),
    and that of a part 0 (every later position's), [query]. |y - c + eps|_1 is |y' - c|_1 for
    y' = y - eps, measured on y' by _head_proximities; |y|_1 - |y'|_1 is summed exactly per
    coordinate (in float32 it would be lost in rounding)."""
    l1 = lambda z: z.abs().sum(-1)  # noqa: E731
    eps, floor = PAIRWISE_EPS, LLMTT_FLOOR
    shift = torch.where(mids >= eps, eps, torch.where(mids <= 0, -eps, 2 * mids - eps)).sum(-1)  # |y|_1 - |y'|_1
    y = mids - eps
    e_heads = (_head_proximities(y, A, values, W_O, bound, clamp=False) + shift[:, None, None]).clamp_min(floor)
    skip = (l1(mids) - l1(y - resid)).clamp_min(floor)
    e_fixed = torch.stack([skip, torch.zeros_like(skip)], -1)  # b_O: in no part and not in the sum
    posts = mids + mlp_out
    e_mlp = torch.stack([l1(posts) - l1(mids - eps), l1(posts) - l1(mlp_out - eps)], -1).clamp_min(floor)
    return e_fixed, e_heads, e_mlp, shift.clamp_min(floor)


def state_shares(lm: LoadedModel, t: Trace, layer: int, queries,
                 convention: str = EVERY_PART) -> dict[int, LayerArrays]:
    """q -> the shares of the parts that wrote block `layer`'s states at q, kept in the trace's
    cache: stages [4] = (skip, b_O) of mid(layer, q) and (mlp, mlp_skip) of post(layer, q);
    heads [head, q + 1]: each (head, source) part's share of mid(layer, q). EVERY_PART: each
    sum's shares add up to 1. LLMTT (b_O's share 0; `t` as the graph reads it, see graph_trace):
    mid's add up to 1 less the floored parts from later positions, not returned."""
    queries = sorted({int(q) % t.n_tokens for q in queries})
    tag = () if convention == EVERY_PART else (convention,)
    name = lambda q: ("contribution_state", layer, q) + tag  # noqa: E731
    missing = [q for q in queries if (t.key, "memo", name(q)) not in t.cache]
    fresh = _compute_states(lm, t, layer, missing, convention) if missing else {}

    def compute(q: int) -> LayerArrays:
        return fresh[q] if q in fresh else _compute_states(lm, t, layer, [q], convention)[q]

    return {q: t.memo(name(q), lambda q=q: compute(q)) for q in queries}


_WITH_BOS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def graph_trace(lm: LoadedModel, t: Trace, convention: str = EVERY_PART) -> Trace:
    """The trace the graph reads: `t` itself, or for LLMTT `t` with <|endoftext|> in front (as
    TransformerLens' to_tokens(prepend_bos=True) reads a prompt; one forward, kept while `t`
    lives), unless the prompt fills the context or the tokenizer has no such token."""
    bos = lm.tokenizer.bos_token_id
    if convention != LLMTT or bos is None or t.n_tokens >= lm.n_ctx:
        return t
    if t not in _WITH_BOS:
        _WITH_BOS[t] = trace_ids(lm, [int(bos)] + t.token_ids.tolist(), prompt=t.prompt, cache=t.cache)
    return _WITH_BOS[t]


def _renormalised(parts: np.ndarray, threshold: float) -> np.ndarray:
    """LLM-TT's apply_threshold_and_renormalize: parts at or below the threshold set to 0 and
    the rest rescaled to sum to 1 (all 0 when none is left)."""
    kept = np.where(parts > threshold, parts, 0.0)
    total = kept.sum()
    return kept / total if total > 0 else kept


def _state_edges(layer: int, q: int, shares: LayerArrays, threshold: float, convention: str,
                 renormalise: bool) -> tuple[list[Edge], list[Edge]]:
    """(edges into post(layer, q), edges into mid(layer, q)) that the convention keeps; the
    second list is empty when the first is (mid is then not reached)."""
    skip, _, mlp, mlp_skip = (float(s) for s in shares["stages"])
    heads = shares["heads"]  # [head, q + 1]
    llmtt = convention == LLMTT
    if llmtt and renormalise:
        mlp, mlp_skip = _renormalised(np.array([mlp, mlp_skip]), threshold)
        flat = _renormalised(np.append(heads.ravel(), skip), threshold)
        heads, skip = flat[:-1].reshape(heads.shape), float(flat[-1])
    bar = 0.0 if llmtt and renormalise else threshold
    keep = (lambda w: w > bar) if llmtt else (lambda w: w >= bar)  # noqa: E731
    into_post = [Edge(layer, q, q, kind, float(w)) for kind, w in (("mlp", mlp), ("mlp_skip", mlp_skip)) if keep(w)]
    if not into_post:
        return [], []
    per_source = heads.sum(0)
    sources = keep(per_source)
    into_mid = []
    if llmtt and keep(skip + per_source[q]):  # LLM-TT's one edge from q itself: drawn as its parts
        sources[q] = per_source[q] > 0
        if skip > 0:
            into_mid.append(Edge(layer, q, q, "skip", skip))
    elif keep(skip):
        into_mid.append(Edge(layer, q, q, "skip", skip))
    for j in np.flatnonzero(sources):
        order = np.argsort(-heads[:, j])[:3]
        top = tuple((int(h), float(heads[h, j])) for h in order if heads[h, j] > 0)
        into_mid.append(Edge(layer, int(j), q, "attention", float(per_source[j]), top))
    return into_post, into_mid


def contribution_graph(lm: LoadedModel, t: Trace, pos: int, threshold: float = 0.04,
                       max_nodes: int = MAX_NODES, on_layer: Callable[[int], None] | None = None,
                       convention: str = EVERY_PART, renormalise: bool = True) -> list[Edge]:
    """The edges, top block down, that the convention keeps at `threshold` (EVERY_PART: share
    >= threshold; LLMTT: see the module docstring, `renormalise` as its app's checkbox),
    reachable from the final residual at `pos` of `t`; at most `max_nodes` residual states (the
    strongest sources are kept when a layer would pass it). Positions are graph_trace's (for
    LLMTT, <|endoftext|> is 0). `on_layer(i)` is called before the i-th block from the top (0
    first), where an app can show progress or stop; each block's shares are cached, so a
    stopped run picks up where it was."""
    g = graph_trace(lm, t, convention)
    pos = pos % t.n_tokens + g.n_tokens - t.n_tokens
    edges: list[Edge] = []
    frontier, seen = [pos], 1
    for layer in range(g.n_layer - 1, -1, -1):
        if on_layer is not None:
            on_layer(g.n_layer - 1 - layer)
        shares = state_shares(lm, g, layer, frontier, convention)
        below: dict[int, float] = {}  # source position -> its strongest edge into this layer
        layer_edges: list[Edge] = []
        for q in frontier:
            into_post, into_mid = _state_edges(layer, q, shares[q], threshold, convention, renormalise)
            layer_edges += into_post + into_mid
            for e in into_mid:
                below[e.source] = max(below.get(e.source, 0.0), e.weight)
        if seen + len(below) > max_nodes:
            kept = set(sorted(below, key=lambda j: -below[j])[: max(0, max_nodes - seen)])
            layer_edges = [e for e in layer_edges if e.kind in ("mlp", "mlp_skip") or e.source in kept]
            below = {j: w for j, w in below.items() if j in kept}
        edges += layer_edges
        seen += len(below)
        frontier = sorted(below)
        if not frontier:
            break
    return edges


def graph_cached(t: Trace, pos: int, convention: str = EVERY_PART) -> bool:
    """Whether the top block's shares at `pos` are cached (a graph at this position was drawn)."""
    g = t if convention == EVERY_PART else _WITH_BOS.get(t, t)
    tag = () if convention == EVERY_PART else (convention,)
    name = ("contribution_state", g.n_layer - 1, pos % t.n_tokens + g.n_tokens - t.n_tokens) + tag
    return (g.key, "memo", name) in g.cache


def graph_seconds(t: Trace) -> float:
    """A rough guess of contribution_graph's seconds on a 2-core CPU, to ask before a long one.
    Measured at 1,024 tokens (random weights, attention spread evenly: the slowest case):
    GPT-2 small's shape ~1.5-2.8 s, gpt2-xl's ~8-16 s (the range is a quiet and a busy machine)."""
    return 0.1 * t.n_layer * (t.n_tokens / 1024) * (t.lm.d_model / 768)
