"""The Attention page's views: the head atlas, one layer's heads, one head (and its scores),
one head across layers, and one token's focus. Patterns come from the trace's stored
residuals, one layer (or head) at a time, cached by core."""
from __future__ import annotations

import numpy as np

from core.attention import (
    HEAD_METRICS,
    head_across_cached,
    head_across_layers,
    head_scores,
    pattern_summaries,
    prefetch_head_across,
    prefetch_pattern_summaries,
    summaries_cached,
    summaries_seconds,
    token_focus,
)
from core.trace import Trace
from i18n import N_, _
from viz.attention import (
    CELL_BUDGET,
    COLOUR_SCALES,
    HEAD_MAX_SIDE,
    PAIR_GRID_CELLS,
    atlas_figure,
    focus_figure,
    head_across_layers_figure,
    head_figure,
    layer_heads_figure,
    layer_means_figure,
    panel_side,
    scores_figure,
)
from viz.common import fit_to_column

from . import Figure, LongJob, Row, Text, View

VIEWS = [N_("Head atlas"), N_("One layer, all heads"), N_("One head"), N_("One head across layers"), N_("Token focus")]
METRICS = list(HEAD_METRICS)
COLOURS = list(COLOUR_SCALES)  # the colour scales' keys, shown through `colour_label`


def grid_side(lm) -> int:
    """Cells a side of each layer's panel in the all-layer grids."""
    return panel_side(lm.n_layer, PAIR_GRID_CELLS)


def picker_note(t: Trace, colour: str) -> str:
    return _("{n:,} tokens. Colour: {scale}. Where a long prompt would make a cell smaller than a pixel, patterns "
             "are max-pooled: a cell then shows the strongest weight in its block of tokens, and the title says so. "
             "Hover for the values.").format(n=t.n_tokens, scale=_(COLOUR_SCALES[colour]))


def metric_label(metric: str) -> str:
    return _(HEAD_METRICS[metric][0])  # core marks HEAD_METRICS' texts for the catalog


def colour_label(colour: str) -> str:
    return _(COLOUR_SCALES[colour])  # viz marks COLOUR_SCALES' texts for the catalog


def summaries_job(lm, t: Trace) -> LongJob:
    """Entropy per head and each layer's pooled mean pattern (core.attention.pattern_summaries),
    one layer at a time: for the entropy atlas and the layer means."""
    side = grid_side(lm)
    return LongJob(_("Reading every head of every layer"), t.n_layer,
                   lambda on_layer: pattern_summaries(t, side, on_layer),
                   estimate_s=0.0 if summaries_cached(t, side) else summaries_seconds(t), work_id=t.key)


def prefetch(lm, t: Trace, head: int, below_s: float) -> bool:
    """Queue what "One head across layers" (for `head`) and the entropy atlas read, to be computed while
    the compute lane has nothing asked of it (core.lane), so they find it done: head `head` in every
    layer and summaries_job's layers. Only when the summaries would take under `below_s` seconds
    (longer work waits for its Compute click; the head's grids cost less). True when any was queued."""
    side = grid_side(lm)
    if summaries_cached(t, side) and head_across_cached(t, head, side):
        return False
    if summaries_seconds(t) > below_s:
        return False
    queued = prefetch_head_across(t, head, side)
    return prefetch_pattern_summaries(t, side) > 0 or queued


