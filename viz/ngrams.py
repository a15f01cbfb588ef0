"""Figures of the n-gram page: how often each letter occurs, which letter follows which, and the
next letter or word after a context for each n, side by side."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from i18n import _

from .common import SEQUENTIAL, base_layout, esc, format_prob

BAR_COLOUR = "#3b6fb6"


def frequency_bars(labels: Sequence[str], probs: np.ndarray, counts: np.ndarray, title: str) -> go.Figure:
    """One bar per unit (in the order given), its share of the text; hover: the count."""
    probs = np.asarray(probs, dtype=np.float64)
    shown = [esc(u) for u in labels]
    fig = go.Figure(go.Bar(
        x=list(range(len(shown))), y=probs, marker_color=BAR_COLOUR,
        customdata=np.stack([shown, [format_prob(p) for p in probs], [f"{int(c):,}" for c in counts]], axis=-1)
        if len(shown) else None,
        hovertemplate=_("%{customdata[0]}: %{customdata[1]} (%{customdata[2]} times)") + "<extra></extra>",
    ))
    fig.update_layout(**base_layout(title), height=360, bargap=0.15)
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(shown))), ticktext=shown, title=_("letter (␣ = space)"))
    fig.update_yaxes(title=_("share of the text"), tickformat=".0%")
    return fig


def pair_heatmap(labels: Sequence[str], probs: np.ndarray, counts: np.ndarray, title: str) -> go.Figure:
    """probs[i, j] = P(next = labels[j] | previous = labels[i]) as a grid, previous letter down the
    side, next letter along the top; a row never seen is blank. (len(labels), len(labels))."""
    probs = np.asarray(probs, dtype=np.float64)
    shown = [esc(u) for u in labels]
    cell = _("{previous} → {next}: {p} ({count:,} times)")
    hover = np.array([[cell.format(previous=shown[i], next=shown[j], p=format_prob(probs[i, j]),
                                   count=int(counts[i, j]))
                       for j in range(len(shown))] for i in range(len(shown))], dtype=object)
    fig = go.Figure(go.Heatmap(
        z=probs, x=list(range(len(shown))), y=list(range(len(shown))), colorscale=SEQUENTIAL, zmin=0,
        customdata=hover, hovertemplate="%{customdata}<extra></extra>", xgap=1, ygap=1,
        colorbar=dict(title=_("P(next | previous)"), tickformat=".0%"),
    ))
    fig.update_layout(**base_layout(title), height=640)
    ticks = dict(tickmode="array", tickvals=list(range(len(shown))), ticktext=shown)
    fig.update_xaxes(**ticks, title=_("next letter"), constrain="domain")
    fig.update_yaxes(**ticks, title=_("previous letter"), autorange="reversed", scaleanchor="x",
                     constrain="domain")  # square cells shrink the domain, not widen the range past the letters
    return fig


def next_unit_panels(panels: Sequence[tuple[str, str, Sequence[str], np.ndarray, str]], title: str) -> go.Figure:
    """One panel of horizontal bars per model, left to right: (heading, context, units likeliest
    first, their probabilities, what an empty panel says). Bars run on one shared 0–100% scale, so
    a sure prediction is a long bar in any panel."""
    n = max(1, len(panels))
    fig = make_subplots(rows=1, cols=n, subplot_titles=[f"{esc(p[0])}<br>{esc(p[1])}" for p in panels] or [""],
                        horizontal_spacing=min(0.06, 0.5 / n))
    longest = max([len(p[2]) for p in panels] + [1])
    for col, (_heading, _context, labels, probs, empty_note) in enumerate(panels, start=1):
        probs = np.asarray(probs, dtype=np.float64)
        shown = [esc(u) for u in labels]
        ranks = list(range(1, len(shown) + 1))
        fig.add_trace(go.Bar(
            x=probs, y=ranks, orientation="h", marker_color=BAR_COLOUR, showlegend=False,
            text=[f"{s}  {format_prob(p)}" for s, p in zip(shown, probs)], textposition="outside", cliponaxis=False,
            customdata=np.stack([shown, [format_prob(p) for p in probs]], axis=-1) if shown else None,
            hovertemplate="%{customdata[0]}: %{customdata[1]}<extra></extra>",
        ), row=1, col=col)
        fig.update_yaxes(tickmode="array", tickvals=ranks, ticktext=[str(r) for r in ranks],
                         range=[longest + 0.5, 0.5], row=1, col=col, showticklabels=col == 1,
                         title=_("rank") if col == 1 else None)
        fig.update_xaxes(range=[0, 1.45], tickvals=[0, 0.5, 1], tickformat=".0%", row=1, col=col)
        if not shown:
            axis = "" if col == 1 else str(col)
            fig.add_annotation(text=esc(empty_note), x=0.7, y=(longest + 1) / 2, xref=f"x{axis}", yref=f"y{axis}",
                               showarrow=False, font=dict(color="#888"))
    fig.update_layout(**base_layout(title), height=max(300, 26 * longest + 130), bargap=0.25)
    fig.update_layout(margin=dict(l=60, r=30, t=105, b=40))
    return fig
