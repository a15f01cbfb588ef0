"""Per-layer activations, recomputed from a Trace's stored residual by the forward's own maths.

`compute_layer` is what `Trace` calls (through its byte-bounded cache) when a view asks
for one layer: the attention kind re-runs exactly the attention the forward ran, so
resid_mid + mlp_out of a layer gives back the next stored residual; the pattern kind
forms softmax(q·k·scale) one head at a time (`core.forward.head_patterns`).

Dimension names as in core.trace: layer head query_pos key_pos pos d_model d_mlp d_head.
"""
from __future__ import annotations

import numpy as np
import torch

from . import forward as F
from .model import LoadedModel

# Public per-layer activation name -> (cached kind, key in it).
LAYER_NAMES: dict[str, tuple[str, str]] = {
    "z": ("attn", "z"),  # [pos, head, d_head]
    "attn_out": ("attn", "attn_out"),  # [pos, d_model], W_O and its bias included
    "resid_mid": ("attn", "resid_mid"),  # [pos, d_model], resid_pre + attn_out
    "mlp_pre": ("mlp", "pre"),  # [pos, d_mlp], before GELU
    "mlp_post": ("mlp", "post"),  # [pos, d_mlp], after GELU
    "mlp_out": ("mlp", "out"),  # [pos, d_model]
}


class LayerArrays(dict):
    """name -> tensor, with the `nbytes` the byte-bounded cache counts."""

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes if isinstance(v, np.ndarray) else v.numel() * v.element_size() for v in self.values()))


def d_mlp(lm: LoadedModel) -> int:
    return lm.model.transformer.h[0].mlp.c_fc.nf


def layer_bytes(lm: LoadedModel, n_tokens: int, kind: str, head: int | None = None) -> int:
    """Bytes `compute_layer` returns, to make room in the cache before computing."""
    T, d = n_tokens, lm.d_model
    if kind == "attn":
        return 4 * 3 * T * d
    if kind == "mlp":
        return 4 * T * (2 * d_mlp(lm) + d)
    return 4 * (1 if head is not None else lm.n_head) * T * T


def stored_resid(lm: LoadedModel, t, layer: int) -> torch.Tensor:
    """resid_pre of `layer` (layer = n_layer: the final residual) as a tensor on the model's device."""
    return t.tensor("resid", (layer,))


def head_qk(block, x: torch.Tensor, heads, n_head: int, rows=slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k [len(heads), pos, d_head] of the given heads from ln_1's output x [pos, d_model],
    each head from its own columns of c_attn (GPT-2's Conv1D stores [in, out])."""
    d = x.shape[-1]
    hs = d // n_head
    W, b = block.attn.c_attn.weight, block.attn.c_attn.bias

    def part(offset: int, h: int) -> torch.Tensor:
        cols = slice(offset + h * hs, offset + (h + 1) * hs)
        return torch.addmm(b[cols], x[rows], W[:, cols])

    return torch.stack([part(0, h) for h in heads]), torch.stack([part(d, h) for h in heads])


def compute_layer(lm: LoadedModel, t, layer: int, kind: str, head: int | None = None) -> LayerArrays:
    """The arrays of one kind for one layer: "attn" (z, attn_out, resid_mid), "mlp" (pre,
    post, out), "pattern" or "scores" (of every head, or of `head` alone: [1, pos, pos])."""
    block = lm.model.transformer.h[layer]
    scale = F.attention_scale(block.attn, layer)
    with torch.inference_mode():
        resid_pre = stored_resid(lm, t, layer)
        if kind == "attn":
            q, k, v = F.qkv(block, resid_pre, lm.n_head)
            z, _ = F.attend(q, k, v, scale)
            out = F.attn_out(block, z)
            return LayerArrays(z=z.transpose(0, 1).contiguous(), attn_out=out, resid_mid=resid_pre + out)
        if kind == "mlp":
            mid = t._layer(layer, "attn")["resid_mid"]
            pre, post, out = F.mlp(block, mid)
            return LayerArrays(pre=pre, post=post, out=out)
        if kind in ("pattern", "scores"):
            heads = range(lm.n_head) if head is None else [head]
            q, k = head_qk(block, block.ln_1(resid_pre), heads, lm.n_head)
            return LayerArrays({kind: F.head_patterns(q, k, scale, scores_only=kind == "scores")})
    raise ValueError(f"unknown per-layer kind {kind!r}")