def atlas(lm, t: Trace, metric: str, layer: int | None = None, head: int | None = None,
          scores: np.ndarray | None = None, on_select=None) -> View:
    """The atlas of one score ([layer, head]; `scores` given for induction and entropy, which the
    page computes with progress: `summaries_job`'s entropy). values["cells"]: (layer, head) best
    first, with labels."""
    if scores is None:
        scores = head_scores(t, with_entropy=False)[metric]
    name, description = HEAD_METRICS[metric]
    fig = atlas_figure(scores, model=lm.label, metric=_(name), description=_(description),
                       selected=None if layer is None else (layer, head))
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), axis=None)
    cells = [tuple(int(i) for i in np.unravel_index(k, scores.shape)) for k in order]
    label = _("layer {layer}, head {head}: {score:.3f}")
    labels = {c: label.format(layer=c[0], head=c[1], score=scores[c]) for c in cells}
    parts = [Figure("attn_atlas_chart", fig, on_select=on_select, selection_mode="points" if on_select else None)]
    if metric == "induction" and lm.trained_token_ids:
        parts.insert(0, Text(_("The random tokens are drawn from the {n:,} tokens this model saw often enough to "
                               "learn, which its checkpoint lists; the rest of GPT-2's vocabulary never came up in "
                               "its training, or too rarely.").format(n=len(lm.trained_token_ids))))
    return View(parts, {"cells": cells, "labels": labels})


def layer_heads(lm, t: Trace, layer: int, colour: str) -> View:
    return View([Figure("attn_layer_heads_chart", layer_heads_figure(t.pattern(layer), t.tokens, model=lm.label,
                                                                       layer=layer, colour=colour))])


def one_head(lm, t: Trace, layer: int, head: int, colour: str, with_scores: bool) -> View:
    if not with_scores:
        pattern = head_figure(t.pattern(layer, head), t.tokens, model=lm.label, layer=layer, head=head, colour=colour)
        view = View([Figure("attn_head_chart", pattern)])
        if t.n_tokens > HEAD_MAX_SIDE:
            view.items.insert(0, Text(_(
                "At {n:,} tokens a cell would be smaller than a pixel, so each cell shows the strongest weight in "
                "a block of tokens and no strong weight is lost between pixels. Token focus shows every weight "
                "of one token.").format(n=t.n_tokens)))
        return view
    # Side by side with the scores, cell for cell: both at full resolution.
    pattern = head_figure(t.pattern(layer, head), t.tokens, model=lm.label, layer=layer, head=head, colour=colour,
                          max_side=None)
    scores = scores_figure(t.attn_scores(layer, head), t.tokens, model=lm.label, layer=layer, head=head)
    if 2 * t.n_tokens**2 <= CELL_BUDGET:  # its own key: a chart moved into a column would keep its old width
        return View([Row([Figure("attn_head_pair_chart", fit_to_column(pattern, 0.5)),
                          Figure("attn_scores_chart", fit_to_column(scores, 0.5))])])
    return View([Text(_("At this length two full-resolution heads would be too much for the browser; showing the "
                        "scores alone. Switch the toggle off to see the pattern.")),
                 Figure("attn_scores_chart", scores)])


def across_layers(lm, t: Trace, head: int, colour: str, summaries: dict | None) -> View:
    """One head in every layer, and (when the page computed them) each layer's mean pattern."""
    grids, block = head_across_layers(t, head, grid_side(lm))
    view = View([Figure("attn_across_chart", head_across_layers_figure(
        grids, t.tokens, model=lm.label, head=head, cell_budget=PAIR_GRID_CELLS, block=block, colour=colour))])
    if summaries is not None:
        view.add(Figure("attn_means_chart", layer_means_figure(summaries["means"], t.tokens, model=lm.label,
                                                               cell_budget=PAIR_GRID_CELLS, block=summaries["block"],
                                                               colour=colour)))
    return view


def focus(lm, t: Trace, pos: int, head: int | None) -> View:
    """Where token `pos` looks (to) and who looks at it (from): one head, or the mean over heads."""
    to, frm = token_focus(t, pos)
    view = View()
    for direction, weights, positions in (("to", to, np.arange(pos + 1)), ("from", frm, np.arange(pos, t.n_tokens))):
        w = weights[:, head] if head is not None else weights.mean(axis=1, dtype=np.float32)
        view.add(Figure(f"attn_focus_{direction}_chart",
                        focus_figure(w, t.tokens, positions, pos, model=lm.label, direction=direction, head=head)))
    return view
