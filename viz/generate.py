"""Figures of the generation page: per-step probability and entropy, the generated tokens,
runs side by side, and how temperature flattens the next-token distribution."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from i18n import _

from .common import CELL_TEXT, LIGHT_SEQUENTIAL, base_layout, esc, format_prob

CHOSEN = "#3b6fb6"
ENTROPY = "#d95f02"
LOOP = "#c0392b"


def step_chart(tokens: Sequence[str], probs: np.ndarray, entropy_bits: np.ndarray, loop_mask: np.ndarray,
               title: str, sample_probs: np.ndarray | None = None, model: str = "GPT-2") -> go.Figure:
    """Top: the chosen token's probability at each step (bars; loop steps in red). Bottom: the
    entropy of the distribution it was picked from, in bits. x is the step, 1-based. `model`:
    whose probability the bars are (its name, escaped)."""
    n = len(tokens)
    steps = np.arange(1, n + 1)
    labels = [esc(t) for t in tokens]
    loop_mask = np.asarray(loop_mask, dtype=bool)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4])
    fig.add_trace(go.Bar(x=steps, y=np.asarray(probs, dtype=np.float64),
                         name=_("p(chosen) under {model}").format(model=model),
                         marker_color=[LOOP if m else CHOSEN for m in loop_mask], customdata=labels,
                         hovertemplate=_("step %{x}: %{customdata}<br>p = %{y:.4f}") + "<extra></extra>"), row=1, col=1)
    if sample_probs is not None:
        fig.add_trace(go.Scatter(x=steps, y=np.asarray(sample_probs, dtype=np.float64), mode="markers",
                                 name=_("p(chosen) when drawn (after temperature, top-k, top-p)"),
                                 marker=dict(symbol="line-ew-open", size=12, color="#222", line=dict(width=2)),
                                 customdata=labels,
                                 hovertemplate=_("step %{x}: %{customdata}<br>drawn with p = %{y:.4f}")
                                 + "<extra></extra>"),
                      row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=np.asarray(entropy_bits, dtype=np.float64), mode="lines+markers",
                             name=_("entropy (bits)"), line=dict(color=ENTROPY, width=2), marker=dict(size=4),
                             customdata=labels,
                             hovertemplate=_("step %{x} (%{customdata})<br>%{y:.2f} bits") + "<extra></extra>"),
                  row=2, col=1)
    if loop_mask.any():
        fig.add_trace(go.Bar(x=[None], y=[None], marker_color=LOOP, name=_("inside a repeated phrase")), row=1, col=1)
    fig.update_layout(**base_layout(title), height=460, bargap=0.15,
                      legend=dict(orientation="h", y=-0.18, x=0))
    fig.update_yaxes(title=_("probability"), rangemode="tozero", tickformat=".2~p", row=1, col=1)
    fig.update_yaxes(title=_("entropy (bits)"), rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title=_("generated token (step)"), row=2, col=1)
    return fig


STRIP_ROW_PX = 42  # one line of tokens
STRIP_MIN_PX = 80  # the plot area's least height: its colour bar holds its title, then 0%, 50% and 100% a line apart


def token_strip(tokens: Sequence[str], probs: np.ndarray, loop_mask: np.ndarray, title: str,
                per_row: int = 16) -> go.Figure:
    """The generated tokens in reading order, `per_row` to a line, coloured by the probability
    GPT-2 gave each one; tokens inside a repeated phrase are framed in red.

    The colour bar's ticks are 0%, 50% and 100%, below its title, on a plot area at least STRIP_MIN_PX
    high: a one-line strip squashed the bar, its labels on top of one another. The frames
    are shapes in the cells' own units, so they stay on their cells at any size (markers of a fixed
    size spilled over the neighbours once the Slides styles enlarged them)."""
    n = len(tokens)
    rows = max(1, int(np.ceil(n / per_row)))
    z = np.full((rows, per_row), np.nan)
    text = np.full((rows, per_row), "", dtype=object)
    hover = np.full((rows, per_row), "", dtype=object)
    frames = []
    cell, repeats = _("step {step}: {token}<br>p = {p}"), "<br>" + _("repeats an earlier phrase")
    for i, tok in enumerate(tokens):
        r, c = divmod(i, per_row)
        z[r, c] = probs[i]
        label = esc(tok)
        text[r, c] = label if len(tok) <= 9 else esc(tok[:8]) + "…"
        hover[r, c] = cell.format(step=i + 1, token=label, p=format_prob(probs[i])) + (repeats if loop_mask[i] else "")
        if loop_mask[i]:
            frames.append(dict(type="rect", xref="x", yref="y", x0=c - 0.46, x1=c + 0.46, y0=r - 0.44, y1=r + 0.44,
                               line=dict(color=LOOP, width=3), layer="above"))
    fig = go.Figure(go.Heatmap(z=z, text=text, texttemplate="%{text}", textfont=dict(color=CELL_TEXT),
                               customdata=hover, hovertemplate="%{customdata}<extra></extra>",
                               colorscale=LIGHT_SEQUENTIAL, zmin=0, zmax=1, xgap=2, ygap=2,
                               colorbar=dict(title="p", tickvals=[0, 0.5, 1],
                                             ticktext=["0%", "50%", "100%"])))
    if frames:  # the legend's entry; the frames themselves are shapes
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=_("inside a repeated phrase"),
                                 hoverinfo="skip",
                                 marker=dict(symbol="square-open", size=14, color=LOOP, line=dict(width=3))))
    layout = base_layout(title)
    layout["margin"]["b"] = 50 if frames else 20
    height = layout["margin"]["t"] + layout["margin"]["b"] + max(STRIP_ROW_PX * rows, STRIP_MIN_PX)
    fig.update_layout(**layout, height=height, shapes=frames, showlegend=bool(frames),
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0))
    fig.update_xaxes(visible=False, range=[-0.5, per_row - 0.5])
    fig.update_yaxes(visible=False, range=[rows - 0.5, -0.5])
    return fig


def runs_grid(runs: Sequence[Sequence[str]], run_labels: Sequence[str], diverge: Sequence[int | None],
              title: str) -> go.Figure:
    """One row per continuation (the first is the reference, e.g. greedy), one column per step.
    Cells equal to the reference are pale, differing cells dark; a red frame marks each run's
    first step that differs from the reference."""
    n_steps = max((len(r) for r in runs), default=0)
    z = np.full((len(runs), n_steps), np.nan)
    text = np.full((len(runs), n_steps), "", dtype=object)
    ref = runs[0] if runs else []
    for r, run in enumerate(runs):
        for c, tok in enumerate(run):
            z[r, c] = 0.0 if (r == 0 or (c < len(ref) and ref[c] == tok
                                                          and (diverge[r] is None or c < diverge[r]))) else 1.0
            text[r, c] = esc(tok if len(tok) <= 7 else tok[:6] + "…")
    ylabels = [esc(s) for s in run_labels]
    fig = go.Figure(go.Heatmap(z=z, x=np.arange(1, n_steps + 1), y=list(range(len(runs))),
                               text=text, texttemplate="%{text}", textfont=dict(color=CELL_TEXT),
                               colorscale=[[0, "#e8eef7"], [1, "#8fb3e0"]], zmin=0, zmax=1, showscale=False,
                               xgap=2, ygap=2, hovertemplate=_("step %{x}: %{text}") + "<extra></extra>"))
    dx = [d + 1 for d in diverge if d is not None]
    dy = [i for i, d in enumerate(diverge) if d is not None]
    if dx:
        fig.add_trace(go.Scatter(x=dx, y=dy, mode="markers", name=_("first step that differs from the first row"),
                                 marker=dict(symbol="square-open", size=30, color=LOOP, line=dict(width=3)),
                                 hovertemplate=_("diverges at step %{x}") + "<extra></extra>"))
    fig.update_layout(**base_layout(title), height=120 + 44 * len(runs), showlegend=bool(dx),
                      legend=dict(orientation="h", y=-0.15, x=0))
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(runs))), ticktext=ylabels, autorange="reversed")
    fig.update_xaxes(title=_("step"), range=[0.5, n_steps + 0.5])
    return fig


def temperature_figure(tokens: Sequence[str], temperatures: Sequence[float], probs: np.ndarray, title: str,
                       entropy_bits: Sequence[float] | None = None, model: str = "GPT-2") -> go.Figure:
    """Grouped bars: the probability of each of the model's likeliest next tokens (x, likeliest first)
    at each temperature (one colour per temperature). probs: [temperature, k]; the legend
    gives each temperature's entropy when `entropy_bits` is given. `model`: its name (escaped)."""
    k = len(tokens)
    x = np.arange(1, k + 1)
    labels = [esc(t) for t in tokens]
    colors = _ramp(len(temperatures))
    fig = go.Figure()
    bits = entropy_bits if entropy_bits is not None else [None] * len(temperatures)
    for t, row, color, h in zip(temperatures, np.asarray(probs, dtype=np.float64), colors, bits):
        name = _("T = {t:g} · {bits:.2f} bits").format(t=t, bits=h) if h is not None else f"T = {t:g}"
        fig.add_trace(go.Bar(x=x, y=row, name=name, marker_color=color, customdata=labels,
                             hovertemplate=f"T = {t:g}<br>%{{customdata}}: p = %{{y:.4f}}<extra></extra>"))
    fig.update_layout(**base_layout(title), barmode="group", height=420, legend=dict(title=_("temperature · entropy")))
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=labels,
                     title=_("{model}'s likeliest next tokens").format(model=model))
    fig.update_yaxes(title=_("probability"), tickformat=".0%", rangemode="tozero")
    return fig


def _ramp(n: int) -> list[str]:
    """n colours from cool (low temperature) to warm (high)."""
    from plotly.colors import sample_colorscale

    return sample_colorscale("Plasma", [0.05 + 0.8 * i / max(1, n - 1) for i in range(n)])
