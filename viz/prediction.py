"""Figures of the "Inside the prediction" page: the logit lens, direct logit attribution, MLP
neurons and what a head writes. Pure Plotly; token text is escaped.

Dimension names: layer head pos vocab. Lens rows: 0 = the embeddings, n_layer = the output.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import DIVERGING, SEQUENTIAL, base_layout, esc, format_prob, short, token_ticks

PUSH_SCALE = "RdBu"  # blue = pushes the logit up, red = down (the bars use blue and orange alike)


def lens_row_names(n_rows: int) -> list[str]:
    """Names of the residual stream's states, bottom up: the embeddings, after each block but
    the last, then the output (after the last block, what ln_f and the unembedding read)."""
    return ["embeddings"] + [f"after block {L}" for L in range(n_rows - 2)] + ["output"]


def lens_grid_figure(top_tokens: Sequence[Sequence[Sequence[str]]], top_probs: np.ndarray, colour: np.ndarray,
                     positions: np.ndarray, tokens: Sequence[str], title: str, colour_label: str) -> go.Figure:
    """Layers (rows, the output on top) × positions: each cell names the likeliest next token
    there and is coloured by `colour` [row, pos] (a probability); hover lists the top 5."""
    rows, n = colour.shape
    names = lens_row_names(rows)
    text = np.array([[esc(short(top_tokens[r][c][0], 9)) for c in range(n)] for r in range(rows)], dtype=object)
    hover = np.array([[f"{names[r]} · after “{esc(short(tokens[positions[c]], 20))}” (position {positions[c]})<br>"
                       + "<br>".join(f"{esc(short(tok, 20))}  {format_prob(p)}"
                                     for tok, p in zip(top_tokens[r][c], top_probs[r, c]))
                       for c in range(n)] for r in range(rows)], dtype=object)
    fig = go.Figure(go.Heatmap(z=colour.astype(np.float32), x=np.arange(n), y=np.arange(rows), text=text,
                               texttemplate="%{text}", textfont=dict(size=10), customdata=hover, zmin=0, zmax=1,
                               hovertemplate="%{customdata}<extra></extra>", colorscale=SEQUENTIAL, xgap=1, ygap=1,
                               colorbar=dict(title=dict(text=esc(colour_label).replace(" ", "<br>", 1), side="top"))))
    fig.update_layout(**base_layout(title, height=int(150 + 26 * rows)))
    fig.update_yaxes(tickmode="array", tickvals=list(range(rows)), ticktext=names, showgrid=False)
    fig.update_xaxes(tickmode="array", tickvals=list(range(n)), ticktext=[esc(short(tokens[p], 10)) for p in positions],
                     tickangle=-45, title="prompt token (the prediction is of the token after it)", showgrid=False)
    return fig


def lens_lines_figure(probs: np.ndarray, labels: Sequence[str], title: str) -> go.Figure:
    """probs [row, token]: each token's probability read at every layer, as lines."""
    rows = probs.shape[0]
    fig = go.Figure()
    for j, label in enumerate(labels):
        fig.add_trace(go.Scatter(x=np.arange(rows), y=probs[:, j].astype(np.float64), mode="lines+markers",
                                 name=esc(short(label, 24)), customdata=[format_prob(p) for p in probs[:, j]],
                                 hovertemplate=f"{esc(short(label, 24))}: %{{customdata}}<extra></extra>"))
    fig.update_layout(**base_layout(title, height=420), legend=dict(title="token"))
    fig.update_xaxes(tickmode="array", tickvals=list(range(rows)), ticktext=lens_row_names(rows), tickangle=-45)
    fig.update_yaxes(title="probability", tickformat=".0%", rangemode="tozero")
    return fig


