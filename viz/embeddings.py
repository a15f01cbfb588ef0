"""Figures of the embeddings page: heatmaps of embedding tables, similarity matrices, word
vectors as lines, 2-D/3-D maps of words, the whole vocabulary (WebGL) and the residual stream.

Arrays in, go.Figure out. Token and word text is untrusted and goes through `esc`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from i18n import _

from .common import (
    DIVERGING,
    SEQUENTIAL,
    base_layout,
    base_layout_with_panels,
    clip_hover,
    esc,
    label_positions,
    short,
    symmetric_limit,
    token_ticks,
)

GROUP_COLOURS = qualitative.D3 + qualitative.Set2
# The whole-vocabulary map's one convention for a model that lists the tokens it learned: learned in
# blue, never learned (rare or absent in its training text) in light grey; the prompt red, a search hit orange.
LEARNED_COLOUR, UNLEARNED_COLOUR, EVERY_COLOUR = "#1f77b4", "#b8b8b8", "#7f7f7f"


def embedding_heatmap(vectors: np.ndarray, tokens: Sequence[str], title: str, height: int = 420) -> go.Figure:
    """vectors [pos, d_model] drawn as the essay does: one column per token, d_model rows."""
    z = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).T)  # [d_model, pos]
    lim = symmetric_limit(z)
    marks, clipped = clip_hover(z, -lim, lim)
    # %{x:d}: the position's number (a plain %{x} shows the token its tick names)
    fig = go.Figure(go.Heatmap(z=z, x=np.arange(z.shape[1]), colorscale=DIVERGING, zmid=0, zmin=-lim, zmax=lim,
                               colorbar=dict(title=_("value")), customdata=marks,
                               hovertemplate=_("position %{x:d}<br>dimension %{y}<br>%{z:.4f}") + clipped
                               + "<extra></extra>"))
    fig.update_layout(**base_layout(title, height=height))
    fig.update_xaxes(title=_("token (position)"), **token_ticks(tokens))
    fig.update_yaxes(title="d_model", autorange="reversed")
    return fig


def matrix_heatmap(z: np.ndarray, title: str, x_title: str, y_title: str, *, symmetric: bool = True,
                   zrange: tuple[float, float] | None = None, height: int = 560, x0: float = 0, dx: float = 1,
                   y0: float = 0, dy: float = 1, value: str | None = None) -> go.Figure:
    """A large numeric matrix z [rows, cols] (float32 on the wire), rows top to bottom; `value`
    names what the colour shows (the colour bar's title; default "value")."""
    value = _("value") if value is None else value
    z = np.ascontiguousarray(np.asarray(z, dtype=np.float32))
    if zrange is None:
        lim = symmetric_limit(z)
        zrange = (-lim, lim)
    marks, clipped = clip_hover(z, *zrange)
    fig = go.Figure(go.Heatmap(z=z, x0=x0, dx=dx, y0=y0, dy=dy, colorscale=DIVERGING if symmetric else SEQUENTIAL,
                               zmin=zrange[0], zmax=zrange[1], zmid=0 if symmetric else None, customdata=marks,
                               colorbar=dict(title=dict(text=esc(value).replace(" ", "<br>", 1), side="top")),
                               hovertemplate=f"{x_title} %{{x}}<br>{y_title} %{{y}}<br>"
                                             f"{esc(value)} %{{z:.4f}}{clipped}<extra></extra>"))
    fig.update_layout(**base_layout(title, height=height))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title, autorange="reversed")
    return fig


def components_figure(coords: np.ndarray, explained: np.ndarray, title: str) -> go.Figure:
    """coords [pos, k]: each principal component of the position embeddings against position."""
    fig = go.Figure()
    for j in range(coords.shape[1]):
        fig.add_trace(go.Scatter(x=np.arange(len(coords)), y=coords[:, j].astype(np.float32), mode="lines",
                                 name=_("PC{n} ({share:.1%} of variance)").format(n=j + 1, share=explained[j])))
    fig.update_layout(**base_layout(title, height=420), legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(title=_("position"))
    fig.update_yaxes(title=_("coordinate along the component"))
    return fig


def vector_lines(vectors: np.ndarray, labels: Sequence[str], title: str) -> go.Figure:
    """vectors [word, d_model] as line plots one above the other (the essay's raw word vectors)."""
    n = len(labels)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=min(0.08, 0.3 / max(n, 1)),
                        subplot_titles=[esc(short(w, 60)) for w in labels])
    lim = float(np.abs(vectors).max()) if vectors.size else 1.0
    for i in range(n):
        fig.add_trace(go.Scatter(x=np.arange(vectors.shape[1]), y=vectors[i].astype(np.float32), mode="lines",
                                 line=dict(width=1, color=GROUP_COLOURS[i % len(GROUP_COLOURS)]), showlegend=False,
                                 name=esc(short(labels[i])),
                                 hovertemplate=_("dimension %{x}<br>%{y:.4f}") + "<extra></extra>"),
                      row=i + 1, col=1)
        fig.update_yaxes(range=[-lim * 1.05, lim * 1.05], row=i + 1, col=1)
    fig.update_layout(**base_layout_with_panels(title, height=110 + 130 * n))
    fig.update_xaxes(title="d_model", row=n, col=1)
    return fig


