"""Figures of the Features page: which SAE features fire on each token, one feature's card (where it
fires, what its direction writes, its strongest contexts in a corpus, its activation histogram),
the SAE's fidelity on the prompt, and which features make a prediction.

Feature activations are >= 0 (viz.common.SEQUENTIAL). Signed values (effects on a logit, the
tokens a direction pushes) follow the app's one diverging scale (viz.common.DIVERGING, RdBu_r):
red is positive (pushes up), blue negative. Colour limits are robust: never set by one cell.
Pure Plotly; token text is escaped.

Dimension names: feature pos.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from i18n import _

from .common import CLIP_PERCENTILE, DIVERGING, SEQUENTIAL, base_layout, esc, format_prob, short, token_ticks

UP, DOWN = sample_colorscale(DIVERGING, [0.9, 0.1])  # the diverging scale's red (positive) and blue ends
BAR = "#3b6fb6"  # activations (>= 0), as other pages draw single-series bars
CLEAN, SPLICED, ESTIMATE, EXACT = "#7f7f7f", "#d95f02", "#7570b3", "#1b9e77"
CLICKABLE = 12_000  # heatmap cells that get a click target each


def feature_name(feature: int) -> str:
    return f"#{int(feature)}"


def robust_max(z: np.ndarray, percentile: float = CLIP_PERCENTILE) -> float:
    """Upper colour limit for values >= 0: the percentile of the nonzero finite values, never above
    the second largest (so no single cell sets it); 1.0 when nothing is positive."""
    a = np.asarray(z, dtype=np.float64).ravel()
    a = np.sort(a[np.isfinite(a) & (a > 0)])
    if not a.size:
        return 1.0
    lim = float(np.percentile(a, percentile))
    return min(lim, float(a[-2])) if a.size > 1 else float(a[-1])


def _title(title: str, fig: go.Figure, height: int, lines: int = 2) -> None:
    fig.update_layout(**base_layout(title, height=height))
    fig.update_layout(margin=dict(t=40 + 24 * lines))


def token_features_figure(z: np.ndarray, features: Sequence[int], tokens: Sequence[str], title: str,
                          zmax: float | None = None, picked: int | None = None) -> go.Figure:
    """z [feature, pos]: the prompt's strongest features (rows, strongest on top) on every token;
    colours up to `zmax` (default: robust_max(z)); the `picked` token's column outlined.

    Plotly selects markers on click, not heatmap cells: up to CLICKABLE cells, an invisible marker
    sits on each (and takes the hover), so a click reaches the app."""
    k, n = z.shape
    zmax = robust_max(z) if zmax is None else zmax
    names = [feature_name(f) for f in features]
    toks = np.array([esc(x) for x in tokens], dtype=object)
    where = _("feature {feature} · “{token}” (position {pos})")
    labels = np.array([[where.format(feature=names[r], token=toks[c], pos=c) for c in range(n)] for r in range(k)],
                      dtype=object).reshape(k, n)
    clickable = z.size <= CLICKABLE
    hover = "%{customdata}<br>" + _("activation %{z:.3f}") + "<extra></extra>"
    fig = go.Figure(go.Heatmap(
        z=z.astype(np.float32), x=np.arange(n), y=names, customdata=labels, colorscale=SEQUENTIAL, zmin=0, zmax=zmax,
        colorbar=dict(title=dict(text=_("activation"), side="top")), xgap=1 if n <= 64 else 0, ygap=1,
        name=_("activation"), hoverinfo="skip" if clickable else None, hovertemplate=None if clickable else hover))
    if clickable:
        cols, rows = np.meshgrid(np.arange(n), np.arange(k))
        fig.add_trace(go.Scatter(
            x=cols.ravel(), y=np.asarray(names, dtype=object)[rows.ravel()], customdata=labels.ravel(),
            text=[f"{v:.3f}" for v in z.ravel()], mode="markers", showlegend=False, name=_("click to pick"),
            marker=dict(size=max(6, min(18, int(900 / max(n, 1)))), color="rgba(0,0,0,0)", symbol="square"),
            hovertemplate="%{customdata}<br>" + _("activation %{text}") + "<extra></extra>"))
    _title(title, fig, int(170 + 22 * k))
    fig.update_yaxes(type="category", range=[k - 0.5, -0.5], title=_("feature"), showgrid=False, zeroline=False)
    fig.update_xaxes(title=_("prompt token"), tickangle=-45, range=[-0.5, n - 0.5], showgrid=False, zeroline=False,
                     **token_ticks(tokens, 48))
    if picked is not None:
        fig.add_shape(type="rect", x0=picked - 0.5, x1=picked + 0.5, y0=0, y1=1, yref="paper",
                      line=dict(color="#d62728", width=2))
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig


def token_bars_figure(features: Sequence[int], values: np.ndarray, title: str) -> go.Figure:
    """The features active on one token (strongest on top) and their activations."""
    names = [feature_name(f) for f in features]
    fig = go.Figure(go.Bar(x=np.asarray(values, dtype=np.float64), y=names, orientation="h", marker_color=BAR,
                           name=_("activation"), customdata=names,
                           hovertemplate=_("feature %{customdata}: activation %{x:.3f}") + "<extra></extra>"))
    _title(title, fig, max(280, 22 * len(names) + 150))
    fig.update_yaxes(type="category", autorange="reversed", title=_("feature"))
    fig.update_xaxes(title=_("activation"), rangemode="tozero")
    return fig


def activation_figure(acts: np.ndarray, tokens: Sequence[str], title: str) -> go.Figure:
    """acts [pos]: one feature's activation on every token of the prompt."""
    n = len(acts)
    fig = go.Figure(go.Bar(x=np.arange(n), y=np.asarray(acts, dtype=np.float64), marker_color=BAR,
                           name=_("activation"), customdata=[esc(x) for x in tokens],
                           hovertemplate=_("#%{x} “%{customdata}”: activation %{y:.3f}") + "<extra></extra>"))
    _title(title, fig, 340)
    fig.update_xaxes(title=_("prompt token"), tickangle=-45, range=[-0.5, n - 0.5], **token_ticks(tokens, 48))
    fig.update_yaxes(title=_("activation"), rangemode="tozero")
    return fig


