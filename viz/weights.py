"""Figures of a GPT-2's parameters: matrix heatmaps, vectors, distributions across blocks, spectra.

Pure builders: numpy arrays and pandas tables in, go.Figure out. Arrays go to Plotly as
float32, which plotly.py sends as compact binary (base64) rather than decimal text.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from i18n import _

from .common import (  # noqa: F401 (CLIP_PERCENTILE re-exported)
    CLIP_PERCENTILE,
    DIVERGING,
    SEQUENTIAL,
    base_layout,
    clip_hover,
    esc,
    symmetric_limit,
)


def matrix_figure(
    z: np.ndarray,
    row_dim: str,
    col_dim: str,
    title: str,
    *,
    offset: float = 0.0,
    step: float = 1.0,
    colorbar: str | None = None,
    head_size: int | None = None,
    head_axis: int | None = None,
    height: int = 620,
) -> go.Figure:
    """Heatmap of a (rows, cols) matrix, row 0 at the top, diverging colours centred on 0.

    Cell (i, j) is drawn at original indices (offset + i*step, offset + j*step), so a
    smoothed or downsampled view keeps the matrix's own axis numbers. With head_size and
    head_axis (0 rows, 1 columns) thin lines mark where one head's slice ends. `colorbar`
    names the values (default "weight"); row_dim and col_dim may be core.weights.Kind's
    English axis names (marked there), translated here.
    """
    colorbar = _("weight") if colorbar is None else colorbar
    row_dim, col_dim = _(row_dim), _(col_dim)
    z = np.asarray(z, dtype=np.float32)
    lim = symmetric_limit(z)
    marks, clipped = clip_hover(z, -lim, lim)
    fig = go.Figure(go.Heatmap(
        z=z, x0=offset, dx=step, y0=offset, dy=step,
        colorscale=DIVERGING, zmid=0.0, zmin=-lim, zmax=lim, customdata=marks,
        colorbar=dict(title=dict(text=f"{esc(colorbar)}<br>(±{lim:.3g})", side="top"), thickness=14),
        hovertemplate=_("{row} %{{y}}<br>{col} %{{x}}<br>value %{{z:.4g}}").format(row=esc(row_dim), col=esc(col_dim))
        + clipped + "<extra></extra>",
    ))
    if head_size and head_axis in (0, 1):
        n = z.shape[head_axis] * step
        for b in np.arange(head_size, n, head_size) - 0.5:
            line = dict(type="line", line=dict(color="rgba(0,0,0,0.35)", width=1))
            if head_axis == 1:
                line.update(x0=b, x1=b, y0=0, y1=1, yref="paper")
            else:
                line.update(y0=b, y1=b, x0=0, x1=1, xref="paper")
            fig.add_shape(**line)
    fig.update_layout(**base_layout(title, height=height))
    fig.update_xaxes(title_text=esc(col_dim), showgrid=False, zeroline=False)
    fig.update_yaxes(title_text=esc(row_dim), autorange="reversed", showgrid=False, zeroline=False)
    return fig


def vector_figure(v: np.ndarray, dim: str, title: str, *, head_size: int | None = None, height: int = 380) -> go.Figure:
    """Bar chart of a bias or LayerNorm vector, bars coloured on the diverging scale."""
    dim = _(dim)  # core.weights.Kind's English axis name, or already translated
    v = np.asarray(v, dtype=np.float32)
    lim = symmetric_limit(v, 100.0)
    fig = go.Figure(go.Bar(
        x=np.arange(v.size, dtype=np.int32), y=v,
        marker=dict(color=v, colorscale=DIVERGING, cmid=0.0, cmin=-lim, cmax=lim, line=dict(width=0)),
        hovertemplate=_("{dim} %{{x}}<br>value %{{y:.4g}}").format(dim=esc(dim)) + "<extra></extra>",
    ))
    if head_size:
        for b in np.arange(head_size, v.size, head_size) - 0.5:
            fig.add_vline(x=b, line=dict(color="rgba(0,0,0,0.35)", width=1))
    fig.update_layout(**base_layout(title, height=height, bargap=0))
    fig.update_xaxes(title_text=esc(dim))
    fig.update_yaxes(title_text=_("value"))
    return fig


def distribution_figure(
    edges: np.ndarray,
    table: pd.DataFrame,
    title: str,
    *,
    highlight=None,
    log_y: bool = False,
    normal: np.ndarray | None = None,
    height: int = 520,
) -> go.Figure:
    """Every block's histogram (density, shared bins) as one line each, coloured by depth.

    table: rows with `block` and `density` (bins,), as core.weights.block_distributions
    returns. The highlighted block is drawn thick; `normal` (bins,) is the normal density
    fitted to it, dashed. Linear y shows the bulk (x limited to mean ± 6 std); log y
    shows the full range, where heavy tails stand out against the parabola of a normal.
    """
    centres = ((edges[:-1] + edges[1:]) / 2).astype(np.float32)
    n = len(table)
    colours = sample_colorscale(SEQUENTIAL, [i / max(1, n - 1) * 0.9 for i in range(n)])
    fig = go.Figure()
    values = _("value %{x:.4g}<br>density %{y:.4g}")
    for colour, row in zip(colours, table.itertuples()):
        is_hi = row.block == highlight
        y = np.asarray(row.density, dtype=np.float32)
        if log_y:
            y = np.where(y > 0, y, np.nan).astype(np.float32)
        name = _block_name(row.block)
        fig.add_trace(go.Scatter(
            x=centres, y=y, mode="lines", name=name, line=dict(color=colour, width=3.5 if is_hi else 1.2),
            opacity=1.0 if is_hi or highlight is None else 0.65, connectgaps=False,
            hovertemplate=f"{name}<br>{values}<extra></extra>",
        ))
    if normal is not None:
        label = (_("normal fit") if highlight in (None, "all")
                 else _("normal fit (block {block})").format(block=highlight))
        y = np.asarray(normal, dtype=np.float32)
        if log_y:
            positive = np.concatenate([np.asarray(d)[np.asarray(d) > 0] for d in table["density"]] or [[1.0]])
            y = np.where(y >= positive.min() / 10, y, np.nan).astype(np.float32)
        fig.add_trace(go.Scatter(x=centres, y=y, mode="lines", name=label,
                                 line=dict(color="black", dash="dash", width=2),
                                 hovertemplate=_("normal fit") + f"<br>{values}<extra></extra>"))
    fig.update_layout(**base_layout(title, height=height, legend=dict(title="")))
    fig.update_xaxes(title_text=_("parameter value"))
    fig.update_yaxes(title_text=_("density (log scale)") if log_y else _("density"), type="log" if log_y else "linear")
    if not log_y and n:
        spread = 6 * float(table["std"].max())
        mid = float(table["mean"].mean())
        if spread > 0:
            fig.update_xaxes(range=[max(float(edges[0]), mid - spread), min(float(edges[-1]), mid + spread)])
    return fig


def _block_name(block) -> str:
    """A row of block_distributions as a person reads it: every block together, or one block."""
    return _("all") if block == "all" else _("block {block}").format(block=block)


def kurtosis_figure(table: pd.DataFrame, title: str, height: int = 300) -> go.Figure:
    """Excess kurtosis per block; 0 is a normal distribution, above 0 means heavier tails."""
    labels = [_block_name(b) for b in table["block"]]
    k = table["kurtosis"].to_numpy(dtype=np.float32)
    fig = go.Figure(go.Bar(x=labels, y=k, marker_color="#4c72b0",
                           customdata=table[["mean", "std"]].to_numpy(dtype=np.float32),
                           hovertemplate=_("%{x}<br>excess kurtosis %{y:.3g}<br>mean %{customdata[0]:.3g}"
                                           "<br>std %{customdata[1]:.3g}") + "<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="black", width=1, dash="dot"))
    fig.update_layout(**base_layout(title, height=height))
    fig.update_yaxes(title_text=_("excess kurtosis"))
    return fig


def spectrum_figure(singular_values: np.ndarray, title: str, *, effective_rank: float, rank_1pct: int,
                    height: int = 460) -> go.Figure:
    """Singular values σ_1 ≥ σ_2 ≥ ... on a log scale, with the effective rank and the 1%·σ_max line."""
    s = np.asarray(singular_values, dtype=np.float32)
    idx = np.arange(1, s.size + 1, dtype=np.int32)
    y = np.where(s > 0, s, np.nan).astype(np.float32)
    fig = go.Figure(go.Scatter(x=idx, y=y, mode="lines+markers", marker=dict(size=3), line=dict(color="#4c72b0"),
                               name="σ", hovertemplate="σ_%{x} = %{y:.4g}<extra></extra>"))
    if s.size and s[0] > 0:
        fig.add_hline(y=0.01 * float(s[0]), line=dict(color="gray", dash="dot", width=1),
                      annotation_text=_("{pct} of σ_max: {n} values above").format(pct="1%", n=rank_1pct),
                      annotation_position="bottom right")  # i18n: skip
    fig.add_vline(x=effective_rank, line=dict(color="#c44e52", dash="dash", width=1.5),
                  annotation_text=_("effective rank {rank:.1f}").format(rank=effective_rank),
                  annotation_position="top left")  # i18n: skip
    fig.update_layout(**base_layout(title, height=height, showlegend=False))
    fig.update_xaxes(title_text=_("index i of σ_i (1…{n})").format(n=s.size))
    fig.update_yaxes(title_text=_("singular value σ_i (log scale)"), type="log")
    return fig
