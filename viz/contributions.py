"""The contribution graph's figure: residual states through the layers and the routes that
wrote them (core.contributions). Pure Plotly; token text is escaped.

Layout: x = position, y = layer. A block L takes the state at height L (pre), adds attention
to reach L + 0.5 (mid), then its MLP to reach L + 1 (post, the next block's pre); height 0
is the embeddings and n_layer the output.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from i18n import N_, _

from .common import base_layout, esc, short, token_ticks

EDGE_COLOURS = {"attention": "#3b6fb6", "skip": "#9a9a9a", "mlp": "#d95f02", "mlp_skip": "#9a9a9a"}
EDGE_NAMES = {"attention": N_("attention"), "skip": N_("residual"), "mlp": "MLP",
              "mlp_skip": N_("residual")}  # shown: _(…)
MLP_DX = 0.28  # the MLP's square sits beside the state it reads
_WIDTH_BINS = np.array([0.0, 0.1, 0.2, 0.35, 0.6, 1.01])


def state_names(n_layer: int) -> list[str]:
    """Names of the integer heights: the embeddings, after each block but the last, the output."""
    return [_("embeddings")] + [_("after block {layer}").format(layer=L) for L in range(n_layer - 1)] + [_("output")]


def _path(e) -> tuple[list[float], list[float]]:
    """The polyline of an edge (x, y), bottom to top."""
    L = e.layer
    if e.kind == "attention":
        return [e.source, e.target], [L, L + 0.5]
    if e.kind == "skip":
        return [e.target, e.target], [L, L + 0.5]
    if e.kind == "mlp":
        return [e.target, e.target + MLP_DX, e.target], [L + 0.5, L + 0.75, L + 1]
    return [e.target, e.target], [L + 0.5, L + 1]


def _describe(e, tokens: Sequence[str]) -> str:
    tok = lambda p: f"#{p} “{esc(short(tokens[p], 16))}”"  # noqa: E731
    if e.kind == "attention":
        heads = ", ".join(_("head {head} {share:.0%}").format(head=h, share=w) for h, w in e.heads)
        what = _("attention in block {layer}: {source} → {target}<br>heads: {heads}").format(
            layer=e.layer, source=tok(e.source), target=tok(e.target), heads=heads)
    elif e.kind == "skip":
        what = _("residual around block {layer}'s attention at {token}").format(layer=e.layer, token=tok(e.target))
    elif e.kind == "mlp":
        what = _("block {layer}'s MLP at {token}").format(layer=e.layer, token=tok(e.target))
    else:
        what = _("residual around block {layer}'s MLP at {token}").format(layer=e.layer, token=tok(e.target))
    return _("{what}<br>{share:.1%} of the state it enters").format(what=what, share=e.weight)


def contribution_graph_figure(edges, tokens: Sequence[str], n_layer: int, pos: int, title: str) -> go.Figure:
    """Residual states as dots (x: position, y: layer), the edges that wrote them as lines,
    thicker for a larger share: blue = attention from that position, grey = the residual
    path, orange = the MLP (through a square beside the state)."""
    fig = go.Figure()
    for kind, colour in EDGE_COLOURS.items():
        for lo, hi in zip(_WIDTH_BINS[:-1], _WIDTH_BINS[1:]):
            xs: list = []
            ys: list = []
            for e in edges:
                if e.kind == kind and lo <= e.weight < hi:
                    x, y = _path(e)
                    xs += x + [None]
                    ys += y + [None]
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                         line=dict(color=colour, width=1 + 9 * (lo + hi) / 2)))
    states = {(pos, n_layer)}
    mids, squares = set(), set()
    for e in edges:
        x, y = _path(e)
        states.update((xi, yi) for xi, yi in ((x[0], y[0]), (x[-1], y[-1])) if float(yi).is_integer())
        mids.update((xi, yi) for xi, yi in ((x[0], y[0]), (x[-1], y[-1])) if not float(yi).is_integer())
        if e.kind == "mlp":
            squares.add((e.target + MLP_DX, e.layer + 0.75))
    names = state_names(n_layer)
    sx, sy = zip(*sorted(states))
    fig.add_trace(go.Scatter(x=sx, y=sy, mode="markers", marker=dict(size=9, color="#222222"), showlegend=False,
                             customdata=[f"#{x} “{esc(short(tokens[x], 20))}”, {names[int(y)]}"
                                         for x, y in zip(sx, sy)],
                             hovertemplate=_("residual stream") + "<br>%{customdata}<extra></extra>"))
    if mids:
        mx, my = zip(*sorted(mids))
        mid = _("#{pos} “{token}”, block {layer}")
        fig.add_trace(go.Scatter(x=mx, y=my, mode="markers", marker=dict(size=6, color="#777777"), showlegend=False,
                                 customdata=[mid.format(pos=x, token=esc(short(tokens[x], 20)), layer=int(y))
                                             for x, y in zip(mx, my)],
                                 hovertemplate=_("after attention, before the MLP")
                                 + "<br>%{customdata}<extra></extra>"))
    if squares:
        qx, qy = zip(*sorted(squares))
        fig.add_trace(go.Scatter(x=qx, y=qy, mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=8, symbol="square", color=EDGE_COLOURS["mlp"])))
    hx, hy, ht = [], [], []
    for e in edges:  # an invisible marker mid-edge carries each edge's hover
        x, y = _path(e)
        hx.append(x[1] if e.kind == "mlp" else (x[0] + x[-1]) / 2)
        hy.append(y[1] if e.kind == "mlp" else (y[0] + y[-1]) / 2)
        ht.append(_describe(e, tokens))
    fig.add_trace(go.Scatter(x=hx, y=hy, mode="markers", marker=dict(size=10, color="rgba(0,0,0,0)"), text=ht,
                             hovertemplate="%{text}<extra></extra>", showlegend=False))
    for kind in ("attention", "mlp", "skip"):  # legend entries
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color=EDGE_COLOURS[kind], width=4),
                                 name=_(EDGE_NAMES[kind])))
    fig.update_layout(**base_layout(title, height=int(220 + 40 * n_layer)),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    first = max(0, min(x for x, _ in states) - 1)
    ticks = token_ticks(list(tokens[first: pos + 1]), 40)
    fig.update_xaxes(tickmode="array", tickvals=[v + first for v in ticks["tickvals"]], ticktext=ticks["ticktext"],
                     range=[first - 0.6, pos + 0.9], tickangle=-45, title=_("position"), showgrid=False, zeroline=False)
    fig.update_yaxes(tickmode="array", tickvals=list(range(n_layer + 1)), ticktext=names, range=[-0.4, n_layer + 0.4],
                     showgrid=True, zeroline=False)
    return fig
