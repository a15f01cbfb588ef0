"""Figures of the next-token page: top-k bars, log-log rank plot, surprisal strip."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from i18n import _

from .common import CELL_TEXT, LIGHT_SEQUENTIAL, base_layout, esc, format_prob


def top_k_bars(tokens: Sequence[str], probs: np.ndarray, title: str) -> go.Figure:
    """Horizontal bars, likeliest on top. y holds ranks (not token strings, which may repeat); the
    axis shows the tokens, so the hover writes the rank itself (Plotly's %{y} would show the token)
    and customdata holds the token names alone (the CSV's label column)."""
    ranks = np.arange(1, len(tokens) + 1)
    labels = [esc(t) for t in tokens]
    shown = [format_prob(p) for p in probs]
    hover = _("rank {rank}: {token}<br>p = {p}")
    fig = go.Figure(go.Bar(
        x=np.asarray(probs, dtype=np.float64), y=ranks, orientation="h", name=_("probability"),
        text=shown, textposition="outside", cliponaxis=False, customdata=labels,
        hovertext=[hover.format(rank=r, token=t, p=p) for r, t, p in zip(ranks, labels, shown)],
        hovertemplate="%{hovertext}<extra></extra>",
        marker_color="#3b6fb6",
    ))
    fig.update_layout(**base_layout(title), height=max(260, 28 * len(tokens) + 90), bargap=0.25)
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=ranks, ticktext=labels, title=_("next token"))
    top = float(np.max(probs)) if len(probs) else 0.0
    fig.update_xaxes(title=_("probability"), tickformat=".0%" if top >= 0.1 else ".3~%",
                     range=[0, max(top * 1.18, 1e-9)])
    return fig


def rank_plot(ranks: np.ndarray, probs: np.ndarray, title: str, model: str = "GPT-2") -> go.Figure:
    """Probability against rank on log-log axes, with a 1/rank line through rank 1. `model`: whose
    probabilities they are (its name, escaped)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    keep = probs > 0
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ranks[keep], y=probs[keep], mode="lines",
                             name=_("{model}'s probabilities").format(model=model),
                             line=dict(width=2.5, color="#3b6fb6"), customdata=[format_prob(p) for p in probs[keep]],
                             hovertemplate=_("rank %{x:,}<br>p = %{customdata}") + "<extra></extra>"))
    ref = probs[0] / ranks
    fig.add_trace(go.Scatter(x=ranks, y=ref, mode="lines", name=_("∝ 1/rank (power law)"),
                             line=dict(width=1.5, dash="dash", color="#d95f02"), hoverinfo="skip"))
    fig.update_layout(**base_layout(title), height=420, legend=dict(x=0.99, y=0.99, xanchor="right"))
    fig.update_xaxes(type="log", title=_("rank of the token (1 = likeliest)"))
    fig.update_yaxes(type="log", title=_("probability"), exponentformat="power")
    return fig


def surprisal_strip(tokens: Sequence[str], surprisal_bits: np.ndarray, title: str, per_row: int = 12) -> go.Figure:
    """The prompt as a grid of token cells, `per_row` to a line, coloured by surprisal
    (-log2 p of each token given the ones before it). The first token is grey and says why:
    nothing came before it to predict it. Cells keep their shape at any figure size (the y axis is
    tied to the x axis), so an export at 1,600 × 900 does not stretch them; 12 to a row leaves ~57 px
    a cell on the page, room for a token of 9 characters. Token text is near-black on a light scale
    (contrast >= 7:1 on every cell, in every style)."""
    n = len(tokens)
    per_row = max(1, min(per_row, n))
    rows = int(np.ceil(n / per_row))
    z = np.full((rows, per_row), np.nan)
    unpredicted = np.full((rows, per_row), np.nan)
    text = np.full((rows, per_row), "", dtype=object)
    hover = np.full((rows, per_row), "", dtype=object)
    s = np.asarray(surprisal_bits, dtype=np.float64)
    first = _("#{pos}: {token}<br>no surprisal: the first token, nothing before it predicts it")
    later = _("#{pos}: {token}<br>surprisal {bits:.2f} bits (p = {p})")
    for i, tok in enumerate(tokens):
        r, c = divmod(i, per_row)
        text[r, c] = esc(tok if len(tok) <= 9 else tok[:8] + "…")
        if np.isnan(s[i]):
            unpredicted[r, c] = 0.0
            hover[r, c] = first.format(pos=i, token=esc(tok))
        else:
            z[r, c] = s[i]
            hover[r, c] = later.format(pos=i, token=esc(tok), bits=s[i], p=format_prob(2 ** -s[i]))
    show_text = n <= 400
    # Text on cells: a light scale and near-black text, readable on every cell in every style.
    cells = dict(text=text if show_text else None, texttemplate="%{text}" if show_text else None,
                 textfont=dict(color=CELL_TEXT, size=12), customdata=hover,
                 hovertemplate="%{customdata}<extra></extra>", xgap=2, ygap=2, hoverongaps=False)
    layout = base_layout(title + "<br><sup>" + _("grey: the first token, which nothing predicts") + "</sup>")
    rows_px = 34 * rows  # px: rows of 34 px, ~57 px a cell across the page's column
    area = min(max(rows_px, 150), 1400)  # the plot area: at least room for the colour bar's ticks
    height = int(layout["margin"]["t"] + layout["margin"]["b"] + area)
    fig = go.Figure(go.Heatmap(z=z, colorscale=LIGHT_SEQUENTIAL, zmin=0, name=_("surprisal"), **cells,
                               colorbar=dict(title=dict(text=_("surprisal<br>(bits)"), side="top"), thickness=14,
                                             lenmode="pixels", len=min(area, 300), y=1, yanchor="top")))
    fig.add_trace(go.Heatmap(z=unpredicted, colorscale=[[0, "#c8c8c8"], [1, "#c8c8c8"]], showscale=False,
                             name=_("first token"), **cells))
    fig.update_layout(**layout, height=height)
    # Cells keep their shape at any size (y tied to x, ~57 × 34 px on the page), pushed to the top of
    # the plot area: a short prompt leaves the room below for the colour bar, not a gap above.
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False,
                     scaleanchor="x", scaleratio=0.6, constrain="domain", constraintoward="top")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain", constraintoward="left")
    return fig
