"""Attention explorer: the head atlas, one layer's heads, one head, one head across layers, one token.

The prompt's trace keeps the residual stream; a view computes the layer (or the head, or
the one row) it shows from it, and core caches that, so changing the layer or head costs
about one block, never a forward. Views that read every layer show a progress bar and a
Stop. Only the induction column of the atlas runs the model, once per model, on random
tokens repeated twice. Tabs run lazily, so only the open view's figures are built and sent.
"""
import numpy as np
import streamlit as st

from core.attention import (
    HEAD_METRICS, head_across_layers, head_scores, induction_scores, pattern_summaries, summaries_cached,
    summaries_seconds, token_focus,
)
from ui.progress import layer_by_layer
from ui import controls
from ui.shell import setup_trace_page, show_figure
from viz.attention import (
    CELL_BUDGET, COLOUR_SCALES, PAIR_GRID_CELLS, atlas_figure, focus_figure, head_across_layers_figure, head_figure,
    layer_heads_figure, layer_means_figure, panel_side, scores_figure,
)

VIEWS = ["Head atlas", "One layer, all heads", "One head", "One head across layers", "Token focus"]

lm, t = setup_trace_page(
    "Attention",
    "Every token looks back at the tokens before it, through each layer's attention heads. The **head atlas** "
    "scores every head at once (one cell per layer and head: click one to open it); the other views draw patterns, "
    "where row *i* is a token (the query) and the colour in column *j* is how much of what it reads comes from token "
    "*j* (the key). Rows add up to 1, and the upper triangle is empty: a token cannot see the tokens after it.",
)
ss = st.session_state
GRID_SIDE = panel_side(lm.n_layer, PAIR_GRID_CELLS)  # cells a side of each layer's panel in the all-layer grids


@st.cache_resource(show_spinner="Measuring induction heads on random tokens repeated twice…", max_entries=4)
def induction_atlas(model_name: str, _lm) -> np.ndarray:
    """[layer, head] induction scores; one extra forward per model, shared by every session."""
    return induction_scores(_lm)


def summaries() -> dict | None:
    """Entropy per head and each layer's pooled mean pattern: every pattern of every layer,
    formed one layer at a time (cached per layer by core), with progress and a Stop."""
    estimate = 0.0 if summaries_cached(t, GRID_SIDE) else summaries_seconds(t)
    return layer_by_layer("Reading every head of every layer", t.n_layer,
                          lambda on_layer: pattern_summaries(t, GRID_SIDE, on_layer), key="attn_summaries",
                          estimate_s=estimate, work_id=t.key)


def open_head(layer: int, head: int) -> None:
    ss["attn_layer"], ss["attn_head"], ss["attn_view"] = layer, head, "One head"


def on_atlas_click() -> None:
    points = ss["attn_atlas_chart"].selection.get("points", [])
    if points:
        open_head(int(round(points[0]["y"])), int(round(points[0]["x"])))


def on_atlas_pick() -> None:
    if ss["attn_atlas_pick"] is not None:
        open_head(*ss["attn_atlas_pick"])


# Pickers shared by the views, in the URL (ui.controls); a layer, head or position that does not exist
# (a smaller model, a hand-edited link) goes to the nearest one, in the address bar too.
c1, c2, c3, c4 = st.columns([1, 1, 2, 3])
layer = controls.selectbox(c1, "Layer", range(lm.n_layer), key="attn_layer")
head = controls.selectbox(c2, "Head", range(lm.n_head), key="attn_head")
colour = controls.selectbox(c3, "Colour scale", list(COLOUR_SCALES), key="attn_colour", default="stretch",
                      format_func=COLOUR_SCALES.get,
                      help="Most heads of a trained GPT-2 put most of their weight on the first token (the attention "
                           "sink): on a 0-to-1 scale everything else looks black. Stretched and log scales show the rest.")
c4.caption(f"{t.n_tokens:,} tokens. Colour: {COLOUR_SCALES[colour]}. Grids of many heads are max-pooled when the "
           "prompt is long: a cell then shows the strongest weight in its block of tokens. Hover for exact values.")
model = lm.label  # for titles; caches are keyed by lm.name

tabs = controls.tabs(VIEWS, key="attn_view")

