"""The standard figure set for a prompt, as the batch exporter writes it (`python -m viz.export`).

These are the essay's figures: the top-k next-token table, the rank plot, surprisal,
block 1's attention heads (the essay counts blocks from 1; we label from 0), the head
atlas, the logit lens, direct logit attribution and the contribution graph of the
last position, and the 768×768 weight matrix of a fully connected layer with its 64×64 moving
average. Built from core's outputs with the same builders the pages use.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .common import esc, figure_label


def standard_figures(lm, t) -> dict[str, go.Figure]:
    """name -> figure for model `lm` (core.LoadedModel) and trace `t` (core.Trace)."""
    from core.attention import HEAD_METRICS, head_scores
    from core.next_token import rank_curve, top_k_table
    from core.weights import get_matrix, view_grid

    from .attention import atlas_figure, head_figure, layer_heads_figure
    from .next_token import rank_plot, surprisal_strip, top_k_bars
    from .weights import matrix_figure

    label = figure_label(lm.label, t.prompt)
    figs: dict[str, go.Figure] = {}
    table = top_k_table(lm, t, 10)
    figs["next-token-top10"] = top_k_bars(table["token"].tolist(), table["probability"].to_numpy(), f"Top 10 next tokens · {label}")
    ranks, probs = rank_curve(t.next_probs)
    figs["next-token-rank"] = rank_plot(ranks, probs, f"All {len(t.next_probs):,} next-token probabilities by rank · {label}")
    figs["surprisal"] = surprisal_strip(list(t.tokens), t.surprisal_bits, f"Surprisal per token · {label}")

    layer = min(1, lm.n_layer - 1)
    figs[f"attention-layer{layer}-all-heads"] = layer_heads_figure(t.pattern(layer), t.tokens, model=lm.label, layer=layer)
    figs[f"attention-layer{layer}-head0"] = head_figure(t.pattern(layer, 0), t.tokens, model=lm.label, layer=layer, head=0)
    scores = head_scores(t, with_entropy=False)["previous"]
    name, description = HEAD_METRICS["previous"]
    figs["attention-atlas-previous-token"] = atlas_figure(scores, model=lm.label, metric=name, description=description)

    from core.prediction import direct_logit_attribution, logit_lens
    from core.tokens import display_tokens

    from .prediction import attribution_figure, lens_grid_figure

    positions = np.arange(max(0, t.n_tokens - 24), t.n_tokens)
    lens = logit_lens(lm, t, 5, positions)
    tops = [[display_tokens(lm, lens.top_ids[r, c]) for c in range(len(positions))] for r in range(t.n_layer + 1)]
    figs["prediction-logit-lens"] = lens_grid_figure(tops, lens.top_probs, lens.top_probs[..., 0], positions, t.tokens,
                                                     f"Logit lens · {label}", "top probability")
    top = int(t.top_ids[-1, 0])
    a = direct_logit_attribution(lm, t, top)
    figs["prediction-attribution"] = attribution_figure(
        a.heads, a.mlp, a.attn_bias, a.embed, a.pos_embed, a.ln_bias,
        f"Who pushes logit({esc(display_tokens(lm, [top])[0])}) · {label}")

    from core.contributions import contribution_graph

    from .contributions import contribution_graph_figure

    edges = contribution_graph(lm, t, t.n_tokens - 1, 0.04)
    figs["prediction-contribution-graph"] = contribution_graph_figure(
        edges, t.tokens, lm.n_layer, t.n_tokens - 1, f"Contribution graph after “{esc(t.tokens[-1])}” · {label}")

    w, rows, cols = get_matrix(lm, 0, "W_O")  # a fully connected layer of d_model x d_model
    raw = view_grid(w, "raw")
    figs["weights-block0-W_O"] = matrix_figure(raw.z, rows, cols, f"W_O · block 0 · {lm.label}", offset=raw.offset, step=raw.step)
    window = min(64, max(1, min(w.shape) // 4))
    smooth = view_grid(w, "moving", window)
    figs[f"weights-block0-W_O-moving-average-{window}"] = matrix_figure(
        smooth.z, rows, cols, f"Moving average over {window}×{window} · W_O · block 0 · {lm.label}",
        offset=smooth.offset, step=smooth.step, colorbar="mean")
    return figs