def pushes_figure(up: Sequence[str], up_values: np.ndarray, down: Sequence[str], down_values: np.ndarray,
                  title: str, unit: str) -> go.Figure:
    """The tokens a direction pushes up most (red) and down most (blue), side by side."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[_("pushed up"), _("pushed down")], horizontal_spacing=0.2)
    for col, (toks, vals, colour) in enumerate(((up, up_values, UP), (down, down_values, DOWN)), start=1):
        y = np.arange(len(toks))
        fig.add_trace(go.Bar(x=np.asarray(vals, dtype=np.float64), y=y, orientation="h", marker_color=colour,
                             name=_("pushed up") if col == 1 else _("pushed down"), customdata=[esc(x) for x in toks],
                             hovertemplate=f"%{{customdata}}: %{{x:+.3f}} {esc(unit)}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(y),
                         ticktext=[esc(short(x, 16)) for x in toks], row=1, col=col)
        fig.update_xaxes(title=esc(unit), row=1, col=col)
    _title(title, fig, max(320, 26 * len(up) + 170))
    fig.update_layout(showlegend=False)
    return fig


def contexts_figure(values: np.ndarray, before: Sequence[str], token: Sequence[str], after: Sequence[str],
                    title: str) -> go.Figure:
    """A feature's strongest contexts, one per row (strongest on top): its activation as a bar, and
    the text around the token it fired on, that token in bold red, lined up in one column."""
    n = len(values)
    y = np.arange(n)
    full = [f"{b}[{t}]{a}" for b, t, a in zip(before, token, after)]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.18, 0.82], horizontal_spacing=0.02, shared_yaxes=True)
    fig.add_trace(go.Bar(x=np.asarray(values, dtype=np.float64), y=y, orientation="h", marker_color=BAR,
                         name=_("activation"), customdata=[esc(short(x, 90)) for x in full],
                         hovertemplate=_("activation %{x:.3f}") + "<br>%{customdata}<extra></extra>"), row=1, col=1)
    for i, (b, t, a) in enumerate(zip(before, token, after)):
        fig.add_annotation(x=0, y=i, xref="x2", yref="y2", xanchor="right", showarrow=False, text=esc(b),
                           font=dict(color="#444"))
        fig.add_annotation(x=0, y=i, xref="x2", yref="y2", xanchor="left", showarrow=False,
                           text=f"<b><span style='color:{UP}'>{esc(t)}</span></b>{esc(a)}",  # i18n: skip (markup)
                           font=dict(color="#444"))
    _title(title, fig, int(150 + 26 * max(n, 3)))
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(y), ticktext=[str(i + 1) for i in y],
                     title=_("rank"), zeroline=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=2)
    fig.update_xaxes(title=_("activation"), rangemode="tozero", row=1, col=1)
    fig.update_xaxes(range=[-1, 1], visible=False, row=1, col=2)
    fig.update_layout(showlegend=False)
    return fig


def histogram_figure(edges: np.ndarray, counts: np.ndarray, n_tokens: int, title: str) -> go.Figure:
    """counts [bin] of a feature's nonzero activations over log-spaced `edges` [bin + 1], as bars on
    a log axis of the activation, trimmed to the bins that hold any."""
    counts = np.asarray(counts, dtype=np.float64)
    log_edges = np.log10(np.asarray(edges, dtype=np.float64))
    hit = np.flatnonzero(counts > 0)
    lo, hi = (max(hit[0] - 1, 0), min(hit[-1] + 2, len(counts))) if hit.size else (0, len(counts))
    centres = (log_edges[:-1] + log_edges[1:]) / 2
    ranges = [f"{10 ** log_edges[i]:.3g} – {10 ** log_edges[i + 1]:.3g}" for i in range(len(counts))]
    fig = go.Figure(go.Bar(x=centres[lo:hi], y=counts[lo:hi], width=np.diff(log_edges)[lo:hi] * 0.95,
                           marker_color=BAR, name=_("tokens"), customdata=ranges[lo:hi],
                           hovertemplate=_("activation %{customdata}: %{y:,.0f} tokens") + "<extra></extra>"))
    powers = np.arange(np.floor(log_edges[lo]), np.ceil(log_edges[hi]) + 1)
    ticks = [np.log10(m) + p for p in powers for m in (1, 2, 5) if log_edges[lo] <= np.log10(m) + p <= log_edges[hi]]
    _title(title, fig, 340)
    fig.update_xaxes(title=_("activation (log scale; tokens where it is 0 are left out)"), tickmode="array",
                     tickvals=ticks, ticktext=[f"{10 ** v:.3g}" for v in ticks], range=[log_edges[lo], log_edges[hi]])
    fig.update_yaxes(title=_("tokens (of {n:,})").format(n=n_tokens), rangemode="tozero")
    return fig


def fidelity_figure(l0: np.ndarray, error_norm: np.ndarray, act_norm: np.ndarray, tokens: Sequence[str],
                    title: str) -> go.Figure:
    """Per token: how many features are active (top) and the error term's norm beside the
    activation's own (bottom)."""
    n = len(l0)
    x = np.arange(n)
    toks = [esc(t) for t in tokens]
    share = np.asarray(error_norm, dtype=np.float64) / np.maximum(np.asarray(act_norm, dtype=np.float64), 1e-12)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=[_("active features (L0)"), ""])
    fig.add_trace(go.Bar(x=x, y=np.asarray(l0, dtype=np.float64), marker_color=BAR, name=_("active features"),
                         customdata=toks, hovertemplate=_("#%{x} “%{customdata}”: %{y:.0f} active features")
                         + "<extra></extra>"), row=1, col=1)
    of = _("“{token}”: {share} of the activation's norm")
    fig.add_trace(go.Bar(x=x, y=np.asarray(error_norm, dtype=np.float64), marker_color=SPLICED,
                         name=_("error norm |x − x̂|"),
                         customdata=[of.format(token=t, share=f"{s:.0%}") for t, s in zip(toks, share)],
                         hovertemplate="#%{x} %{customdata}<br>" + _("error norm %{y:.3f}") + "<extra></extra>"),
                  row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=np.asarray(act_norm, dtype=np.float64), mode="lines+markers",
                             line=dict(color=CLEAN, width=1.5), marker=dict(size=4), name=_("activation norm |x|"),
                             customdata=toks, hovertemplate=_("#%{x} “%{customdata}”: activation norm %{y:.3f}")
                             + "<extra></extra>"), row=2, col=1)
    _title(title, fig, 600, lines=3)  # room for the subplot title under a two-line title
    fig.update_layout(legend=dict(orientation="h", x=1, xanchor="right", y=0.44, yanchor="bottom",
                                  bgcolor="rgba(255,255,255,0.8)"))
    fig.update_traces(showlegend=False, row=1, col=1)
    fig.update_yaxes(title=_("features"), rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title=_("norm"), rangemode="tozero", row=2, col=1)
    fig.update_xaxes(range=[-0.5, n - 0.5], row=1, col=1)
    fig.update_xaxes(title=_("prompt token"), tickangle=-45, range=[-0.5, n - 0.5], **token_ticks(tokens, 48),
                     row=2, col=1)
    return fig