def attribution_figure(heads: np.ndarray, mlp: np.ndarray, attn_bias: np.ndarray, embed: float, pos_embed: float,
                       ln_bias: float, title: str, unit: str = "logit") -> go.Figure:
    """Each head's part of a logit as a [layer, head] grid, and every other part as bars: the
    embeddings, each MLP, each attention layer's bias, ln_f's bias. Blue pushes the logit up."""
    n_layer, n_head = heads.shape
    lim = max(float(np.abs(heads).max(initial=0)), 1e-6)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.2,
                        subplot_titles=["each attention head", "everything else"])
    fig.add_trace(go.Heatmap(z=heads.astype(np.float32), x=np.arange(n_head), y=np.arange(n_layer),
                             colorscale=PUSH_SCALE, zmin=-lim, zmax=lim, zmid=0,
                             colorbar=dict(title=dict(text=f"{unit} (blue: pushes up)", side="top"), orientation="h",
                                           x=0.0, xanchor="left", y=-0.08, yanchor="top", len=0.55, thickness=12),
                             hovertemplate=f"layer %{{y}}, head %{{x}}<br>%{{z:+.3f}} {unit}<extra></extra>"),
                  row=1, col=1)
    names = ["token embedding", "position embedding"] + [f"MLP {L}" for L in range(n_layer)] + \
        [f"attn bias {L}" for L in range(n_layer)] + ["ln_f bias"]
    values = np.array([embed, pos_embed, *mlp, *attn_bias, ln_bias], dtype=np.float64)
    fig.add_trace(go.Bar(x=values, y=np.arange(len(names)), orientation="h",
                         marker_color=np.where(values >= 0, "#3b6fb6", "#d95f02"), customdata=names,
                         hovertemplate=f"%{{customdata}}: %{{x:+.3f}} {unit}<extra></extra>", showlegend=False),
                  row=1, col=2)
    fig.update_layout(**base_layout(title, height=int(max(420, 150 + 30 * n_layer, 24 * len(names) + 120))),
                      clickmode="event+select")
    fig.update_yaxes(autorange="reversed", dtick=1, title="layer", row=1, col=1)
    fig.update_xaxes(title="head", dtick=1, row=1, col=1)
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(range(len(names))), ticktext=names,
                     row=1, col=2)
    fig.update_xaxes(title=unit, zeroline=True, row=1, col=2)
    return fig


def pushes_figure(up: Sequence[str], up_values: np.ndarray, down: Sequence[str], down_values: np.ndarray,
                  title: str, unit: str = "logit") -> go.Figure:
    """Two bar lists: the tokens pushed up most (blue) and down most (orange)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["pushed up", "pushed down"], horizontal_spacing=0.18)
    for col, (toks, vals, colour) in enumerate(((up, up_values, "#3b6fb6"), (down, down_values, "#d95f02")), start=1):
        y = np.arange(len(toks))
        fig.add_trace(go.Bar(x=np.asarray(vals, dtype=np.float64), y=y, orientation="h", marker_color=colour,
                             customdata=[esc(x) for x in toks], showlegend=False,
                             hovertemplate=f"%{{customdata}}: %{{x:+.3f}} {unit}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(y),
                         ticktext=[esc(short(x, 16)) for x in toks], row=1, col=col)
    fig.update_layout(**base_layout(title, height=max(320, 26 * len(up) + 140)))
    return fig


def neuron_strip_figure(acts: np.ndarray, neurons: Sequence[int], layer: int, tokens: Sequence[str],
                        title: str) -> go.Figure:
    """acts [neuron, pos]: each neuron's activation (after GELU) across the prompt."""
    n = acts.shape[1]
    lim = max(float(np.abs(acts).max(initial=0)), 1e-6)
    fig = go.Figure(go.Heatmap(z=acts.astype(np.float32), x=np.arange(n), y=np.arange(len(neurons)), colorscale=DIVERGING,
                               zmin=-lim, zmax=lim, zmid=0, colorbar=dict(title=dict(text="activation", side="top")),
                               customdata=np.broadcast_to(np.array([esc(x) for x in tokens], dtype=object)[None, :],
                                                          acts.shape),
                               hovertemplate="neuron %{y}<br>#%{x} %{customdata}<br>%{z:.3f}<extra></extra>"))
    fig.update_layout(**base_layout(title, height=int(150 + 22 * len(neurons))))
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(neurons))),
                     ticktext=[f"L{layer} N{i}" for i in neurons], autorange="reversed")
    fig.update_xaxes(title="prompt token", **token_ticks(tokens, 48))
    return fig