def pair_matrix(m: np.ndarray, labels: Sequence[str], title: str, *, similarity: bool) -> go.Figure:
    """A small [word, word] matrix with the values written in the cells."""
    ticks_x, ticks_y = token_ticks(labels), token_ticks(labels)
    n = len(labels)
    m = np.asarray(m, dtype=np.float32)
    kw = dict(colorscale=DIVERGING, zmin=-1, zmax=1, zmid=0) if similarity else dict(colorscale=SEQUENTIAL)
    value = _("cosine") if similarity else _("distance")
    fig = go.Figure(go.Heatmap(z=m, x=np.arange(n), y=np.arange(n), texttemplate="%{z:.2f}" if n <= 16 else None,
                               colorbar=dict(title=dict(text=value, side="top")),
                               hovertemplate=f"{value} %{{z:.4f}}<extra></extra>", **kw))
    size = max(360, min(720, 120 + 40 * n))
    fig.update_layout(**base_layout(title, height=size))
    fig.update_xaxes(**ticks_x)
    fig.update_yaxes(autorange="reversed", **ticks_y)
    return fig


def points_map(coords: np.ndarray, labels: Sequence[str], groups: Sequence[str], title: str) -> go.Figure:
    """coords [n, 2 or 3]: one labelled point per word, one colour (trace) per group."""
    three_d = coords.shape[1] == 3
    fig = go.Figure()
    # Labels placed around their points so that they overlap as little as they can (2-D maps).
    spots = label_positions(coords[:, 0], coords[:, 1], [short(x, 30) for x in labels],
                            equal_scale=True) if not three_d else None
    for g_index, group in enumerate(dict.fromkeys(groups)):
        rows = [i for i, g in enumerate(groups) if g == group]
        c = coords[rows].astype(np.float32)
        names = [esc(short(labels[i], 30)) for i in rows]
        text = [n if not spots or spots[i] else "" for n, i in zip(names, rows)]  # no room: hover only
        common = dict(mode="markers+text", text=text, name=esc(short(group, 30)), customdata=names,
                      textposition=[spots[i] or "top center" for i in rows] if spots else "top center",  # i18n: skip
                      marker=dict(color=GROUP_COLOURS[g_index % len(GROUP_COLOURS)], size=6 if three_d else 9),
                      hovertemplate="%{customdata}<extra>%{fullData.name}</extra>")
        if three_d:
            fig.add_trace(go.Scatter3d(x=c[:, 0], y=c[:, 1], z=c[:, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=c[:, 0], y=c[:, 1], **common))
    fig.update_layout(**base_layout(title, height=640))
    if not three_d:
        fig.update_xaxes(showticklabels=False, zeroline=False)
        fig.update_yaxes(showticklabels=False, zeroline=False, scaleanchor="x")
    return fig


def cloud_map(coords: np.ndarray, hover: Sequence[str], title: str, *, highlight: Sequence[tuple[int, str]] = (),
              focus: int | None = None, colour_by_index: bool = False, name: str | None = None,
              learned: np.ndarray | None = None) -> go.Figure:
    """A WebGL scatter of a whole table coords [n, 2] (50,257 tokens or 1,024 positions).

    `hover` holds short escaped strings, one per point; `highlight` (row, label) pairs are
    drawn on top with their labels (the prompt's tokens); `focus` zooms to that row. `name`
    says what a point is (default "token"). `learned` [n] bool splits the points in two traces,
    the tokens a model never learned (grey, below) and those it learned (blue, on top); the
    legend and each hover say which.
    """
    name = _("token") if name is None else name
    xy = np.asarray(coords, dtype=np.float32)
    fig = go.Figure()
    if learned is not None:
        learned = np.asarray(learned, dtype=bool)
        groups = [(~learned, UNLEARNED_COLOUR, 0.45, _("never learned ({n:,})"), _("never learned in training")),
                  (learned, LEARNED_COLOUR, 0.6, _("learned in training ({n:,})"), _("learned in training"))]
        for rows, colour, opacity, legend, said in groups:
            rows = np.flatnonzero(rows)
            fig.add_trace(go.Scattergl(x=xy[rows, 0], y=xy[rows, 1], mode="markers", text=[hover[r] for r in rows],
                                       marker=dict(size=3, opacity=opacity, color=colour),
                                       hovertemplate="%{text}<extra>" + said + "</extra>",
                                       name=legend.format(n=len(rows))))
    else:
        marker = dict(size=3, opacity=0.55, color=EVERY_COLOUR)
        if colour_by_index:
            marker.update(color=np.arange(len(xy), dtype=np.int32), colorscale=SEQUENTIAL, opacity=0.9, size=5,
                          colorbar=dict(title=name))
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, text=list(hover),
                                   hovertemplate="%{text}<extra></extra>", name=_("every {name}").format(name=name)))
    if len(highlight):
        rows = np.array([r for r, _ in highlight], dtype=np.int64)
        fig.add_trace(go.Scattergl(x=xy[rows, 0], y=xy[rows, 1], mode="markers+text", name=_("the prompt's tokens"),
                                   text=[esc(short(lab, 24)) for _, lab in highlight],
                                   textposition="top center",  # i18n: skip
                                   marker=dict(size=9, color="#d62728", line=dict(width=1, color="white")),
                                   hovertemplate="%{text}<extra>" + _("prompt") + "</extra>"))
    if focus is not None:
        fx, fy = float(xy[focus, 0]), float(xy[focus, 1])
        fig.add_trace(go.Scattergl(x=[fx], y=[fy], mode="markers+text", name=_("search result"),
                                   text=[hover[focus]], textposition="bottom center",  # i18n: skip
                                   hovertemplate="%{text}<extra>" + _("found") + "</extra>",
                                   marker=dict(size=16, symbol="star", color="#ff7f0e",
                                               line=dict(width=1, color="black"))))
        span = 0.04 * max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])), 1e-6)
        fig.update_xaxes(range=[fx - span, fx + span])
        fig.update_yaxes(range=[fy - span, fy + span])
    fig.update_layout(**base_layout(title, height=720), legend=dict(orientation="h", y=-0.05, itemsizing="constant"))
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False)
    return fig


