"""Figures of attention patterns: one head, a grid of heads, the head atlas, token focus.

Pure Plotly: numpy arrays and display tokens in, go.Figure out. Heatmaps put token
positions (not strings) on the axes and label them with `token_ticks`, so repeated
tokens keep their own rows and columns. Query positions run down, key positions
across; the causal upper triangle is NaN so it draws empty. Grids of many heads are
max-pooled so a figure stays within CELL_BUDGET cells whatever the prompt length.

Dimension names: layer head query_pos key_pos.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from i18n import N_, _

from .common import (  # noqa: F401 (CELL_BUDGET re-exported)
    CELL_BUDGET,
    DIVERGING,
    SEQUENTIAL,
    base_layout,
    base_layout_with_panels,
    clip_marks,
    esc,
    short,
    token_ticks,
)
from .fit import fit_colour_bars

GRID_CELLS = 800_000  # cells a grid of heads is pooled down to (~5 MB of float32 JSON)
PAIR_GRID_CELLS = 600_000  # for a view that shows two grids at once
# A grid's panel is ~150 px wide in a ~760 px figure of 4 columns: more cells than that a side would be
# under a pixel, dropped by the browser as it scales the heatmap down; max-pooling to it keeps every
# strong weight (a 1,024-token layer: 12 panels of 147 x 147 blocks of 7 tokens, 1.7 MB; was 256, 5 MB).
MAX_PANEL_SIDE = 160
# One head's figure is ~900 px tall, its plot ~600 px square in a 1,280 px window (~700 on a wider
# screen or a slide): past this many tokens a cell is under a pixel and the browser drops whole rows of
# cells as it scales the heatmap down, so the head is max-pooled (a 1,024-token head: 512 x 512 cells
# of 2 x 2 tokens, a quarter of the bytes to send).
HEAD_MAX_SIDE = 640
HOVER_TOKENS_MAX_CELLS = 131_072  # above this, per-cell token hover text would cost megabytes
LOG_FLOOR = -4  # log10 of the smallest weight the log scale tells apart

# Colour scales for attention weights. Most GPT-2 heads put most of their weight on the first
# token (the "attention sink"), so on a 0-1 scale everything else is nearly black.
COLOUR_SCALES = {  # key -> what a person reads (translate where shown: _(COLOUR_SCALES[key]))
    "linear": N_("0 to 1"),
    "stretch": N_("stretched to the largest weight off the first token"),
    "log": N_("log scale, 0.0001 to 1"),
}


def weight_bar() -> dict:
    """The colour bar of attention weights on the 0..1 scale."""
    return dict(title=dict(text=_("attention<br>weight"), side="top"))


def colour_scale(z: np.ndarray, scale: str) -> tuple[np.ndarray, dict, str]:
    """(values to draw, heatmap colour settings, hover label) for weights z (NaN = masked).

    linear: 0..1. stretch: 0..the largest weight outside key column 0, so the first
    column may saturate. log: log10 of the weight from 10^LOG_FLOOR to 1."""
    if scale == "log":
        with np.errstate(divide="ignore"):
            logz = np.log10(np.maximum(z, 10.0**LOG_FLOOR))
        ticks = list(range(LOG_FLOOR, 1))
        bar = dict(title=dict(text=_("attention<br>weight (log)"), side="top"), tickvals=ticks,
                   ticktext=[f"{10.0 ** t:g}" for t in ticks])
        return np.where(np.isnan(z), np.nan, logz).astype(np.float32), dict(zmin=LOG_FLOOR, zmax=0.0, colorbar=bar), \
            _("log₁₀ weight")
    if scale == "stretch":
        rest = z[..., 1:]
        top = float(np.nanmax(rest)) if rest.size and np.isfinite(rest).any() else 1.0
        bar = dict(title=dict(text=_("attention<br>weight<br>(to {top:.2g})").format(top=top), side="top"))
        return z, dict(zmin=0.0, zmax=max(top, 1e-6), colorbar=bar), _("weight")
    return z, dict(zmin=0.0, zmax=1.0, colorbar=weight_bar()), _("weight")


# ---- array helpers -----------------------------------------------------------------------
def causal_nan(pattern: np.ndarray) -> np.ndarray:
    """float32 copy of [..., query_pos, key_pos] with the masked upper triangle set to NaN."""
    out = np.array(pattern, dtype=np.float32)
    n_q, n_k = out.shape[-2:]
    out[..., np.triu(np.ones((n_q, n_k), dtype=bool), 1)] = np.nan
    return out


def max_pool(grid: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Max-pool the last two axes in square blocks so each is at most `max_side` long.

    [..., n, m] -> ([..., ceil(n/b), ceil(m/b)], b). NaN cells (the masked triangle) are
    ignored; a block that is all NaN stays NaN, so the triangle still draws empty.
    """
    n, m = grid.shape[-2:]
    b = max(1, math.ceil(max(n, m) / max_side))
    a = np.asarray(grid, dtype=np.float32)
    if b == 1:
        return a, 1
    pn, pm = math.ceil(n / b) * b, math.ceil(m / b) * b
    if (pn, pm) != (n, m):
        padded = np.full(a.shape[:-2] + (pn, pm), np.nan, dtype=np.float32)
        padded[..., :n, :m] = a
        a = padded
    lead = a.shape[:-2]
    # fmax ignores NaN unless a whole block is NaN; reduce the contiguous axis first (faster).
    cols = np.fmax.reduce(a.reshape(lead + (pn, pm // b, b)), axis=-1)
    return np.fmax.reduce(cols.reshape(lead + (pn // b, b, pm // b)), axis=-2), b


def figure_cells(fig: go.Figure) -> int:
    """Heatmap cells in a figure (what the cell budget counts)."""
    return int(sum(np.size(tr.z) for tr in fig.data if getattr(tr, "z", None) is not None))


def _token_pairs(tokens: Sequence[str], rows: np.ndarray, cols: np.ndarray, z: np.ndarray | None = None,
                 zmax: float | None = None, zmin: float | None = None) -> np.ndarray:
    """[len(rows), len(cols), 3] escaped (query token, key token, clip mark) strings for hover text:
    the mark says a cell of z lies beyond the colour scale's top `zmax` (the stretched scale)."""
    toks = np.array([esc(s) for s in tokens], dtype=object)
    out = np.empty((len(rows), len(cols), 3), dtype=object)
    out[..., 0] = toks[rows][:, None]
    out[..., 1] = toks[cols][None, :]
    lo = -np.inf if zmin is None else zmin
    out[..., 2] = clip_marks(z, lo, zmax) if z is not None and zmax is not None else ""
    return out


def _title(model: str, what: str) -> str:
    return f"{esc(short(model, 48))} · {what}"


def _hover_tokens(value: str) -> str:
    """Hover of one cell with both tokens: query, key and the value (`value` names it)."""
    return _("query %{{y}} %{{customdata[0]}}<br>key %{{x}} %{{customdata[1]}}<br>{value} %{{z:.4f}}").format(
        value=value) + "%{customdata[2]}"


def _hover_cell(value: str) -> str:
    return _("query %{{y}} · key %{{x}}<br>{value} %{{z:.4f}}").format(value=value)


# ---- one head -------------------------------------------------------------------------------
def _square_heatmap(z: np.ndarray, tokens: Sequence[str], title: str, value: str, *,
                    colorscale: str, colorbar: dict, zmin=None, zmax=None, zmid=None, block: int = 1) -> go.Figure:
    """z [query, key] cells; `block` > 1: each cell is a block of that many tokens a side (pooled)."""
    n = len(tokens)
    pos = np.arange(z.shape[0]) * block
    heat = dict(z=z, x=pos, y=pos, colorscale=colorscale, zmin=zmin, zmax=zmax, zmid=zmid,
                colorbar=colorbar, hoverongaps=False)
    if block > 1:
        heat["hovertemplate"] = _("queries %{{y}}… · keys %{{x}}… (blocks of {b})<br>max {value} %{{z:.4f}}").format(
            b=block, value=value) + "<extra></extra>"
    elif n * n <= HOVER_TOKENS_MAX_CELLS:
        heat["customdata"] = _token_pairs(tokens, pos, pos, z, zmax, zmin)
        heat["hovertemplate"] = _hover_tokens(value) + "<extra></extra>"
    else:
        heat["hovertemplate"] = _hover_cell(value) + "<extra></extra>"
    fig = go.Figure(go.Heatmap(**heat))
    side = int(min(900, max(420, 14 * n + 160)))
    fig.update_layout(**base_layout(title, height=side))
    fig.update_xaxes(title=_("key (attended to)"), constrain="domain", showgrid=False, zeroline=False,
                     **token_ticks(tokens, 48))
    fig.update_yaxes(title=_("query (attending)"), autorange="reversed", scaleanchor="x", showgrid=False,
                     zeroline=False, constrain="domain", **token_ticks(tokens, 48))
    if n <= 48:
        fig.update_xaxes(tickangle=-60)
    return fig


def head_figure(pattern: np.ndarray, tokens: Sequence[str], *, model: str, layer: int, head: int,
                colour: str = "linear", max_side: int | None = HEAD_MAX_SIDE) -> go.Figure:
    """One head's pattern [query_pos, key_pos], coloured by `colour` (COLOUR_SCALES): at full
    resolution up to `max_side` tokens (None: always), else max-pooled in square blocks so that no
    strong weight falls between the screen's pixels. The colour scale is set from every weight."""
    z, settings, value = colour_scale(causal_nan(pattern), colour)
    z, b = max_pool(z, max_side) if max_side else (z, 1)
    what = _("layer {layer}, head {head}: attention pattern").format(layer=layer, head=head)
    if b > 1:
        what = _("{title} (max-pooled in blocks of {b}×{b} tokens)").format(title=what, b=b)
    return _square_heatmap(z, tokens, _title(model, what), value, colorscale=SEQUENTIAL, block=b, **settings)


def scores_figure(scores: np.ndarray, tokens: Sequence[str], *, model: str, layer: int, head: int) -> go.Figure:
    """One head's pre-softmax scores [query_pos, key_pos] (q·k/√d; masked cells -inf -> empty)."""
    z = np.where(np.isfinite(scores), scores, np.nan).astype(np.float32)
    z = causal_nan(z)
    lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    what = _("layer {layer}, head {head}: pre-softmax scores q·k/√d").format(layer=layer, head=head)
    return _square_heatmap(z, tokens, _title(model, what),
                           _("score"), colorscale=DIVERGING, zmin=-lim, zmax=lim, zmid=0.0,
                           colorbar=dict(title=dict(text=_("score<br>q·k/√d"), side="top")))


# ---- grids of heads --------------------------------------------------------------------------
def _grid_shape(n_panels: int) -> tuple[int, int]:
    cols = next((c for c in (4, 6, 8) if n_panels % c == 0 and n_panels // c <= c), math.ceil(math.sqrt(n_panels)))
    return math.ceil(n_panels / cols), cols


def panel_side(n_panels: int, cell_budget: int = GRID_CELLS) -> int:
    """Cells per side that each of n_panels square panels may have within the budget."""
    return max(16, min(MAX_PANEL_SIDE, math.isqrt(cell_budget // n_panels)))


def grid_figure(patterns: np.ndarray, tokens: Sequence[str], panel_titles: Sequence[str], title: str,
                *, cell_budget: int = GRID_CELLS, block: int = 1, colour: str = "linear") -> go.Figure:
    """Small multiples of patterns [panel, query_pos, key_pos] on one shared 0..1 colour scale.

    Each panel is max-pooled to at most `panel_side` cells a side (within the cell budget), so a
    pooled cell shows the strongest weight in its block of queries and keys. `block` > 1 says
    the patterns come already max-pooled in blocks of that many tokens (core pools views that
    read every layer as it computes them).
    """
    n_panels, n = patterns.shape[0], len(tokens)
    # Pool first, then blank the upper triangle of blocks: weights are >= 0 and the trace
    # holds 0 where the mask is, so a diagonal block's max is its largest visible weight.
    pooled, b = max_pool(patterns, panel_side(n_panels, cell_budget)) if block == 1 else (patterns, block)
    pooled, settings, value = colour_scale(causal_nan(pooled), colour)
    rows, cols = _grid_shape(n_panels)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[esc(s) for s in panel_titles],
                        horizontal_spacing=0.02, vertical_spacing=0.06 if rows < 5 else 0.03)
    starts = np.arange(pooled.shape[-1]) * b
    label_tokens = b == 1 and n <= 32
    hover_tokens = b == 1 and n_panels * n * n <= HOVER_TOKENS_MAX_CELLS
    if hover_tokens:
        hover = _hover_tokens(value)
    elif b == 1:
        hover = _hover_cell(value)
    else:
        hover = _("queries %{{y}}… · keys %{{x}}… (blocks of {b})<br>max {value} %{{z:.4f}}").format(b=b, value=value)
    for i in range(n_panels):
        heat = dict(z=pooled[i], x=starts, y=starts, coloraxis="coloraxis", hoverongaps=False,
                    hovertemplate=f"{esc(panel_titles[i])}<br>{hover}<extra></extra>")
        if hover_tokens:
            heat["customdata"] = _token_pairs(tokens, starts, starts, pooled[i], settings["zmax"])
        fig.add_trace(go.Heatmap(**heat), row=i // cols + 1, col=i % cols + 1)
    # A panel is ~760/cols px wide: a label every ~24 px at most, so the turned labels never overlap.
    ticks = token_ticks(tokens, max(2, min(16, 760 // cols // 24))) if label_tokens else {}
    # Positions on a panel's x axis stop short of its right edge, where the next panel's "0" begins
    # (Plotly's own ticks put "1000" and "0" side by side: "10000").
    x_ticks = ticks or dict(tickmode="array", tickvals=_edge_free_ticks(n))
    fig.update_xaxes(showticklabels=False, constrain="domain", showgrid=False, zeroline=False, **x_ticks)
    fig.update_yaxes(showticklabels=False, autorange="reversed", constrain="domain", showgrid=False, zeroline=False,
                     **ticks)
    for r in range(rows):
        fig.update_yaxes(showticklabels=True, row=r + 1, col=1)
    for c in range(cols):
        fig.update_xaxes(showticklabels=True, tickangle=-60 if label_tokens else 0, row=rows, col=c + 1)
    if b > 1:
        title = _("{title} (max-pooled in blocks of {b}×{b} tokens)").format(title=title, b=b)
    fig.update_layout(**base_layout_with_panels(title, height=int(130 + rows * 260)),
                      coloraxis=dict(colorscale=SEQUENTIAL, cmin=settings["zmin"], cmax=settings["zmax"],
                                     colorbar=settings["colorbar"]))
    fig.update_annotations(font_size=11)
    return fig


def _edge_free_ticks(n: int, most: int = 3) -> list[int]:
    """Round positions 0, step, 2·step, … (step 1, 2 or 5 × 10^k), at most `most` of them, all in the first
    80% of 0..n-1, so no label sits at a panel's right edge."""
    limit = max(0.0, 0.8 * (n - 1))
    for k in range(0, 8):
        for m in (1, 2, 5):
            step = m * 10**k
            vals = list(range(0, int(limit) + 1, step))
            if len(vals) <= most:
                return vals
    return [0]


def layer_heads_figure(patterns: np.ndarray, tokens: Sequence[str], *, model: str, layer: int,
                       cell_budget: int = GRID_CELLS, colour: str = "linear") -> go.Figure:
    """All heads of one layer, patterns [head, query_pos, key_pos]."""
    return grid_figure(patterns, tokens, [_("head {head}").format(head=h) for h in range(patterns.shape[0])],
                       _title(model, _("layer {layer}, all {n} heads").format(layer=layer, n=patterns.shape[0])),
                       cell_budget=cell_budget,
                       colour=colour)


def head_across_layers_figure(patterns: np.ndarray, tokens: Sequence[str], *, model: str, head: int,
                              cell_budget: int = GRID_CELLS, block: int = 1, colour: str = "linear") -> go.Figure:
    """Head `head` in every layer, patterns [layer, query_pos, key_pos] (pooled by `block`)."""
    return grid_figure(patterns, tokens, [_("layer {layer}").format(layer=L) for L in range(patterns.shape[0])],
                       _title(model, _("head {head} in layers 0–{last}").format(head=head, last=patterns.shape[0] - 1)),
                       cell_budget=cell_budget,
                       block=block, colour=colour)


def layer_means_figure(means: np.ndarray, tokens: Sequence[str], *, model: str,
                       cell_budget: int = GRID_CELLS, block: int = 1, colour: str = "linear") -> go.Figure:
    """Each layer's pattern averaged over its heads, [layer, query_pos, key_pos] (pooled by `block`)."""
    return grid_figure(means, tokens, [_("layer {layer}, mean").format(layer=L) for L in range(means.shape[0])],
                       _title(model, _("mean over heads, layers 0–{last}").format(last=means.shape[0] - 1)),
                       cell_budget=cell_budget,
                       block=block, colour=colour)


# ---- head atlas -------------------------------------------------------------------------------
def atlas_figure(scores: np.ndarray, *, model: str, metric: str, description: str,
                 selected: tuple[int, int] | None = None) -> go.Figure:
    """A [layer, head] grid of one per-head score; click a cell (or pick it) to open the head.

    An invisible marker sits on every cell: Plotly selects markers on click, not heatmap
    cells, so the markers are what makes a click reach the app.
    """
    n_layer, n_head = scores.shape
    z = np.asarray(scores, dtype=np.float32)
    finite = z[np.isfinite(z)]
    # metric and description: core.attention.HEAD_METRICS's English (marked there), or already translated
    label, about = _(metric), _(description)
    entropy = "ntropy" in metric or label == _("Entropy (bits)")
    zmax = 1.0 if not entropy else float(finite.max() if finite.size else 1.0)
    # The heatmap draws; the markers on top take hover and clicks (they are what selects).
    fig = go.Figure(go.Heatmap(
        z=z, x=np.arange(n_head), y=np.arange(n_layer), colorscale=SEQUENTIAL, zmin=0.0, zmax=zmax,
        texttemplate="%{z:.2f}" if z.size <= 400 else None, textfont=dict(size=10), hoverinfo="skip",
        colorbar=dict(title=dict(text=esc(label).replace(" (", "<br>("), side="top"))))
    hh, ll = np.meshgrid(np.arange(n_head), np.arange(n_layer))
    fig.add_trace(go.Scatter(
        x=hh.ravel(), y=ll.ravel(), customdata=z.ravel(), mode="markers", showlegend=False,
        marker=dict(size=max(8, int(420 / max(n_layer, n_head))), color="rgba(0,0,0,0)", symbol="square"),
        hovertemplate=_("layer %{{y}}, head %{{x}}<br>{metric} %{{customdata:.3f}}<br>click to open this head").format(
            metric=esc(label)) + "<extra></extra>"))
    if selected is not None:
        fig.add_shape(type="rect", x0=selected[1] - 0.5, x1=selected[1] + 0.5, y0=selected[0] - 0.5,
                      y1=selected[0] + 0.5, line=dict(color="#e4572e", width=3))
    fig.update_layout(**base_layout(_title(model, _("head atlas: {metric}").format(metric=esc(label))) +
                                    f"<br><sup>{esc(about)}</sup>", height=int(170 + 34 * n_layer)),
                      clickmode="event+select", dragmode=False)
    fig.update_xaxes(title=_("head"), dtick=1, range=[-0.5, n_head - 0.5], showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_yaxes(title=_("layer"), dtick=1, range=[n_layer - 0.5, -0.5], showgrid=False, zeroline=False,
                     scaleanchor="x", constrain="domain")
    return fig


# ---- token focus --------------------------------------------------------------------------------
def focus_figure(weights: np.ndarray, tokens: Sequence[str], positions: np.ndarray, pos: int, *,
                 model: str, direction: str, head: int | None) -> go.Figure:
    """Layers x positions for one token: weights [layer, len(positions)].

    direction "to": where token `pos` looks (positions are keys 0..pos);
    direction "from": who looks at it (positions are queries pos..n-1).
    """
    n_layer = weights.shape[0]
    who = _("mean over heads") if head is None else _("head {head}").format(head=head)
    tok = esc(short(tokens[pos], 24))
    if direction == "to":
        what, axis, hover_role = _("what token {pos} “{token}” attends to").format(pos=pos, token=tok), \
            _("key position"), _("key")
    else:
        what, axis, hover_role = _("which tokens attend to token {pos} “{token}”").format(pos=pos, token=tok), \
            _("query position"), _("query")
    layers = np.arange(n_layer)
    toks = np.array([esc(s) for s in tokens], dtype=object)
    custom = np.broadcast_to(toks[positions][None, :], weights.shape)
    z = np.asarray(weights, dtype=np.float32)
    # One row per layer, often spread thin: the scale runs to the largest weight shown, not to 1.
    zmax = float(max(z.max(initial=0.0), 1e-3))
    fig = go.Figure(go.Heatmap(
        z=z, x=positions, y=layers, customdata=custom,
        colorscale=SEQUENTIAL, zmin=0.0, zmax=zmax, colorbar=weight_bar(),
        hovertemplate=_("layer %{{y}}<br>{role} %{{x}} %{{customdata}}<br>weight %{{z:.4f}}").format(role=hover_role)
        + "<extra></extra>"))
    sub = [tokens[i] for i in positions]
    ticks = token_ticks(sub, 48)
    ticks["tickvals"] = [int(positions[i]) for i in ticks["tickvals"]]
    fig.update_layout(**base_layout(_title(model, _("{what}, every layer ({who})").format(what=what, who=who)),
                                    height=int(160 + 26 * n_layer)))
    # At most 36 labels (token_ticks), turned so that each needs only its line height: no overlap at 1,000 tokens.
    fig.update_xaxes(title=axis, tickangle=-60, showgrid=False, zeroline=False, **ticks)
    fig.update_yaxes(title=_("layer"), dtick=1 if n_layer <= 24 else None, autorange="reversed", showgrid=False,
                     zeroline=False)
    fit_colour_bars(fig)  # a model of few layers: room for the colour bar's title and ticks
    return fig