_EDGE_COLOURS = {"attention": "#3b6fb6", "skip": "#9a9a9a", "mlp": "#d95f02"}


def contribution_graph_figure(edges, tokens: Sequence[str], n_layer: int, pos: int, title: str) -> go.Figure:
    """Residual states as dots (x: position, y: layer, 0 = the embeddings), the edges that wrote
    them as lines, thicker for a larger share: blue = attention from that position, grey =
    the residual (skip) path, orange = the layer's MLP (drawn from a square beside the state)."""
    fig = go.Figure()
    bins = np.array([0.0, 0.1, 0.2, 0.35, 0.6, 1.01])
    mids_x, mids_y, mids_text = [], [], []
    for kind, colour in _EDGE_COLOURS.items():
        for lo, hi in zip(bins[:-1], bins[1:]):
            xs, ys = [], []
            for e in edges:
                if e.kind != kind or not lo <= e.weight < hi:
                    continue
                x0, y0 = (e.target + 0.3, e.layer + 0.5) if kind == "mlp" else (e.source, e.layer)
                xs += [x0, e.target, None]
                ys += [y0, e.layer + 1, None]
                mids_x.append((x0 + e.target) / 2)
                mids_y.append((y0 + e.layer + 1) / 2)
                src = f"MLP {e.layer}" if kind == "mlp" else f"#{e.source} {esc(short(tokens[e.source], 16))}"
                mids_text.append(f"{kind}: {src} → #{e.target} {esc(short(tokens[e.target], 16))} after block {e.layer}"
                                 f"<br>{e.weight:.0%} of that state")
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                         line=dict(color=colour, width=1 + 9 * (lo + hi) / 2)))
    states = {(e.layer, e.source) for e in edges if e.kind != "mlp"} | {(e.layer + 1, e.target) for e in edges}
    states.add((n_layer, pos))
    sx, sy = zip(*[(j, l) for l, j in sorted(states)])
    fig.add_trace(go.Scatter(x=sx, y=sy, mode="markers", marker=dict(size=9, color="#222222"), showlegend=False,
                             customdata=[f"#{j} {esc(short(tokens[j], 20))}, layer {l}" for j, l in zip(sx, sy)],
                             hovertemplate="residual state<br>%{customdata}<extra></extra>"))
    mlp = [e for e in edges if e.kind == "mlp"]
    if mlp:
        fig.add_trace(go.Scatter(x=[e.target + 0.3 for e in mlp], y=[e.layer + 0.5 for e in mlp], mode="markers",
                                 marker=dict(size=8, symbol="square", color=_EDGE_COLOURS["mlp"]), showlegend=False,
                                 hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=mids_x, y=mids_y, mode="markers", marker=dict(size=10, color="rgba(0,0,0,0)"),
                             text=mids_text, hovertemplate="%{text}<extra></extra>", showlegend=False))
    for kind, colour in _EDGE_COLOURS.items():  # legend entries
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color=colour, width=4), name=kind))
    fig.update_layout(**base_layout(title, height=int(200 + 34 * n_layer)), legend=dict(orientation="h", y=1.02, x=1,
                                                                                       xanchor="right", yanchor="bottom"))
    first = max(0, min(j for _, j in states) - 1)
    ticks = token_ticks(list(tokens[first:pos + 1]), 40)
    fig.update_xaxes(tickmode="array", tickvals=[v + first for v in ticks["tickvals"]], ticktext=ticks["ticktext"],
                     range=[first - 0.6, pos + 0.9], tickangle=-45, title="position", showgrid=False, zeroline=False)
    fig.update_yaxes(tickmode="array", tickvals=list(range(n_layer + 1)), ticktext=lens_row_names(n_layer + 1),
                     showgrid=True, zeroline=False)
    return fig
