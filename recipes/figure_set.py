"""The standard figure set for a prompt, as the batch exporter writes it (`python -m recipes.export`).

These are the essay's figures: the top-k next-token table, the rank plot, surprisal,
block 1's attention heads (the essay counts blocks from 1; we label from 0; colours stretched as on
the Attention page), the head
atlas, the logit lens, direct logit attribution and the contribution graph of the last
position, and the 768×768 weight matrix of a fully connected layer with its 64×64 moving
average. Each comes from the recipe its page uses, so the files match the screen.
"""
from __future__ import annotations

from . import attention, next_token, prediction, weights


def standard_figures(lm, t) -> dict:
    """file name -> plotly figure for model `lm` (core.LoadedModel) and trace `t` (core.Trace)."""
    last = t.n_tokens - 1
    layer = min(1, lm.n_layer - 1)
    top = prediction.typed_token(lm, t, last, "").values
    views = {
        "next-token-top10": next_token.top_k(lm, t, 10).figures()["next_topk"],
        "next-token-rank": next_token.rank(lm, t).figures()["next_rank"],
        "surprisal": next_token.surprisal(lm, t).figures()["next_surprisal"],
        f"attention-layer{layer}-all-heads":
            attention.layer_heads(lm, t, layer, "stretch").figures()["attn_layer_heads_chart"],
        f"attention-layer{layer}-head0":
            attention.one_head(lm, t, layer, 0, "stretch", False).figures()["attn_head_chart"],
        "attention-atlas-previous-token": attention.atlas(lm, t, "previous").figures()["attn_atlas_chart"],
        "prediction-logit-lens": prediction.lens(lm, t, last, prediction.lens_start(t, last), "top",
                                                 top["target"]).figures()["pred_lens"],
        "prediction-attribution": prediction.attribution(lm, t, last, top["target"], top["name"],
                                                         "").figures()["pred_attribution"],
        "prediction-contribution-graph": prediction.graph(lm, t, last, 0.04).figures()["pred_graph"],
    }
    s = weights.select(lm, "W_O", 0, "all")  # a fully connected layer of d_model x d_model
    views["weights-block0-W_O"] = weights.matrix(lm, s).figures()["weights_matrix"]
    window = weights.window_range(s)[1]
    smooth = weights.smoothed(s, window).figures()
    views[f"weights-block0-W_O-moving-average-{window}"] = smooth["weights_smooth_moving"]
    return views
