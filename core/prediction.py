"""Why this token? The logit lens, direct logit attribution, MLP neurons and what a head writes.

Everything reads the trace's stored residual stream and the per-layer arrays core already
caches; nothing runs a forward. The final LayerNorm is handled as TransformerLens's
`logit_attrs` does: its scale (the final residual's standard deviation at that position)
is frozen, so ln_f is linear and the logit splits exactly into one part per component
of the residual stream plus ln_f's bias term.

Dimension names as in core.trace: layer head pos d_model d_mlp vocab.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .layers import LayerArrays
from .model import LoadedModel
from .trace import Trace


def _unembed(lm: LoadedModel) -> torch.Tensor:
    return lm.model.lm_head.weight  # [vocab, d_model], tied to wte, no bias


# ---- logit lens ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogitLens:
    """The residual stream read as a prediction at every layer: rows are resid_pre of each block
    (row 0: the embeddings) and, last, the final residual; columns are `positions`.

    top_ids / top_probs [row, pos, k]: the k likeliest next tokens if the stream stopped there;
    target_probs [row, pos]: the probability of `targets[pos]` (by default the token that
    actually comes next; -1 where there is none, at the last position)."""

    positions: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    targets: np.ndarray
    target_probs: np.ndarray


def logit_lens(lm: LoadedModel, t: Trace, k: int = 5, positions=None, target: int | None = None) -> LogitLens:
    """ln_f and the unembedding applied to the residual before each block and after the last.

    `positions` (default: all) keeps the work to what a view shows: one [rows, vocab] product
    per position block, never [layer, pos, vocab] at once. `target`: a token id whose
    probability to report everywhere instead of each position's actual next token."""
    pos = np.arange(t.n_tokens) if positions is None else np.asarray(positions, dtype=np.int64)
    nxt = np.append(t.token_ids[1:], -1)[pos] if target is None else np.full(len(pos), target)
    rows = t.n_layer + 1
    top_ids = np.empty((rows, len(pos), k), dtype=np.int64)
    top_probs = np.empty((rows, len(pos), k), dtype=np.float32)
    target_probs = np.full((rows, len(pos)), np.nan, dtype=np.float32)
    W, ln_f = _unembed(lm), lm.model.transformer.ln_f
    with torch.inference_mode():
        for L in range(rows):
            x = t.tensor("resid", (L,))[torch.from_numpy(pos.copy())]  # [pos, d_model]
            probs = torch.softmax(ln_f(x) @ W.T, dim=-1)  # [pos, vocab]
            p, i = probs.topk(k, dim=-1)
            top_ids[L], top_probs[L] = i.cpu().numpy(), p.cpu().numpy()
            has = torch.as_tensor(nxt >= 0)
            if has.any():
                rows_with = torch.nonzero(has).flatten()
                target_probs[L, rows_with.cpu().numpy()] = probs[rows_with, torch.as_tensor(nxt)[rows_with]].cpu().numpy()
    return LogitLens(positions=pos, top_ids=top_ids, top_probs=top_probs, targets=nxt, target_probs=target_probs)


# ---- direct logit attribution ----------------------------------------------------------------------
@dataclass(frozen=True)
class Attribution:
    """How much each part of GPT-2 pushes one logit (or a logit difference) at one position.

    embed, pos_embed: the token and position embeddings' parts; heads [layer, head]: each
    attention head's output; attn_bias [layer]: each attention layer's output bias b_O;
    mlp [layer]: each MLP's output (its bias included); ln_bias: ln_f's bias through the
    unembedding. Their sum is `logit`, the model's own (a difference of two, for a pair)."""

    embed: float
    pos_embed: float
    heads: np.ndarray
    attn_bias: np.ndarray
    mlp: np.ndarray
    ln_bias: float
    logit: float

    @property
    def total(self) -> float:
        return float(self.embed + self.pos_embed + self.heads.sum() + self.attn_bias.sum() + self.mlp.sum() + self.ln_bias)


