"""Figures of the Experiments page: a prediction before and after an ablation, the change in
surprisal over the prompt, the head-ablation scan, activation patching, and the difference of
two prompts' attention patterns.

Pure Plotly: numpy arrays and display tokens in, go.Figure out. Token text is escaped.
Dimension names: layer head pos.
"""
from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from i18n import _

from .attention import causal_nan
from .common import (
    DIVERGING,
    NEGATIVE,
    POSITIVE,
    base_layout,
    base_layout_with_panels,
    clip_hover,
    clip_marks,
    esc,
    format_prob,
    symmetric_limit,
    text_columns,
    token_ticks,
)
from .fit import fit_colour_bars


def before_after_figure(tokens: Sequence[str], before: np.ndarray, after: np.ndarray, title: str) -> go.Figure:
    """Grouped bars: each candidate token's probability before and after the intervention."""
    y = np.arange(len(tokens))
    labels = [esc(t) for t in tokens]
    fig = go.Figure()
    for name, p, colour in ((_("before"), before, "#9db4d6"), (_("after"), after, "#d95f02")):
        p = np.asarray(p, dtype=np.float64)
        fig.add_trace(go.Bar(x=p, y=y, orientation="h", name=name, marker_color=colour,
                             customdata=np.stack([labels, [format_prob(v) for v in p]], -1) if len(p) else None,
                             hovertemplate=f"%{{customdata[0]}}<br>{name}: %{{customdata[1]}}<extra></extra>"))
    fig.update_layout(**base_layout(title), barmode="group", height=max(300, 34 * len(tokens) + 110),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=y, ticktext=labels, title=_("next token"))
    fig.update_xaxes(title=_("probability"), tickformat=".1~%", rangemode="tozero")
    return fig


def surprisal_change_figure(tokens: Sequence[str], delta_bits: np.ndarray, title: str) -> go.Figure:
    """Bars per prompt position: surprisal after minus before, in bits (up: GPT-2 found the
    token harder to predict without the ablated parts). Position 0 has none."""
    d = np.asarray(delta_bits, dtype=np.float64)
    x = np.arange(len(tokens))
    fig = go.Figure(go.Bar(x=x, y=np.nan_to_num(d), marker_color=np.where(d > 0, POSITIVE, NEGATIVE),
                           customdata=[f"#{i} {esc(t)}" for i, t in enumerate(tokens)],  # %{x}: the tick label
                           hovertemplate="%{customdata}<br>" + _("change %{y:+.3f} bits") + "<extra></extra>"))
    fig.update_layout(**base_layout(title), height=340)
    fig.update_xaxes(title=_("prompt token"), **token_ticks(tokens, 48))
    fig.update_yaxes(title=_("Δ surprisal (bits)"), zeroline=True)
    return fig


def scan_figure(heads: np.ndarray, mlp: np.ndarray, title: str, target: str) -> go.Figure:
    """heads [layer, head] and mlp [layer]: the change in ln p(target) when that part alone
    is knocked out, on the app's diverging scale (red: p rose without it, the part held it back;
    blue: p fell, the part helped). Both panels share the layer axis (same rows, same range); the
    colour limit is robust (one MLP cell does not wash out every head): cells beyond it say so."""
    n_layer, n_head = heads.shape
    heads, mlp = heads.astype(np.float32), mlp.astype(np.float32)[:, None]
    lim = max(symmetric_limit(np.concatenate([heads.ravel(), mlp.ravel()])), 1e-6)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.88, 0.12], horizontal_spacing=0.03, shared_yaxes=True,
                        subplot_titles=[_("each attention head"), "MLP"])
    scale = dict(colorscale=DIVERGING, zmin=-lim, zmax=lim, zmid=0.0, coloraxis=None)
    fig.add_trace(go.Heatmap(z=heads, x=np.arange(n_head), y=np.arange(n_layer), **scale,
                             colorbar=dict(title=dict(text=f"Δ ln p<br>({esc(target)})", side="top")),  # i18n: skip
                             customdata=clip_marks(heads, -lim, lim),
                             hovertemplate=_("layer %{y}, head %{x}<br>Δ ln p %{z:+.4f}")
                             + "%{customdata}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Heatmap(z=mlp, x=[0], y=np.arange(n_layer), showscale=False, **scale,
                             customdata=clip_marks(mlp, -lim, lim),
                             hovertemplate=_("layer %{y}, MLP<br>Δ ln p %{z:+.4f}") + "%{customdata}<extra></extra>"),
                  row=1, col=2)
    # Invisible markers on the head cells: Plotly selects markers on click, not heatmap cells. The axes'
    # ranges are set, so the markers' size does not widen them past the cells.
    hh, ll = np.meshgrid(np.arange(n_head), np.arange(n_layer))
    fig.add_trace(go.Scatter(x=hh.ravel(), y=ll.ravel(), mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(size=max(8, int(420 / max(n_layer, n_head))), color="rgba(0,0,0,0)",
                                         symbol="square")), row=1, col=1)
    fig.update_layout(**base_layout_with_panels(title, height=int(190 + 30 * n_layer)), clickmode="event+select",
                      dragmode=False)
    rows = dict(range=[n_layer - 0.5, -0.5], autorange=False, dtick=1)
    fig.update_yaxes(title=_("layer"), **rows, row=1, col=1)
    fig.update_yaxes(showticklabels=False, **rows, row=1, col=2)
    fig.update_xaxes(title=_("head"), dtick=1, range=[-0.5, n_head - 0.5], autorange=False, row=1, col=1)
    fig.update_xaxes(showticklabels=False, range=[-0.5, 0.5], autorange=False, row=1, col=2)
    return fig