def compare_probs_figure(tokens: Sequence[str], clean: np.ndarray, spliced: np.ndarray, title: str) -> go.Figure:
    """The next token's likeliest candidates (first on top): GPT-2's own probability and with the
    SAE's reconstruction in place of the activation."""
    y = np.arange(len(tokens))
    labels = [esc(t) for t in tokens]
    fig = go.Figure()
    for values, name, colour in ((clean, _("the model's own"), CLEAN),
                                 (spliced, _("with the reconstruction spliced in"), SPLICED)):
        values = np.asarray(values, dtype=np.float64)
        fig.add_trace(go.Bar(x=values, y=y, orientation="h", name=name, marker_color=colour,
                             customdata=[f"{t}: {format_prob(p)}" for t, p in zip(labels, values)],
                             hovertemplate=f"%{{customdata}} ({esc(name)})<extra></extra>"))
    _title(title, fig, max(320, 34 * len(tokens) + 170))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.14, x=0))
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(y), ticktext=labels, title=_("next token"))
    fig.update_xaxes(title=_("probability"), tickformat=".0%", rangemode="tozero")
    return fig


def attribution_figure(features: Sequence[int], effects: np.ndarray, parts: dict[str, float], title: str,
                       unit: str) -> go.Figure:
    """Left: the features with the largest effects (largest on top), red pushing `unit` up, blue
    down. Right: the whole, in parts (`parts`: name -> value, in order: the features, the error
    term, the rest, their sum)."""
    names = [feature_name(f) for f in features]
    effects = np.asarray(effects, dtype=np.float64)
    whole = np.array(list(parts.values()), dtype=np.float64)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.22,
                        subplot_titles=[_("the {k} features with the largest effects").format(k=len(names)),
                                        _("the whole, in parts")])
    fig.add_trace(go.Bar(x=effects, y=names, orientation="h", marker_color=[UP if v >= 0 else DOWN for v in effects],
                         name=_("effect"), customdata=names,
                         hovertemplate=_("feature %{customdata}: %{x:+.3f}") + f" {esc(unit)}<extra></extra>"),
                  row=1, col=1)
    labels = [esc(k) for k in parts]
    fig.add_trace(go.Bar(x=whole, y=labels, orientation="h", marker_color=[UP if v >= 0 else DOWN for v in whole],
                         name=_("parts"), customdata=labels, texttemplate="%{x:+.2f}", textposition="outside",
                         cliponaxis=False,
                         hovertemplate=f"%{{customdata}}: %{{x:+.3f}} {esc(unit)}<extra></extra>"), row=1, col=2)
    _title(title, fig, max(440, 22 * len(names) + 190), lines=3)
    fig.update_layout(showlegend=False)
    fig.update_yaxes(type="category", autorange="reversed", title=_("feature"), row=1, col=1)
    fig.update_yaxes(type="category", autorange="reversed", row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(title=_("{unit} (red: pushes up, blue: down)").format(unit=esc(unit)), zeroline=True,
                         zerolinecolor="#888", row=1, col=col)
    span = max(float(np.abs(whole).max(initial=0)), 1e-6)  # room for the values written beside the bars
    fig.update_xaxes(range=[min(0.0, whole.min()) - 0.3 * span * (whole.min() < 0), max(0.0, whole.max())
                            + 0.3 * span * (whole.max() > 0)], row=1, col=2)
    return fig


def removal_figure(features: Sequence[int], estimate: np.ndarray, exact: np.ndarray, title: str,
                   unit: str) -> go.Figure:
    """For each feature (first on top): its effect by gradient × activation beside the exact effect
    (the logit with it minus the logit with it removed and the rest of the network rerun)."""
    names = [feature_name(f) for f in features]
    fig = go.Figure()
    for values, name, colour in ((estimate, _("gradient × activation"), ESTIMATE),
                                 (exact, _("exact (removed, network rerun)"), EXACT)):
        fig.add_trace(go.Bar(x=np.asarray(values, dtype=np.float64), y=names, orientation="h", name=name,
                             marker_color=colour, customdata=names,
                             hovertemplate=_("feature %{customdata}: %{x:+.3f}") + f" {esc(unit)} ({esc(name)})"
                             + "<extra></extra>"))
    _title(title, fig, max(360, 40 * len(names) + 170))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.16, x=0))
    fig.update_yaxes(type="category", autorange="reversed", title=_("feature"))
    fig.update_xaxes(title=esc(unit), zeroline=True, zerolinecolor="#888")
    return fig
