"""Fitting a figure to the room it is drawn in: tick labels that do not overlap, margins that hold
them, colour bars whose ticks fit their length, marks that stand out from the background.

Used by viz.common.fit_to_column (a figure in a half-width column) and viz.export.presentation_style
(the Slides styles' larger fonts). Sizes are estimated from the font size, as the figure tests do:
a Latin character ~0.56 em, a CJK one 1 em, a line of text 1.25 font sizes (Plotly spaces title
lines 1.3 apart)."""
from __future__ import annotations

import base64
import html
import re
import unicodedata

import numpy as np
import plotly.graph_objects as go

LINE = 1.3  # Plotly spaces lines of text 1.3 font sizes apart
TICK_LINE = 1.25  # a tick label needs this many font sizes of its axis, on top of the next one
MARK_CONTRAST = 3.0  # WCAG 1.4.11: marks (points, lines) against the background they sit on


def as_array(values, dtype=None) -> np.ndarray:
    """An array of a figure's data as Plotly holds it: a list, a numpy array, or (a figure read
    back from JSON, a deck's) a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(values, dict) and "bdata" in values:
        out = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        if values.get("shape"):
            out = out.reshape([int(n) for n in str(values["shape"]).split(",")])
        return out.astype(dtype) if dtype is not None else out
    return np.asarray(values, dtype=dtype)


def text_px(text: str, size: float) -> float:
    """Estimated pixels of one line of `text` (markup dropped, entities read) at font `size`."""
    plain = html.unescape(re.sub(r"<[^>]+>", "", str(text)))
    return size * sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.56 for c in plain)


def ref(short_name: str) -> str:
    """The layout key of an axis reference: "y2" -> "yaxis2"."""
    return f"{short_name[0]}axis{short_name[1:]}"


def axes(fig: go.Figure, letter: str) -> list[str]:
    return [k for k in fig.layout if re.fullmatch(rf"{letter}axis\d*", k)]


def _size(fig: go.Figure, *sizes) -> float:
    return float(next((s for s in sizes if s), fig.layout.font.size or 12))


def colour_bar_px(fig: go.Figure) -> float:
    """How wide a vertical colour bar beside the plot is: the bar, its tick labels (~5 characters)
    and its title above it (0 without one)."""
    widest = 0.0
    bars = [(t.colorbar, t.showscale) for t in fig.data if t.type == "heatmap" and not t.coloraxis]
    used = {t.coloraxis for t in fig.data if getattr(t, "coloraxis", None)}  # the layout always has one, unused
    bars += [(fig.layout[k].colorbar, fig.layout[k].showscale) for k in used if k in fig.layout]
    for bar, shown in bars:
        if bar is None or shown is False or bar.orientation == "h":
            continue
        tick = _size(fig, bar.tickfont.size if bar.tickfont else None)
        lines = re.split(r"<br\s*/?>", bar.title.text or "") if bar.title.side != "right" else []
        title = max((text_px(line, _size(fig, bar.title.font.size)) for line in lines), default=0.0)
        widest = max(widest, (bar.thickness or 30) + 10 + 5 * 0.56 * tick + 10, title + 10)
    return widest


def plot_px(fig: go.Figure, width: float, height: float) -> tuple[float, float]:
    """The plot area's width and height in px: the figure less its margins and a colour bar."""
    m = fig.layout.margin
    left, right = (m.l if m.l is not None else 80), (m.r if m.r is not None else 80)
    top, bottom = (m.t if m.t is not None else 100), (m.b if m.b is not None else 80)
    bar = colour_bar_px(fig)
    return width - left - max(right, bar + 10 if bar else 0), height - top - bottom


def _label_depth(fig: go.Figure, name: str) -> float:
    axis = fig.layout[name]
    size = _size(fig, axis.tickfont.size if axis.tickfont else None)
    wide = max(text_px(t, size) for t in (axis.ticktext if axis.ticktext is not None else ["-0.00"]))
    if name.startswith("y"):
        return wide + 8
    angle = axis.tickangle if isinstance(axis.tickangle, (int, float)) else (0 if wide <= 40 else 90)
    return wide * abs(np.sin(np.radians(angle))) + size * abs(np.cos(np.radians(angle))) + 8