def head_outputs(lm: LoadedModel, t: Trace, layer: int, pos: int) -> torch.Tensor:
    """[head, d_model]: what each head of `layer` adds to the residual stream at `pos` (z W_O,
    without the layer's shared bias b_O)."""
    W_O = lm.model.transformer.h[layer].attn.c_proj.weight  # [d_model (heads' z side by side), d_model]
    z = t.layer_tensor(layer, "z")[pos]  # [head, d_head]
    H, hs = z.shape
    return torch.einsum("hd,hdm->hm", z, W_O.view(H, hs, -1))


def _frozen_ln(lm: LoadedModel, t: Trace, pos: int, direction: torch.Tensor):
    """(f, ln_bias_part): f(c) = ((c - mean c) / scale) · (gain ⊙ direction), the frozen-scale
    ln_f of a residual component read along `direction` [d_model]."""
    ln_f = lm.model.transformer.ln_f
    final = t.tensor("resid", (t.n_layer, pos))
    centred = final - final.mean()
    scale = (centred.pow(2).mean() + ln_f.eps).sqrt()
    w = ln_f.weight * direction

    def f(c: torch.Tensor) -> torch.Tensor:
        return ((c - c.mean(-1, keepdim=True)) / scale) @ w

    return f, float(ln_f.bias @ direction)


def direct_logit_attribution(lm: LoadedModel, t: Trace, token_id: int, pos: int = -1,
                             minus_token: int | None = None) -> Attribution:
    """Split the logit of `token_id` after position `pos` (or the difference logit(token_id) -
    logit(minus_token)) into the parts of the residual stream that wrote it."""
    pos = pos % t.n_tokens
    W = _unembed(lm)
    direction = W[token_id] - (W[minus_token] if minus_token is not None else 0)
    f, ln_bias = _frozen_ln(lm, t, pos, direction)
    blocks = lm.model.transformer.h
    with torch.inference_mode():
        heads = np.stack([f(head_outputs(lm, t, L, pos)).cpu().numpy() for L in range(t.n_layer)])
        attn_bias = np.array([float(f(blocks[L].attn.c_proj.bias)) for L in range(t.n_layer)])
        mlp = np.array([float(f(t.layer_tensor(L, "mlp_out")[pos])) for L in range(t.n_layer)])
        embed = float(f(t.tensor("embed", (pos,))))
        pos_embed = float(f(t.tensor("pos_embed", (pos,))))
        final = lm.model.transformer.ln_f(t.tensor("resid", (t.n_layer, pos)))
        logit = float(final @ direction)
    return Attribution(embed=embed, pos_embed=pos_embed, heads=heads.astype(np.float64), attn_bias=attn_bias,
                       mlp=mlp, ln_bias=ln_bias, logit=logit)


def head_writes(lm: LoadedModel, t: Trace, layer: int, head: int, pos: int, k: int = 10):
    """The tokens head (layer, head)'s output at `pos` pushes up and down most, through ln_f
    (scale frozen at that position) and the unembedding: (up_ids, up_values, down_ids,
    down_values), values in logits."""
    pos = pos % t.n_tokens
    ln_f = lm.model.transformer.ln_f
    with torch.inference_mode():
        out = head_outputs(lm, t, layer, pos)[head]
        final = t.tensor("resid", (t.n_layer, pos))
        scale = ((final - final.mean()).pow(2).mean() + ln_f.eps).sqrt()
        logits = (((out - out.mean()) / scale) * ln_f.weight) @ _unembed(lm).T  # [vocab]
        up, down = logits.topk(k), (-logits).topk(k)
    return (up.indices.cpu().numpy(), up.values.cpu().numpy(), down.indices.cpu().numpy(), -down.values.cpu().numpy())


