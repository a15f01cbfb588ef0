"""Helpers every figure builder shares: safe token labels, colour scales, layout defaults."""
from __future__ import annotations

import html
import re
import unicodedata
from typing import Sequence

import numpy as np

from i18n import _

# Perceptually uniform scales: sequential for probabilities and weights >= 0, diverging around 0.
SEQUENTIAL = "Viridis"
# The app's one convention for signed values (weights, attributions, ablations, features, steering):
# red is positive (pushes a logit up, raises a probability), blue negative, white zero.
DIVERGING = "RdBu_r"
POSITIVE, NEGATIVE = "#c0392b", "#2b6cb0"  # bars and lines of signed values: the diverging scale's red and blue
# Cells that carry text (token names) use a light Viridis (muted blue, green, bright yellow: dark =
# low, bright = high, as Viridis) and near-black text: WCAG contrast >= 7:1 on every cell, in every
# style (Plotly's automatic text colour drops to ~3.3:1 on Viridis' teal middle).
LIGHT_SEQUENTIAL = [[0.0, "#8c9fc9"], [0.5, "#9fd3b5"], [1.0, "#ffe45c"]]
CELL_TEXT = "#111111"
MODEBAR_PX = 30  # the chart toolbar's band at the top right of every figure: titles start below it
FONT_FAMILY = "Noto Sans, Noto Sans CJK SC, Segoe UI, Arial, sans-serif"  # i18n: skip
CELL_BUDGET = 1_500_000  # cells one heatmap may hold, what a browser draws smoothly (a 1,024 x 1,024 head is 1.05 M)
CLIP_PERCENTILE = 99.5  # colour limits: a few outliers would otherwise wash out the rest


def symmetric_limit(z: np.ndarray, percentile: float = CLIP_PERCENTILE) -> float:
    """±limit for a diverging scale centred on 0: the percentile of the finite |z| (1.0 if z is all 0)."""
    a = np.abs(np.asarray(z, dtype=np.float32))
    a = a[np.isfinite(a)]
    lim = float(np.percentile(a, percentile)) if a.size else 0.0
    if a.size >= 2:  # never set by one cell: at most twice the second-largest (a small grid's percentile is its max)
        second = float(np.partition(a, -2)[-2])
        lim = min(lim, 2 * second) if second > 0 else lim
    return lim if lim > 0 else (float(a.max()) if a.size and a.max() > 0 else 1.0)


def clip_marks(z: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per cell of z, what its hover adds when the colour scale clips it: "" inside [lo, hi],
    "<br>▲ beyond the colour scale" above, "▼ …" below (the colour shows the limit, not the value)."""
    z = np.asarray(z, dtype=np.float64)
    note = _("beyond the colour scale")
    out = np.full(z.shape, "", dtype=object)
    out[np.isfinite(z) & (z > hi)] = f"<br>▲ {note}"
    out[np.isfinite(z) & (z < lo)] = f"<br>▼ {note}"
    return out


MARK_BUDGET = 131_072  # cells a heatmap's hover marks one by one (~0.1 s and ~0.4 MB more to send)


def clip_hover(z: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray | None, str]:
    """(customdata, hover suffix) that tell a person which cells the colour scale [lo, hi] clips:
    per-cell marks (clip_marks, shown by "%{customdata}") on a heatmap of up to MARK_BUDGET cells;
    a larger one (a 768 x 768 weight matrix: per-cell text would add ~50% to what is sent and ~10x
    the time to serialise it) says in every cell's hover where the colours stop, beside the value.
    (None, "") when no cell lies beyond."""
    z = np.asarray(z)
    finite = z[np.isfinite(z)] if z.size else z
    if not finite.size or (finite.min() >= lo and finite.max() <= hi):
        return None, ""
    if z.size <= MARK_BUDGET:
        return clip_marks(z, lo, hi), "%{customdata}"
    limits = f"±{hi:.3g}" if np.isclose(lo, -hi) else f"{lo:.3g} … {hi:.3g}"
    return None, "<br>" + _("colours stop at {limits}").format(limits=limits)


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
    """`text` on one line, at most `limit` columns wide: a CJK character counts two (it is ~1 em
    wide, a Latin letter ~0.55 em), so a Chinese prompt takes as much room as an English one."""
    text = " ".join(str(text).split())
    if text_columns(text) <= limit:
        return text
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > limit - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def text_columns(text: str) -> int:
    """How many columns `text` takes: CJK (wide) characters 2, the others 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in str(text))


MAX_AXIS_LABELS = 36  # token labels one axis shows at most: ~20 px each on a 720 px axis, so they never overlap