def label_margins(fig: go.Figure, bottom: float, left: float) -> dict:
    """Bottom and left margins (at least `bottom`, `left`) that hold the outer axes' tick labels
    and titles, so that Plotly need not push them out (squashing the plot under a fixed height)."""
    out = {}
    for letter, side, least in (("x", "b", bottom), ("y", "l", left)):
        need = least
        for name in axes(fig, letter):
            axis = fig.layout[name]
            other = fig.layout[ref(axis.anchor or ("y" if letter == "x" else "x"))] if axis.anchor != "free" else None
            outer = other is None or other.domain is None or other.domain[0] <= 0.01
            if axis.showticklabels is False or not outer or axis.side in ("top", "right") or axis.overlaying:
                continue
            lines = len(re.split(r"<br\s*/?>", axis.title.text)) if axis.title.text else 0
            title = _size(fig, axis.title.font.size if axis.title.font else None) * LINE * lines + 8 if lines else 0
            need = max(need, _label_depth(fig, name) + title + 6)
        out[side] = int(np.ceil(need))
    return out


def legend_above_px(fig: go.Figure, plot_width: float) -> float:
    """The height of a horizontal legend drawn above the plot (0 if there is none): its entries
    (a 40 px symbol and the name each) wrap onto rows of the plot's width."""
    legend = fig.layout.legend
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    if fig.layout.showlegend is False or legend.orientation != "h" or (legend.y or 0) < 1 or not names:
        return 0.0
    size = _size(fig, legend.font.size if legend.font else None)
    rows, used = 1, 0.0
    for name in names:
        w = 40 + text_px(name, size)
        if used and used + w > plot_width:
            rows, used = rows + 1, 0.0
        used += w
    return rows * size * LINE + 10


def fit_axis_titles(fig: go.Figure, width: float, height: float, wrap) -> None:
    """Axis titles that do not fit wrap between words: an x title is centred on its axis, so it has
    twice the room to the nearer edge of the figure; a y title the figure's height. `wrap` is
    viz.common.wrap_title with a column count for the text's size."""
    m = fig.layout.margin
    left = m.l if m.l is not None else 80
    plot_w, _ = plot_px(fig, width, height)
    for name in axes(fig, "x") + axes(fig, "y"):
        title = fig.layout[name].title
        if not title.text:
            continue
        size = _size(fig, title.font.size if title.font else None)
        dom = fig.layout[name].domain or (0, 1)
        centre = left + plot_w * (dom[0] + dom[1]) / 2
        room = (2 * min(centre, width - centre) if name.startswith("x") else height) - 20
        if text_px(title.text, size) > room:
            title.text = wrap(title.text, max(8, int(room / (0.56 * size))))


