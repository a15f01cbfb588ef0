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

from .attribution import position_parts
from .cache import LayerArrays
from .model import LoadedModel
from .trace import Trace
from .unembed import top_k

LENS_CHUNK_BYTES = 64 << 20  # logits formed at once by the lens: 333 cells of GPT-2's 50,257


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

    `positions` (default: all) keeps the work to what a view shows. The logits are formed
    for at most LENS_CHUNK_BYTES of (row, position) cells at a time, one matrix product per
    chunk, and reduced at once to the top k and the target's probability: [layer, pos,
    vocab] never exists. `target`: a token id whose probability to report everywhere
    instead of each position's actual next token."""
    pos = np.arange(t.n_tokens) if positions is None else np.asarray(positions, dtype=np.int64)
    nxt = np.append(t.token_ids[1:], -1)[pos] if target is None else np.full(len(pos), int(target))
    rows, n = t.n_layer + 1, len(pos)
    top_ids = np.empty((rows, n, k), dtype=np.int64)
    top_probs = np.empty((rows, n, k), dtype=np.float32)
    target_probs = np.full((rows, n), np.nan, dtype=np.float32)
    W_U, ln_f = lm.arch.W_U, lm.arch.ln_f  # [d_model, vocab]
    chunk = max(1, LENS_CHUNK_BYTES // (4 * W_U.shape[1]))  # (row, position) cells whose logits are formed at once
    cell_row, cell_col = np.divmod(np.arange(rows * n), n)
    with torch.inference_mode():
        for s in range(0, rows * n, chunk):
            r, c = cell_row[s:s + chunk], cell_col[s:s + chunk]
            logits = ln_f(t.tensor("resid", (r, pos[c]))) @ W_U  # [cells, vocab]: W_U read once per chunk
            lse = torch.logsumexp(logits, dim=-1, keepdim=True)
            v, i = top_k(logits, k)
            top_ids[r, c], top_probs[r, c] = i.cpu().numpy(), torch.exp(v - lse).cpu().numpy()
            want = torch.from_numpy(nxt[c]).to(logits.device)
            p = torch.exp(logits.gather(1, want.clamp_min(0)[:, None]) - lse)[:, 0]
            target_probs[r, c] = torch.where(want >= 0, p, torch.nan).cpu().numpy()
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
        return float(self.embed + self.pos_embed + self.heads.sum() + self.attn_bias.sum() + self.mlp.sum()
                     + self.ln_bias)


def head_outputs(lm: LoadedModel, t: Trace, layer: int, pos: int) -> torch.Tensor:
    """[head, d_model]: what each head of `layer` adds to the residual stream at `pos` (z W_O,
    without the layer's shared bias b_O)."""
    return position_parts(lm, t, pos)["heads"][layer]


def _frozen_ln(lm: LoadedModel, t: Trace, pos: int, direction: torch.Tensor):
    """(f, ln_bias_part): f(c) = ((c - mean c) / scale) · (gain ⊙ direction), the frozen-scale
    ln_f of residual components c [..., d_model] read along `direction` [d_model]."""
    ln_f = lm.arch.ln_f
    scale = ln_f.scale(t.tensor("resid", (t.n_layer, pos)))[0]
    w = ln_f.w * direction

    def f(c: torch.Tensor) -> torch.Tensor:
        return (c @ w - c.mean(-1) * w.sum()) / scale  # = ((c - mean c) / scale) @ w, without a centred copy

    return f, float(ln_f.b @ direction)


def _direction(lm: LoadedModel, token_id: int, minus_token: int | None) -> torch.Tensor:
    W_U = lm.arch.W_U  # [d_model, vocab]
    return W_U[:, token_id] - W_U[:, minus_token] if minus_token is not None else W_U[:, token_id]


def direct_logit_attribution(lm: LoadedModel, t: Trace, token_id: int, pos: int = -1,
                             minus_token: int | None = None) -> Attribution:
    """Split the logit of `token_id` after position `pos` (or the difference logit(token_id) -
    logit(minus_token)) into the parts of the residual stream that wrote it.

    The parts at `pos` are computed once per position (`core.attribution.position_parts`:
    attention at that one query in every layer, no whole layer) and kept, so another token
    or a difference at the same position costs a few matrix-vector products."""
    pos = pos % t.n_tokens
    parts = position_parts(lm, t, pos)
    with torch.inference_mode():
        direction = _direction(lm, token_id, minus_token)
        f, ln_bias = _frozen_ln(lm, t, pos, direction)
        heads = f(parts["heads"]).double().cpu().numpy()  # [layer, head]
        attn_bias = f(parts["attn_bias"]).double().cpu().numpy()
        mlp = f(parts["mlp"]).double().cpu().numpy()
        embed, pos_embed = float(f(parts["embed"])), float(f(parts["pos_embed"]))
        logit = float(lm.arch.ln_f(parts["final"]) @ direction)
    return Attribution(embed=embed, pos_embed=pos_embed, heads=heads, attn_bias=attn_bias, mlp=mlp, ln_bias=ln_bias,
                       logit=logit)


def head_writes(lm: LoadedModel, t: Trace, layer: int, head: int, pos: int, k: int = 10):
    """The tokens head (layer, head)'s output at `pos` pushes up and down most, through ln_f
    (scale frozen at that position) and the unembedding: (up_ids, up_values, down_ids,
    down_values), values in logits."""
    pos = pos % t.n_tokens
    ln_f = lm.arch.ln_f
    with torch.inference_mode():
        out = head_outputs(lm, t, layer, pos)[head]
        scale = ln_f.scale(t.tensor("resid", (t.n_layer, pos)))[0]
        logits = (((out - out.mean()) / scale) * ln_f.w) @ lm.arch.W_U  # [vocab]
        up, down = logits.topk(k), (-logits).topk(k)
    return (up.indices.cpu().numpy(), up.values.cpu().numpy(), down.indices.cpu().numpy(), -down.values.cpu().numpy())


# ---- MLP neurons ----------------------------------------------------------------------------------
def neuron_top_tokens(lm: LoadedModel, layer: int, neuron: int, k: int = 10):
    """What neuron `neuron` of `layer` writes, read directly through the unembedding: the
    tokens W_out[neuron] @ W_U pushes up and down most, (up_ids, up, down_ids, down)."""
    with torch.inference_mode():
        direct = lm.arch.blocks[layer].W_out[neuron] @ lm.arch.W_U  # [vocab]
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
    ids = torch.from_numpy(np.array(token_ids, dtype=np.int64)).to(lm.device)
    with torch.inference_mode():
        x = t.tensor("resid", (slice(None), pos % t.n_tokens))  # [row, d_model]
        probs = torch.softmax(lm.arch.logits(x), dim=-1)
        return probs[:, ids].cpu().numpy()


@dataclass(frozen=True)
class NeuronParts:
    """The MLP neurons whose output pushes one logit most, up or down, strongest first: layers,
    neurons [k] int64 and parts [k] float64 (each neuron's part of the logit)."""

    layers: np.ndarray
    neurons: np.ndarray
    parts: np.ndarray


def neuron_attribution(lm: LoadedModel, t: Trace, token_id: int, pos: int = -1, k: int = 20,
                       minus_token: int | None = None) -> NeuronParts:
    """The k MLP neurons, over all layers, whose output at `pos` pushes the logit of `token_id`
    (or the difference with `minus_token`) most, up or down, by |part|.
    A neuron's part is its activation times the frozen-ln_f reading of its output row W_out[n];
    a layer's neurons' parts plus its output bias add up to that MLP's part in the attribution."""
    pos = pos % t.n_tokens
    post = position_parts(lm, t, pos)["mlp_post"]  # [layer, d_mlp]
    with torch.inference_mode():
        f, _ = _frozen_ln(lm, t, pos, _direction(lm, token_id, minus_token))
        allp = torch.stack([post[L] * f(w.W_out) for L, w in enumerate(lm.arch.blocks)])  # [layer, d_mlp]
        top = allp.abs().flatten().topk(min(k, allp.numel())).indices
    layers, neurons = np.unravel_index(top.cpu().numpy(), tuple(allp.shape))
    return NeuronParts(layers=layers.astype(np.int64), neurons=neurons.astype(np.int64),
                       parts=allp.flatten()[top].double().cpu().numpy())