with tabs["Head atlas"]:
    if tabs["Head atlas"].open:
        metric = controls.radio(st, "Score", list(HEAD_METRICS), key="attn_metric", horizontal=True,
                          format_func=lambda m: HEAD_METRICS[m][0])
        label, description = HEAD_METRICS[metric]
        if metric == "induction":
            scores = induction_atlas(lm.name, lm)
        elif metric == "entropy":
            done = summaries()
            scores = done["entropy"] if done is not None else None
        else:
            scores = head_scores(t, with_entropy=False)[metric]
        if scores is None:
            st.stop()
        fig = atlas_figure(scores, model=model, metric=label, description=description, selected=(layer, head))
        show_figure(fig, key="attn_atlas_chart", on_select=on_atlas_click, selection_mode="points")
        order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), axis=None)
        cells = [tuple(int(i) for i in np.unravel_index(k, scores.shape)) for k in order]
        st.selectbox("Open a head (highest score first), or click a cell above", cells, index=None,
                     key="attn_atlas_pick", on_change=on_atlas_pick, placeholder="Choose a head",
                     format_func=lambda c: f"layer {c[0]}, head {c[1]}: {scores[c]:.3f}")

with tabs["One layer, all heads"]:
    if tabs["One layer, all heads"].open:
        show_figure(layer_heads_figure(t.pattern(layer), t.tokens, model=model, layer=layer, colour=colour),
                    key="attn_layer_heads_chart")

with tabs["One head"]:
    if tabs["One head"].open:
        with_scores = controls.toggle(st, "Show the pre-softmax scores q·k/√d too", key="attn_scores",
                                help="The numbers the softmax turns into the pattern, recomputed from the "
                                "layer's weights; masked (future) positions are left empty.")
        pattern_fig = head_figure(t.pattern(layer, head), t.tokens, model=model, layer=layer, head=head, colour=colour)
        if not with_scores:
            show_figure(pattern_fig, key="attn_head_chart")
        else:
            score_fig = scores_figure(t.attn_scores(layer, head), t.tokens, model=model, layer=layer,
                                      head=head)
            if 2 * t.n_tokens**2 <= CELL_BUDGET:
                left, right = st.columns(2)
                with left:  # its own key: a chart moved into a column would keep its old width
                    show_figure(pattern_fig, key="attn_head_pair_chart")
                with right:
                    show_figure(score_fig, key="attn_scores_chart")
            else:
                st.caption("At this length two full-resolution heads would be too much for the browser; "
                           "showing the scores alone. Switch the toggle off to see the pattern.")
                show_figure(score_fig, key="attn_scores_chart")

with tabs["One head across layers"]:
    if tabs["One head across layers"].open:
        grids, block = head_across_layers(t, head, GRID_SIDE)
        show_figure(head_across_layers_figure(grids, t.tokens, model=model, head=head, cell_budget=PAIR_GRID_CELLS,
                                              block=block, colour=colour), key="attn_across_chart")
        done = summaries()
        if done is not None:
            show_figure(layer_means_figure(done["means"], t.tokens, model=model, cell_budget=PAIR_GRID_CELLS,
                                           block=done["block"], colour=colour), key="attn_means_chart")

with tabs["Token focus"]:
    if tabs["Token focus"].open:
        f1, f2 = st.columns([2, 1])
        pos = controls.selectbox(f1, "Token", range(t.n_tokens), key="attn_focus_pos", default=t.n_tokens - 1,
                           format_func=lambda i: f"{i}: {t.tokens[i]}")
        per_head = controls.radio(f2, "Heads", ["mean", "one"], key="attn_focus_heads", horizontal=True,
                            format_func=lambda m: "mean over heads" if m == "mean" else f"head {head} (picker above)")
        h = head if per_head == "one" else None
        to, frm = token_focus(t, pos)
        for direction, weights, positions in (("to", to, np.arange(pos + 1)), ("from", frm, np.arange(pos, t.n_tokens))):
            w = weights[:, h] if h is not None else weights.mean(axis=1, dtype=np.float32)
            show_figure(focus_figure(w, t.tokens, positions, pos, model=model, direction=direction, head=h),
                        key=f"attn_focus_{direction}_chart")
