"""TransformerLens's activation names for a Trace: `t["blocks.3.attn.hook_z"]`.

One naming scheme, derived rather than typed by hand per layer: hook_embed, hook_pos_embed,
blocks.{L}.hook_resid_pre, .attn.hook_attn_scores, .attn.hook_pattern, .attn.hook_z,
.hook_attn_out, .hook_resid_mid, .mlp.hook_pre, .mlp.hook_post, .hook_mlp_out,
.hook_resid_post, and ln_final.hook_scale / ln_final.hook_normalized (the final residual
centred and divided by its scale, before ln_f's gain and bias, as TransformerLens has it).
"""
from __future__ import annotations

import numpy as np
import torch

# TransformerLens hook (after "blocks.{L}.") -> Trace.layer_act name
_PER_LAYER = {"attn.hook_z": "z", "hook_attn_out": "attn_out", "hook_resid_mid": "resid_mid",
              "mlp.hook_pre": "mlp_pre", "mlp.hook_post": "mlp_post", "hook_mlp_out": "mlp_out"}
_ORDER = ["hook_resid_pre", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
          "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]


def activation_names(t) -> list[str]:
    per_layer = [f"blocks.{L}.{hook}" for L in range(t.n_layer) for hook in _ORDER]
    return ["hook_embed", "hook_pos_embed", *per_layer, "ln_final.hook_scale", "ln_final.hook_normalized"]


def _ln_final(t, part: str) -> torch.Tensor:
    """`scale` [pos, 1] = sqrt(var + eps) or `normalized` [pos, d_model] = (x - mean) / scale."""
    x = t.tensor("resid", (t.n_layer,))
    scale = t.lm.arch.ln_f.scale(x)
    return scale if part == "scale" else (x - x.mean(-1, keepdim=True)) / scale


def by_name(t, name: str) -> np.ndarray | torch.Tensor:
    """The array called `name` (a TransformerLens name or a stored key); KeyError otherwise."""
    if t.stores(name):
        return t.take(name)
    if name in ("hook_embed", "hook_pos_embed"):
        return t.take(name[5:])
    if name in ("ln_final.hook_scale", "ln_final.hook_normalized"):
        return _ln_final(t, name.rsplit("_", 1)[-1])
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and int(parts[1]) < t.n_layer:
        L, hook = int(parts[1]), parts[2]
        if hook in ("hook_resid_pre", "hook_resid_post"):
            return t.take("resid", (L + (hook == "hook_resid_post"),))
        if hook == "attn.hook_pattern":
            return t.pattern(L)
        if hook == "attn.hook_attn_scores":
            return t.attn_scores(L)
        if hook in _PER_LAYER:
            return t.layer_act(L, _PER_LAYER[hook])
    raise KeyError(f"No activation called {name!r}; Trace.names() lists them.")
