"""Helpers every figure builder shares: safe token labels, colour scales, layout defaults."""
from __future__ import annotations

import html
from typing import Sequence

import numpy as np

# Perceptually uniform scales: sequential for probabilities and weights >= 0, diverging around 0.
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"
FONT_FAMILY = "Noto Sans, Noto Sans CJK SC, Segoe UI, Arial, sans-serif"  # i18n: skip
CELL_BUDGET = 1_500_000  # cells one heatmap may hold, what a browser draws smoothly (a 1,024 x 1,024 head is 1.05 M)
CLIP_PERCENTILE = 99.5  # colour limits: a few outliers would otherwise wash out the rest


def symmetric_limit(z: np.ndarray, percentile: float = CLIP_PERCENTILE) -> float:
    """±limit for a diverging scale centred on 0: the percentile of the finite |z| (1.0 if z is all 0)."""
    a = np.abs(np.asarray(z, dtype=np.float32))
    a = a[np.isfinite(a)]
    lim = float(np.percentile(a, percentile)) if a.size else 0.0
    return lim if lim > 0 else (float(a.max()) if a.size and a.max() > 0 else 1.0)


def esc(text: str) -> str:
    """Escape untrusted text (token strings, prompts) for Plotly labels, titles and hovers.

    Plotly reads a subset of HTML (<b>, <br>, <a href>) in every text field; token text
    from the model must never be read as markup, so <, > and & become entities.
    """
    return html.escape(str(text), quote=False)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_prob(p: float) -> str:
    """A probability as a person reads it, the one way the app writes one (tables, metrics,
    bar labels, hovers): a percentage with two significant digits down to 0.01% (42%, 3.1%,
    0.27%, 0.015%), then a power of ten (3.0×10⁻⁷); 0 and NaN as themselves."""
    p = float(p)
    if p != p:
        return "—"
    if p <= 0:
        return "0"
    if p >= 1e-4:
        pct = p * 100
        digits = max(0, 1 - int(np.floor(np.log10(pct)))) if pct < 10 else 0
        return f"{pct:.{digits}f}%"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def short(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def token_ticks(tokens: Sequence[str], max_labels: int = 64) -> dict:
    """Axis settings that label positions 0..n-1 with their tokens.

    Positions (not token strings) are the axis values, so a repeated token ("hello"
    16 times) keeps 16 columns; Plotly would merge equal category labels. When there
    are more tokens than fit, every k-th position is labelled.
    """
    n = len(tokens)
    step = max(1, int(np.ceil(n / max_labels)))
    vals = list(range(0, n, step))
    return dict(tickmode="array", tickvals=vals, ticktext=[esc(tokens[i]) for i in vals])


def base_layout(title: str, **kw) -> dict:
    return dict(
        title=dict(text=title, x=0.0, xanchor="left"),
        font=dict(family=FONT_FAMILY, size=13),
        margin=dict(l=60, r=20, t=60, b=50),
        template="plotly_white",
        **kw,
    )


def figure_label(model_name: str, prompt: str, limit: int = 48) -> str:
    """`gpt2 · “The best thing about…”` for figure titles, escaped (the prompt is untrusted)."""
    return f"{esc(model_name)} · “{esc(short(prompt, limit))}”"