def patching_figure(grid: np.ndarray, title: str, *, x_title: str, x_labels: Sequence[str] | None = None) -> go.Figure:
    """grid [layer, position or head]: the share of the clean-vs-corrupted logit difference that
    patching that activation restores (0 = as corrupted, 1 = as clean)."""
    n_layer, n = grid.shape
    lim = max(1.0, float(np.nanmax(np.abs(grid), initial=0)))
    names = [f"{x_title} {i}" + (f" {esc(x_labels[i])}" if x_labels is not None else "") for i in range(n)]
    custom = np.broadcast_to(np.array(names, dtype=object)[None, :], grid.shape)  # %{x} would show the tick label
    fig = go.Figure(go.Heatmap(z=grid.astype(np.float32), x=np.arange(n), y=np.arange(n_layer), colorscale=DIVERGING,
                               zmin=-lim, zmax=lim, zmid=0.0, customdata=custom,
                               colorbar=dict(title=dict(text=_("restored<br>(1 = clean)"), side="top")),
                               hovertemplate=_("layer %{y}, %{customdata}<br>restored %{z:.3f}") + "<extra></extra>"))
    fig.update_layout(**base_layout(title, height=int(170 + 30 * n_layer)))
    fig.update_yaxes(autorange="reversed", dtick=1, title=_("layer"))
    ticks = token_ticks(x_labels, 48) if x_labels is not None else dict(dtick=1)
    fig.update_xaxes(title=x_title, **ticks)
    fit_colour_bars(fig)  # a model of few layers: room for the colour bar's title and ticks
    return fig


def pattern_difference_figure(a: np.ndarray, b: np.ndarray, tokens_a: Sequence[str], tokens_b: Sequence[str],
                              title: str) -> go.Figure:
    """Two patterns [query_pos, key_pos] of the same size: a - b on a diverging scale. Axis
    labels show both prompts' tokens ("cat / dog") where they differ."""
    d = causal_nan(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))
    labels = [x if x == y else f"{x} / {y}" for x, y in zip(tokens_a, tokens_b)]
    lim = max(symmetric_limit(np.nan_to_num(d)), 1e-6)
    n = len(labels)
    marks, clipped = clip_hover(d, -lim, lim)
    fig = go.Figure(go.Heatmap(z=d, x=np.arange(n), y=np.arange(n), colorscale=DIVERGING, zmin=-lim, zmax=lim, zmid=0,
                               hoverongaps=False, customdata=marks,
                               colorbar=dict(title=dict(text=_("weight<br>first − second"), side="top")),
                               hovertemplate=_("query %{y} · key %{x}<br>difference %{z:+.4f}")
                               + clipped + "<extra></extra>"))
    ticks = token_ticks(labels, 48)
    labels_px = 0.56 * 13 * max((text_columns(html.unescape(t)) for t in ticks["ticktext"]), default=1)
    rows_px = 17 * len(ticks["tickvals"]) * (ticks["tickvals"][1] - ticks["tickvals"][0] if n > 1 else 1)
    # a square: one 13 px label a row (17 px), and below it the keys' labels turned upright
    fig.update_layout(**base_layout(title, height=int(min(1000, max(420, rows_px + labels_px + 130)))))
    fig.update_xaxes(title=_("key"), constrain="domain", **ticks)
    fig.update_yaxes(title=_("query"), autorange="reversed", scaleanchor="x", constrain="domain", **ticks)
    return fig
