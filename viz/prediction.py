"""Figures of the "Inside the prediction" page: the logit lens, direct logit attribution, MLP
neurons and what a head writes (the contribution graph's is in viz.contributions). Pure
Plotly; token text is escaped.

Dimension names: layer head pos vocab. Lens rows: 0 = the embeddings, n_layer = the output.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from i18n import _

from .common import (
    CELL_TEXT,
    COLUMN_PX,
    DIVERGING,
    LIGHT_SEQUENTIAL,
    NEGATIVE,
    POSITIVE,
    base_layout,
    base_layout_with_panels,
    esc,
    format_prob,
    short,
    token_ticks,
)
from .contributions import contribution_graph_figure, state_names  # noqa: F401 (the graph's figure lives there)
from .fit import fit_cell_text, fit_colour_bars

PUSH_SCALE = DIVERGING  # the app's one convention: red pushes the logit up, blue down (the bars alike)


def lens_row_names(n_rows: int) -> list[str]:
    """Names of the residual stream's states, bottom up: the embeddings, after each block but
    the last, then the output (after the last block, what ln_f and the unembedding read)."""
    return state_names(n_rows - 1)


def lens_grid_figure(top_tokens: Sequence[Sequence[Sequence[str]]], top_probs: np.ndarray, colour: np.ndarray,
                     positions: np.ndarray, tokens: Sequence[str], title: str, colour_label: str) -> go.Figure:
    """Layers (rows, the output on top) × positions: each cell names the likeliest next token
    there and is coloured by `colour` [row, pos] (a probability); hover lists the top 5."""
    rows, n = colour.shape
    names = lens_row_names(rows)
    text = np.array([[esc(short(top_tokens[r][c][0], 9)) for c in range(n)] for r in range(rows)], dtype=object)
    where = _("{state} · after “{token}” (position {pos})")
    hover = np.array([[where.format(state=names[r], token=esc(short(tokens[positions[c]], 20)), pos=positions[c])
                       + "<br>" + "<br>".join(f"{esc(short(tok, 20))}  {format_prob(p)}"
                                              for tok, p in zip(top_tokens[r][c], top_probs[r, c]))
                       for c in range(n)] for r in range(rows)], dtype=object)
    fig = go.Figure(go.Heatmap(z=colour.astype(np.float32), x=np.arange(n), y=np.arange(rows), text=text,
                               texttemplate="%{text}", textfont=dict(size=10, color=CELL_TEXT), customdata=hover,
                               zmin=0,
                               zmax=1, hovertemplate="%{customdata}<extra></extra>", colorscale=LIGHT_SEQUENTIAL,
                               xgap=1, ygap=1,
                               colorbar=dict(title=dict(text=esc(colour_label).replace(" ", "<br>", 1), side="top"))))
    fig.update_layout(**base_layout(title, height=int(150 + 26 * rows)))
    fig.update_yaxes(tickmode="array", tickvals=list(range(rows)), ticktext=names, showgrid=False)
    fig.update_xaxes(tickmode="array", tickvals=list(range(n)), ticktext=[esc(short(tokens[p], 10)) for p in positions],
                     tickangle=-45, title=_("prompt token (the prediction is of the token after it)"), showgrid=False)
    fit_colour_bars(fig)  # a model of few layers: room for the colour bar's title and ticks
    fit_cell_text(fig, COLUMN_PX, fig.layout.height)  # many positions: shorter tokens in narrower cells
    return fig


def lens_lines_figure(probs: np.ndarray, labels: Sequence[str], title: str) -> go.Figure:
    """probs [row, token]: each token's probability read at every layer, as lines."""
    rows = probs.shape[0]
    fig = go.Figure()
    for j, label in enumerate(labels):
        fig.add_trace(go.Scatter(x=np.arange(rows), y=probs[:, j].astype(np.float64), mode="lines+markers",
                                 name=esc(short(label, 24)), customdata=[format_prob(p) for p in probs[:, j]],
                                 hovertemplate=f"{esc(short(label, 24))}: %{{customdata}}<extra></extra>"))
    fig.update_layout(**base_layout(title, height=420), legend=dict(title=_("token")))
    fig.update_xaxes(tickmode="array", tickvals=list(range(rows)), ticktext=lens_row_names(rows), tickangle=-45)
    fig.update_yaxes(title=_("probability"), tickformat=".0%", rangemode="tozero")
    return fig