# ---- MLP neurons ----------------------------------------------------------------------------------
def neuron_top_tokens(lm: LoadedModel, layer: int, neuron: int, k: int = 10):
    """What neuron `neuron` of `layer` writes, read directly through the unembedding: the
    tokens W_out[neuron] @ W_U pushes up and down most, (up_ids, up, down_ids, down)."""
    with torch.inference_mode():
        direct = lm.model.transformer.h[layer].mlp.c_proj.weight[neuron] @ _unembed(lm).T  # [vocab]
        up, down = direct.topk(k), (-direct).topk(k)
    return (up.indices.cpu().numpy(), up.values.cpu().numpy(), down.indices.cpu().numpy(), -down.values.cpu().numpy())


def top_neurons(t: Trace, layer: int, pos: int | None = None, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The k neurons of `layer` most active (after GELU) at `pos`, or at their peak over all
    positions (pos None): (neuron ids, activations), strongest first."""
    post = t.layer_tensor(layer, "mlp_post")  # [pos, d_mlp]
    act = post[pos] if pos is not None else post.max(0).values
    v, i = act.topk(min(k, act.shape[0]))
    return i.cpu().numpy(), v.cpu().numpy()


def neuron_activations(t: Trace, layer: int, neurons) -> np.ndarray:
    """[neuron, pos]: the given neurons' activations across the prompt."""
    return t.layer_act(layer, "mlp_post", (slice(None), np.asarray(neurons, dtype=np.int64))).T


def cached_lens(lm: LoadedModel, t: Trace, positions: np.ndarray, k: int, target: int | None) -> LogitLens:
    """`logit_lens`, kept per trace and window in the trace's cache (a rerun costs nothing)."""
    key = ("logit_lens", int(positions[0]), int(positions[-1]), k, target)
    got = t.memo(key, lambda: LayerArrays(vars(logit_lens(lm, t, k, positions, target))))
    return LogitLens(**got)


def token_probs_through_layers(lm: LoadedModel, t: Trace, pos: int, token_ids) -> np.ndarray:
    """[row, token]: the probability of each token after position `pos` when the residual stream
    is read (ln_f, unembedding) before each block and after the last."""
    ids = torch.from_numpy(np.array(token_ids, dtype=np.int64))
    with torch.inference_mode():
        x = t.tensor("resid", (slice(None), pos % t.n_tokens))  # [row, d_model]
        probs = torch.softmax(lm.model.transformer.ln_f(x) @ _unembed(lm).T, dim=-1)
        return probs[:, ids].cpu().numpy()


def neuron_attribution(lm: LoadedModel, t: Trace, token_id: int, pos: int = -1, k: int = 20,
                       minus_token: int | None = None):
    """The k MLP neurons, over all layers, whose output at `pos` pushes the logit of `token_id`
    (or the difference with `minus_token`) most, up or down: a table of layer, neuron and
    "part of the logit", by |part|.
    A neuron's part is its activation times the frozen-ln_f reading of its output row W_out[n];
    a layer's neurons' parts plus its output bias add up to that MLP's part in the attribution."""
    pos = pos % t.n_tokens
    W = _unembed(lm)
    direction = W[token_id] - (W[minus_token] if minus_token is not None else 0)
    f, _ = _frozen_ln(lm, t, pos, direction)
    parts = []
    with torch.inference_mode():
        for L in range(t.n_layer):
            W_out = lm.model.transformer.h[L].mlp.c_proj.weight  # [d_mlp, d_model]
            parts.append(t.layer_tensor(L, "mlp_post")[pos] * f(W_out))
        allp = torch.stack(parts)  # [layer, d_mlp]
        top = allp.abs().flatten().topk(min(k, allp.numel())).indices
    import pandas as pd

    layers, neurons = np.unravel_index(top.cpu().numpy(), tuple(allp.shape))
    return pd.DataFrame({"layer": layers.astype(np.int64), "neuron": neurons.astype(np.int64),
                         "part of the logit": allp.flatten()[top].double().cpu().numpy()})