def fit_tick_labels(fig: go.Figure, width: float, height: float, largest: float, least: float) -> None:
    """Axes labelled one by one (tickvals/ticktext), in a `width` x `height` figure: the largest
    font from `largest` down to `least` px at which the labels do not overlap, turned labels (x)
    where a fixed angle leaves too little room, then every k-th label. A square heatmap
    (scaleanchor) gets the smaller of its two scales on both axes."""
    plot_w, plot_h = plot_px(fig, width, height)

    def px_per_unit(name: str) -> float | None:
        axis = fig.layout[name]
        if axis.tickvals is None or len(axis.tickvals) < 2:
            return None
        vals = as_array(axis.tickvals, float)
        step = float(np.min(np.diff(np.sort(vals)))) or 1.0
        lo, hi = sorted(axis.range) if axis.range is not None and None not in axis.range else \
            (vals.min() - step / 2, vals.max() + step / 2)
        for tr in fig.data:  # a heatmap's cells may reach past the last label (labels thinned)
            if tr.type == "heatmap" and tr.z is not None and axis.range is None and \
                    ref(getattr(tr, f"{name[0]}axis") or name[0]) == name:
                n = as_array(tr.z).shape[1 if name[0] == "x" else 0]
                lo, hi = min(lo, -0.5), max(hi, n - 0.5)
        span = (axis.domain[1] - axis.domain[0]) if axis.domain else 1.0
        return (plot_w if name.startswith("x") else plot_h) * span / max(hi - lo, 1e-9)

    scales = {name: px_per_unit(name) for name in axes(fig, "x") + axes(fig, "y")}
    for name, scale in list(scales.items()):
        anchor = fig.layout[name].scaleanchor
        partner = ref(anchor) if anchor else None
        if scale and scales.get(partner):
            scales[name] = scales[partner] = min(scale, scales[partner])
    for name, scale in scales.items():
        axis = fig.layout[name]
        if scale is None or axis.ticktext is None:
            continue
        vals = as_array(axis.tickvals, float)
        slot = scale * (float(np.min(np.diff(np.sort(vals)))) or 1.0)
        texts = list(axis.ticktext)
        wide = max(text_px(t, 1.0) for t in texts)  # px per font px

        def fits(size: float, angle) -> bool:
            if name.startswith("y") or angle in (90, -90):
                return TICK_LINE * size <= slot
            if angle == 0 or wide * size <= 0.95 * slot:
                return wide * size <= 0.95 * slot
            return TICK_LINE * size / (1.0 if angle is None else abs(np.sin(np.radians(angle)))) <= slot
        sizes = range(int(largest), int(least) - 1, -1)
        angle = axis.tickangle if isinstance(axis.tickangle, (int, float)) else None
        size = next((s for s in sizes if fits(s, angle)), None)
        if size is None and name.startswith("x") and angle not in (None, 90, -90):
            axis.tickangle = angle = -90
            size = next((s for s in sizes if fits(s, angle)), None)
        if size is None:
            size = int(least)
            keep = int(np.ceil(TICK_LINE * size / slot))
            axis.update(tickvals=vals[::keep].tolist(), ticktext=texts[::keep])
        axis.tickfont.size = size


def _shorten(text: str, columns: int) -> str:
    """Escaped `text` cut to `columns` columns (a CJK character counts 2) with "…", entities kept whole."""
    plain = html.unescape(str(text))
    width = [2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in plain]
    if sum(width) <= columns:
        return str(text)
    keep, used = [], 0
    for c, w in zip(plain, width):
        if used + w > columns - 1:
            break
        keep.append(c)
        used += w
    return html.escape("".join(keep), quote=False) + "…"


def fit_cell_text(fig: go.Figure, width: float, height: float, spill: float = 1.4) -> None:
    """Text written on heatmap cells that would spill over its neighbours (wider than `spill` cells)
    is cut to what fits, with "…" (the hover keeps the whole of it)."""
    plot_w, _ = plot_px(fig, width, height)
    for tr in fig.data:
        if tr.type != "heatmap" or tr.text is None or not tr.texttemplate or tr.z is None:
            continue
        axis = fig.layout[ref(tr.xaxis or "x")]
        span = (axis.domain[1] - axis.domain[0]) if axis.domain else 1.0
        cell = plot_w * span / max(as_array(tr.z).shape[-1], 1)
        size = _size(fig, tr.textfont.size if tr.textfont else None)
        columns = max(3, int(cell * spill / (0.56 * size)))
        text = as_array(tr.text, object)
        if max((text_px(t, size) for t in text.ravel()), default=0) > cell * spill:
            tr.text = np.vectorize(lambda t: _shorten(t, columns), otypes=[object])(text)


def _bars(fig: go.Figure):
    """The vertical colour bars of a figure's heatmaps (shown, not through a coloraxis)."""
    for trace in fig.data:
        bar = getattr(trace, "colorbar", None)
        if trace.type == "heatmap" and bar is not None and trace.showscale is not False and not trace.coloraxis \
                and bar.orientation != "h":
            yield trace, bar


def _bar_title_px(fig: go.Figure, bar) -> float:
    """The length a colour bar's title on top of it takes from the bar (Plotly draws the bar below it)."""
    if not bar.title or not bar.title.text or bar.title.side not in ("top", "bottom", None):
        return 0.0
    size = _size(fig, bar.title.font.size if bar.title.font else None)
    return len(re.split(r"<br\s*/?>", bar.title.text)) * size * LINE + 4