def context_map(coords: np.ndarray, tokens: Sequence[str], repeated: dict[int, list[int]], title: str,
                positions: Sequence[int] | None = None) -> go.Figure:
    """coords [n, 2]: the prompt's residual vectors at one layer; repeated tokens coloured alike."""
    positions = list(range(len(coords))) if positions is None else list(positions)
    row_of = {p: r for r, p in enumerate(positions)}
    c = coords.astype(np.float32)
    spots = label_positions(c[:, 0], c[:, 1], [short(tokens[p], 20) for p in positions])
    names = [esc(short(tokens[p], 20)) for p in positions]
    fig = go.Figure(go.Scatter(x=c[:, 0], y=c[:, 1], mode="markers+text", name=_("every token"),
                               text=[n if s else "" for n, s in zip(names, spots)],  # no room: hover only
                               textposition=[s or "top center" for s in spots],  # i18n: skip
                               marker=dict(size=7, color="#b0b0b0"),
                               customdata=np.array([[n, p] for n, p in zip(names, positions)], dtype=object),
                               hovertemplate=_("%{customdata[0]} (position %{customdata[1]})") + "<extra></extra>"))
    for k, (tid, where) in enumerate(repeated.items()):
        rows = [row_of[p] for p in where if p in row_of]
        if not rows:
            continue
        fig.add_trace(go.Scatter(x=c[rows, 0], y=c[rows, 1], mode="markers+lines", line=dict(dash="dot", width=1),
                                 name=esc(short(tokens[where[0]], 20)) + f" ×{len(where)}",
                                 marker=dict(size=12, color=GROUP_COLOURS[k % len(GROUP_COLOURS)]),
                                 customdata=np.array([positions[r] for r in rows]),
                                 hovertemplate=_("position %{customdata}") + "<extra>%{fullData.name}</extra>"))
    fig.update_layout(**base_layout(title, height=600))
    fig.update_xaxes(title="PC1")
    fig.update_yaxes(title="PC2")
    return fig


def drift_figure(curves: dict[str, np.ndarray], title: str) -> go.Figure:
    """{label: [layer + 1] cosine between a token's two occurrences} against depth."""
    fig = go.Figure()
    for k, (label, y) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=np.arange(len(y)), y=np.asarray(y, dtype=np.float32), mode="lines+markers",
                                 name=esc(short(label, 30)), line=dict(color=GROUP_COLOURS[k % len(GROUP_COLOURS)])))
    fig.update_layout(**base_layout(title, height=380))
    fig.update_xaxes(title=_("layer (0 = embedding; last = final residual before ln_f)"), dtick=1)
    fig.update_yaxes(title=_("cosine similarity"), range=[-1.05, 1.05])
    return fig
