"""Figures of the Steering page: how the steer shifts each next-token candidate, and how a word's
probability and the text's fluency move with the coefficient. (The logit lenses are
viz.prediction.lens_grid_figure's.)

Signed values follow the app's one diverging scale (viz.common.DIVERGING, RdBu_r): red is
positive (the steer raises it), blue negative. Pure Plotly; token text is escaped.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from i18n import _

from .common import DIVERGING, base_layout, esc, format_prob

RAISED, LOWERED = sample_colorscale(DIVERGING, [0.9, 0.1])  # the diverging scale's red (positive) and blue ends
WORD = "#3b6fb6"
FLUENCY = "#d95f02"


def shift_figure(tokens: Sequence[str], plain: np.ndarray, steered: np.ndarray, title: str) -> go.Figure:
    """Horizontal bars, one per candidate (first on top): its probability with the steer minus
    without, in percentage points. Red: the steer raises it; blue: lowers it."""
    plain, steered = np.asarray(plain, dtype=np.float64), np.asarray(steered, dtype=np.float64)
    shift = steered - plain
    y = np.arange(len(tokens))
    labels = [esc(t) for t in tokens]
    hover = [_("{token}<br>without the steer: {plain}<br>with it: {steered}").format(
        token=label, plain=format_prob(p), steered=format_prob(s)) for label, p, s in zip(labels, plain, steered)]
    fig = go.Figure(go.Bar(x=shift, y=y, orientation="h", marker_color=[RAISED if d > 0 else LOWERED for d in shift],
                           customdata=hover, hovertemplate="%{customdata}<br>%{x:+.2%}<extra></extra>"))
    lim = max(float(np.abs(shift).max(initial=0)), 1e-4) * 1.1
    fig.update_layout(**base_layout(title), height=max(300, 30 * len(tokens) + 140), showlegend=False)
    fig.update_layout(margin=dict(t=90))  # room for a title on two lines
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=y, ticktext=labels, title=_("next token"))
    fig.update_xaxes(title=_("shift in probability (red: raised by the steer, blue: lowered)"), tickformat="+.1~%",
                     range=[-lim, lim], zeroline=True, zerolinecolor="#888")
    return fig


def sweep_figure(coefficients: Sequence[float], word_probs: Sequence[float], perplexities: Sequence[float],
                 word: str, chosen: float, title: str) -> go.Figure:
    """Two panels over the coefficient (x): the probability of `word` at the next token (top) and
    the perplexity of the steered continuation under the unsteered model (bottom), both on log
    axes. A dashed line marks the coefficient chosen on the page; 0 is the plain run."""
    x = np.asarray(coefficients, dtype=np.float64)
    p = np.asarray(word_probs, dtype=np.float64)
    ppl = np.asarray(perplexities, dtype=np.float64)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1)
    fig.add_trace(go.Scatter(x=x, y=p, mode="lines+markers", name=_("p({word}) at the next token").format(
        word=esc(word)), line=dict(color=WORD, width=2), customdata=[format_prob(v) for v in p],
        hovertemplate=_("coefficient %{x:+g}<br>p = %{customdata}") + "<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=ppl, mode="lines+markers",
                             name=_("perplexity of the continuation (unsteered model)"),
                             line=dict(color=FLUENCY, width=2),
                             hovertemplate=_("coefficient %{x:+g}<br>perplexity %{y:,.1f}") + "<extra></extra>"),
                  row=2, col=1)
    for row in (1, 2):
        fig.add_vline(x=float(chosen), line=dict(color="#555", dash="dash", width=1), row=row, col=1)
    fig.update_layout(**base_layout(title), height=520, legend=dict(orientation="h", y=-0.16, x=0))
    fig.update_yaxes(type="log", title=_("probability"), **_log_ticks(p, format_prob), row=1, col=1)
    fig.update_yaxes(type="log", title=_("perplexity"), **_log_ticks(ppl, "{:,.0f}".format), row=2, col=1)
    fig.update_xaxes(title=_("coefficient (dashed: the one chosen above)"), zeroline=True, row=2, col=1)
    return fig


def _log_ticks(values: np.ndarray, write) -> dict:
    """Ticks of a log axis at 1, 2 and 5 × powers of ten (fewer or more as the data's span asks),
    each written by `write` (probabilities as the app writes them)."""
    finite = values[np.isfinite(values) & (values > 0)]
    if not finite.size:
        return {}
    lo, hi = finite.min() / 1.2, finite.max() * 1.2
    powers = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
        ticks = [m * 10.0 ** k for k in powers for m in mantissas if lo <= m * 10.0 ** k <= hi]
        if len(ticks) >= 3:
            break
    return dict(tickmode="array", tickvals=ticks, ticktext=[write(v) for v in ticks])