def attribution_figure(heads: np.ndarray, mlp: np.ndarray, attn_bias: np.ndarray, embed: float, pos_embed: float,
                       ln_bias: float, title: str, unit: str = "logit") -> go.Figure:
    """Each head's part of a logit as a [layer, head] grid, and every other part as bars: the
    embeddings, each MLP, each attention layer's bias, ln_f's bias. Red pushes the logit up, blue down."""
    n_layer, n_head = heads.shape
    lim = max(float(np.abs(heads).max(initial=0)), 1e-6)
    names = [_("token embedding"), _("position embedding")] + [f"MLP {L}" for L in range(n_layer)] + \
        [_("attn bias {layer}").format(layer=L) for L in range(n_layer)] + [_("ln_f bias")]
    layout = base_layout_with_panels(title, height=int(max(460, 190 + 30 * n_layer, 24 * len(names) + 160)))
    layout["margin"] = dict(layout["margin"], b=130)  # room for the colour bar under the head axis
    below_axis = -62 / (layout["height"] - layout["margin"]["t"] - layout["margin"]["b"])  # 62 px under the plot
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.2,
                        subplot_titles=[_("each attention head"), _("everything else")])
    fig.add_trace(go.Heatmap(z=heads.astype(np.float32), x=np.arange(n_head), y=np.arange(n_layer),
                             colorscale=PUSH_SCALE, zmin=-lim, zmax=lim, zmid=0,
                             colorbar=dict(title=dict(text=_("{unit} (red: pushes up)").format(unit=unit), side="top"),
                                           orientation="h",
                                           x=0.0, xanchor="left", y=below_axis, yanchor="top", len=0.55, thickness=12),
                             hovertemplate=_("layer %{{y}}, head %{{x}}<br>%{{z:+.3f}} {unit}").format(unit=unit)
                             + "<extra></extra>"),
                  row=1, col=1)
    values = np.array([embed, pos_embed, *mlp, *attn_bias, ln_bias], dtype=np.float64)
    fig.add_trace(go.Bar(x=values, y=np.arange(len(names)), orientation="h",
                         marker_color=np.where(values >= 0, POSITIVE, NEGATIVE), customdata=names,
                         hovertemplate=f"%{{customdata}}: %{{x:+.3f}} {unit}<extra></extra>", showlegend=False),
                  row=1, col=2)
    fig.update_layout(**layout, clickmode="event+select")
    fig.update_yaxes(autorange="reversed", dtick=1, title=_("layer"), row=1, col=1)
    fig.update_xaxes(title=_("head"), dtick=1, row=1, col=1)
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(range(len(names))), ticktext=names,
                     row=1, col=2)
    fig.update_xaxes(title=unit, zeroline=True, row=1, col=2)
    return fig


def pushes_figure(up: Sequence[str], up_values: np.ndarray, down: Sequence[str], down_values: np.ndarray,
                  title: str, unit: str = "logit") -> go.Figure:
    """Two bar lists: the tokens pushed up most (red) and down most (blue), the app's signed colours."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[_("pushed up"), _("pushed down")], horizontal_spacing=0.18)
    for col, (toks, vals, colour) in enumerate(((up, up_values, POSITIVE), (down, down_values, NEGATIVE)), start=1):
        y = np.arange(len(toks))
        fig.add_trace(go.Bar(x=np.asarray(vals, dtype=np.float64), y=y, orientation="h", marker_color=colour,
                             customdata=[esc(x) for x in toks], showlegend=False,
                             hovertemplate=f"%{{customdata}}: %{{x:+.3f}} {unit}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(y),
                         ticktext=[esc(short(x, 16)) for x in toks], row=1, col=col)
    fig.update_layout(**base_layout_with_panels(title, height=max(320, 26 * len(up) + 140)))
    return fig


def neuron_strip_figure(acts: np.ndarray, neurons: Sequence[int], layer: int, tokens: Sequence[str],
                        title: str) -> go.Figure:
    """acts [neuron, pos]: each neuron's activation (after GELU) across the prompt."""
    n = acts.shape[1]
    lim = max(float(np.abs(acts).max(initial=0)), 1e-6)
    fig = go.Figure(go.Heatmap(z=acts.astype(np.float32), x=np.arange(n), y=np.arange(len(neurons)),
                               colorscale=DIVERGING, zmin=-lim, zmax=lim, zmid=0,
                               colorbar=dict(title=dict(text=_("activation"), side="top")),
                               customdata=np.array([[f"L{layer} N{i}<br>#{p} {esc(x)}" for p, x in enumerate(tokens)]
                                                    for i in neurons], dtype=object),
                               hovertemplate="%{customdata}<br>" + _("activation") + " %{z:.3f}<extra></extra>"))
    fig.update_layout(**base_layout(title, height=int(150 + 22 * len(neurons))))
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(neurons))),
                     ticktext=[f"L{layer} N{i}" for i in neurons], autorange="reversed")
    fig.update_xaxes(title=_("prompt token"), **token_ticks(tokens, 48))
    return fig