def fit_colour_bars(fig: go.Figure, ticks: int = 3) -> None:
    """Colour bars (as long as the plot) that hold their title and at least `ticks` tick labels: a
    short figure grows (a heatmap of two rows would squash its bar to a line, its title taking the
    length, labels on top of each other), and automatic ticks ask for no more than fit the bar
    (Plotly rounds the step up to 1, 2 or 5 times a power of ten: at most nticks + 1 are drawn)."""
    m = fig.layout.margin
    top, bottom = (m.t if m.t is not None else 100), (m.b if m.b is not None else 80)
    height = fig.layout.height or 450
    need = plot_h = height - top - bottom
    for _trace, bar in _bars(fig):
        if bar.lenmode != "pixels":
            size = _size(fig, bar.tickfont.size if bar.tickfont else None)
            need = max(need, (_bar_title_px(fig, bar) + ticks * TICK_LINE * size + 4) / (bar.len or 1.0))
    if need > plot_h:
        height = int(np.ceil(height + need - plot_h))
        fig.update_layout(height=height)
    for trace, bar in _bars(fig):
        if bar.tickvals is not None or bar.dtick is not None:
            continue
        size = _size(fig, bar.tickfont.size if bar.tickfont else None)
        length = bar.len if bar.len is not None else 1.0
        length_px = (length if bar.lenmode == "pixels" else length * (height - top - bottom)) - _bar_title_px(fig, bar)
        trace.update(colorbar_nticks=max(2, int(length_px // (TICK_LINE * size)) - 1))


_NAMED = {"black": "#000000", "white": "#ffffff", "grey": "#808080", "gray": "#808080", "darkgrey": "#a9a9a9",
          "darkgray": "#a9a9a9", "lightgrey": "#d3d3d3", "lightgray": "#d3d3d3", "dimgray": "#696969",
          "dimgrey": "#696969", "silver": "#c0c0c0"}


def _rgba(colour) -> tuple[float, float, float, float] | None:
    """(r, g, b, alpha) of a CSS colour (#rgb, #rrggbb, rgb(), rgba(), a few greys by name); None
    for others."""
    c = _NAMED.get(str(colour).strip().lower(), str(colour).strip().lower())
    if re.fullmatch(r"#[0-9a-f]{3}|#[0-9a-f]{6}", c):
        c = c[1:] if len(c) == 7 else "".join(ch * 2 for ch in c[1:])
        return (*(int(c[i:i + 2], 16) for i in (0, 2, 4)), 1.0)
    m = re.fullmatch(r"rgba?\(([^)]*)\)", c)
    if m:
        parts = [float(v) for v in re.split(r"[ ,/]+", m.group(1).strip())]
        return (*parts[:3], parts[3] if len(parts) > 3 else 1.0)
    return None


def contrast_ratio(a, b) -> float:
    """WCAG contrast of two (r, g, b) colours, 0-255."""
    def lum(c):
        v = [x / 255 for x in c[:3]]
        v = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in v]
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def readable_colour(colour: str, background: str, ratio: float = MARK_CONTRAST) -> str:
    """`colour`, or the least mix of it with white (on a dark background) or black that has
    `ratio` contrast with `background`: its hue stays, so a legend still matches."""
    c, bg = _rgba(colour), _rgba(background)
    if c is None or bg is None or contrast_ratio(c, bg) >= ratio:
        return colour
    target = (255, 255, 255) if contrast_ratio((255, 255, 255), bg) > contrast_ratio((0, 0, 0), bg) else (0, 0, 0)
    for k in range(1, 11):
        mixed = tuple(round(v + (t - v) * k / 10) for v, t in zip(c[:3], target))
        if contrast_ratio(mixed, bg) >= ratio:
            break
    return "#{:02x}{:02x}{:02x}".format(*mixed)


def readable_marks(trace, background: str) -> None:
    """A scatter's one marker and line colour made readable on `background` (a colour scale or
    per-point colours stay as they are; so do see-through hover carriers and faint backdrops)."""
    if trace.opacity is not None and trace.opacity < 0.5:
        return
    for obj in (trace.marker, trace.line):
        colour = obj.color if obj is not None else None
        rgba = _rgba(colour) if isinstance(colour, str) else None
        faint = obj is trace.marker and obj.opacity is not None and np.isscalar(obj.opacity) and obj.opacity < 0.5
        if rgba is not None and rgba[3] >= 0.5 and not faint:
            obj.color = readable_colour(colour, background)