def token_ticks(tokens: Sequence[str], max_labels: int = MAX_AXIS_LABELS) -> dict:
    """Axis settings that label positions 0..n-1 with their tokens.

    Positions (not token strings) are the axis values, so a repeated token ("hello"
    16 times) keeps 16 columns; Plotly would merge equal category labels. When there
    are more tokens than fit, every k-th position is labelled.
    """
    n = len(tokens)
    step = max(1, int(np.ceil(n / min(max_labels, MAX_AXIS_LABELS))))
    vals = list(range(0, n, step))
    return dict(tickmode="array", tickvals=vals, ticktext=[esc(tokens[i]) for i in vals])


TITLE_COLUMNS = 78  # a title line at 18 px fits ~780 px (the page's column with the sidebar open)
COLUMN_PX = 800  # the page's column with the sidebar open in a 1,280 px window: what a full-width figure gets
EM_COLUMN = 0.56  # one column of text_columns is ~0.56 em (Noto Sans' average Latin glyph; a CJK glyph, 1 em, counts 2)


def columns_for(px: float, size: float) -> int:
    """How many text columns (text_columns) fit on a line `px` wide at font `size`, less the title's
    8 px padding on each side."""
    return max(8, int((px - 16) / (EM_COLUMN * size)))


def _visible_columns(text: str) -> int:
    return text_columns(html.unescape(re.sub(r"<[^>]+>", "", text)))


JOIN_WORDS, JOIN_CHARS = " ", "\u200b"  # how a wrapped line that continues a part starts: after a space, or mid-word


def _break_words(text: str, columns: int) -> tuple[str, str]:
    """(head, rest) of a too-long `text`: head the most words that fit `columns` (rest starts with
    JOIN_WORDS), or, when its first word alone is too long (a CJK phrase has no spaces), the most
    characters, an entity kept whole (rest starts with JOIN_CHARS, a zero-width space)."""
    cut = None
    for m in re.finditer(r" +", text):
        if _visible_columns(text[:m.start()]) > columns:
            break
        cut = m if text[:m.start()].strip() else cut
    if cut is not None:
        return text[:cut.start()], JOIN_WORDS + text[cut.end():]
    used, end = 0, 0
    for m in re.finditer(r"&#?\w+;|.", text):
        w = _visible_columns(m.group(0))
        if used + w > columns and text[:end].strip():
            break
        used, end = used + w, m.end()
    return text[:end], JOIN_CHARS + text[end:]


def wrap_title(title: str, columns: int = TITLE_COLUMNS) -> str:
    """Break a title "what · model · “prompt”" at its " · " into lines of at most `columns`
    columns (CJK counts 2), so a long title (a Chinese prompt) wraps instead of being cut off. A
    part still too long breaks between words (between characters for CJK); the line that continues
    it starts with a space (a zero-width one mid-word), so that unwrap_title can join it back. Lines
    with markup stay whole."""
    lines = []
    for line in re.split(r"<br\s*/?>", title):
        if _visible_columns(line) <= columns or "<" in line:
            lines.append(line)
            continue
        current = ""
        for part in line.split(" · "):
            joined = f"{current} · {part}" if current.strip() else part
            if current.strip() and _visible_columns(joined) > columns:
                lines.append(current)
                current = part
            else:
                current = joined
            while _visible_columns(current) > columns:
                head, rest = _break_words(current, columns)
                if not rest.strip(JOIN_WORDS + JOIN_CHARS):
                    break
                lines.append(head)
                current = rest
        lines.append(current)
    return "<br>".join(lines)


def unwrap_title(title: str) -> str:
    """A title as it was before wrap_title: a line that continues a part joins it again (with its
    space), the other breaks become " · " (a break before a <sup>/<sub> line stays)."""
    title = re.sub(r"<br\s*/?>(?= )", "", title or "").replace(f"<br>{JOIN_CHARS}", "")
    return re.sub(r"<br\s*/?>(?!<su[pb]>)", " · ", title)


def column_share(fig) -> float:
    """The share of the page's width a figure is drawn in (fit_to_column marks it; 1 otherwise)."""
    meta = fig.layout.meta
    share = meta.get("column") if isinstance(meta, dict) else None
    return float(share) if isinstance(share, (int, float)) and 0 < share <= 1 else 1.0


def fit_to_column(fig, share: float):
    """`fig` (built with base_layout) fitted to a column `share` of the page's width (a figure in a
    Row; recipes.Row calls this for every figure it holds): a smaller title (15 px) that wraps to the
    column, a top margin that grows with its lines, tick labels that fit (a smaller font, then every
    k-th: viz.fit), margins that hold them with the plot area kept (the figure grows), and the share
    marked in layout.meta, so that the Slides styles fit the column too."""
    from .fit import (
        fit_axis_titles,
        fit_cell_text,
        fit_colour_bars,
        fit_tick_labels,
        label_margins,
        legend_above_px,
    )

    size = 18 if share >= 0.75 else 15
    width = COLUMN_PX * share
    title = wrap_title(unwrap_title(fig.layout.title.text or ""), columns_for(width, size))
    top = MODEBAR_PX + (size + 6) * max(1, title_lines(title)) + 8 + legend_above_px(fig, width - 100)
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    fig.update_layout(title_text=title, title_font_size=size, margin_t=max(fig.layout.margin.t or 0, top),
                      meta={**meta, "column": share})
    font = float(fig.layout.font.size or 13)
    m = fig.layout.margin
    bottom, left = (m.b if m.b is not None else 80), (m.l if m.l is not None else 80)
    height = fig.layout.height or 450
    for _pass in range(2):
        fit_tick_labels(fig, width, height, font, font - 2)
        margins = label_margins(fig, bottom=fig.layout.margin.b or bottom, left=fig.layout.margin.l or left)
        height += margins["b"] - (fig.layout.margin.b or bottom)
        fig.update_layout(margin=margins, height=height)
        fit_axis_titles(fig, width, height, wrap_title)
    fit_colour_bars(fig)
    fit_cell_text(fig, width, fig.layout.height)
    return fig


PANEL_TITLE_PX = 24  # subplot titles sit just above their panels, in the top margin


def base_layout_with_panels(title: str, **kw) -> dict:
    """base_layout for a figure with subplot titles: the top margin also holds the panels' titles,
    so they never run into the figure's title."""
    layout = base_layout(title, **kw)
    layout["margin"]["t"] += PANEL_TITLE_PX
    return layout


def title_lines(title: str) -> int:
    return len(re.split(r"<br\s*/?>", title or "")) if title else 0


LABEL_SPOTS = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left",  # i18n: skip
               "top left", "bottom right")  # i18n: skip


def label_positions(x: Sequence[float], y: Sequence[float], labels: Sequence[str], *, width: float = 420,
                    height: float = 300, size: float = 13, equal_scale: bool = False) -> list[str | None]:
    """A textposition per point so that point labels never overlap: each label in turn takes the
    first spot (above, below, right, left, corners) whose box, estimated from the font size at a
    `width` x `height` px plot (one scale for both axes when `equal_scale`, as a map with
    scaleanchor draws it), meets no label placed before it; None where every spot is taken (that
    point keeps its marker and hover, without a label: fewer labels rather than a pile of them)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not len(x):
        return []
    sx = width / max(float(np.ptp(x)), 1e-9)
    sy = height / max(float(np.ptp(y)), 1e-9)
    if equal_scale:
        sx = sy = min(sx, sy)
    px, py = (x - x.min()) * sx, (y.min() - y) * sy + height  # pixels, y down
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for i in range(len(x)):
        w, h = 0.56 * size * text_columns(html.unescape(labels[i])) + 4, 1.25 * size
        gap = 6
        boxes = {"top center": (px[i] - w / 2, py[i] - gap - h),  # i18n: skip (Plotly's text positions)
                 "bottom center": (px[i] - w / 2, py[i] + gap),  # i18n: skip
                 "middle right": (px[i] + gap, py[i] - h / 2),  # i18n: skip
                 "middle left": (px[i] - gap - w, py[i] - h / 2),  # i18n: skip
                 "top right": (px[i] + gap / 2, py[i] - gap - h),  # i18n: skip
                 "bottom left": (px[i] - gap / 2 - w, py[i] + gap),  # i18n: skip
                 "top left": (px[i] - gap / 2 - w, py[i] - gap - h),  # i18n: skip
                 "bottom right": (px[i] + gap / 2, py[i] + gap)}  # i18n: skip

        def hits(spot):
            bx, by = boxes[spot]
            return sum(bx < x1 + w1 and x1 < bx + w and by < y1 + h1 and y1 < by + h for x1, y1, w1, h1 in placed)
        spot = next((s for s in LABEL_SPOTS if not hits(s)), None)
        if spot is not None:
            placed.append((*boxes[spot], w, h))
        out.append(spot)
    return out


def base_layout(title: str, **kw) -> dict:
    """Shared layout: the title top left, under the chart toolbar's band (MODEBAR_PX), wrapped to
    the page's width; the top margin grows with its lines. `margin` in kw is merged into the default."""
    title = wrap_title(title)
    top = MODEBAR_PX + 24 * max(1, title_lines(title)) + 8
    margin = dict(l=60, r=20, t=top, b=50)
    margin.update(kw.pop("margin", None) or {})
    margin["t"] = max(margin["t"], top)
    return dict(
        title=dict(text=title, x=0.0, xanchor="left", xref="container", y=1.0, yref="container", yanchor="top",
                   pad=dict(t=MODEBAR_PX, l=8)),
        font=dict(family=FONT_FAMILY, size=13),
        margin=margin,
        template="plotly_white",
        **kw,
    )


def figure_label(model_name: str, prompt: str, limit: int = 48) -> str:
    """`gpt2 · “The best thing about…”` for figure titles, escaped (the prompt is untrusted)."""
    return f"{esc(model_name)} · “{esc(short(prompt, limit))}”"  # `short` counts a CJK character twice
