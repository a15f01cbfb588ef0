"""Figure invariants: small checks of a Plotly figure as a person sees it, each returning the
problems it finds as sentences (an empty list: the figure passes).

    problems = check_figure(fig, width=800)               # the checks that need no browser
    problems += check_ranges(fig, full)                   # full = fig.full_figure_for_development()

What they look at (issue 25): axes cover the data and not more than half a cell beyond it;
panels that share a layer or position axis line up; a colour scale is not set by one cell and
cells beyond it say so in the hover; hovers that name a number show that number, not a tick
label; text on cells has WCAG contrast >= 4.5:1 with its cell and does not spill over its
neighbours; titles, subtitles, axis titles and colour-bar titles fit, and the title block ends
above the legend, subplot titles and plot below it; tick labels do not overlap, in the plot area
left by the margins, the labels' own room and a colour bar; a colour bar holds its title and
ticks that do not overlap; points and lines stand out from the background (3:1, WCAG 1.4.11);
the CSV carries the labels the figure shows. Tables: no "None" or "nan". Any text: no
filesystem path.

Text widths are estimates from the font size: a CJK glyph is 1 em wide, other characters
about 0.56 em (Noto Sans' average), a <sup> line 70% of the size.
"""
from __future__ import annotations

import csv
import html
import io
import re
import unicodedata

import numpy as np

from viz.common import MARK_BUDGET
from viz.export import to_csv

EM_LATIN, EM_CJK = 0.56, 1.0
LINE = 1.25  # a line of text is this many font sizes high
MIN_CONTRAST = 4.5
NUMBER_WORDS = {"rank", "layer", "head", "position", "pos", "step", "block", "#", "neuron", "feature",
                "排名", "层", "头", "位置", "步", "块", "神经元", "特征"}  # (a query or key may be named by its token)
PATH = re.compile(r"(?<![\w.])(?:/(?:work|tmp|home|root|usr|var|opt|mnt|private|Users)/|[A-Za-z]:\\)[^\s\"'<>]*")
TAG = re.compile(r"<[^>]+>")


# ---- text --------------------------------------------------------------------------------------
def plain(text) -> str:
    """What a person reads: markup gone, entities decoded."""
    return html.unescape(TAG.sub("", str(text or "")))


def text_width(text: str, size: float) -> float:
    """Estimated pixels of one line of plain `text` at font `size`."""
    return size * sum(EM_CJK if unicodedata.east_asian_width(c) in "WF" else EM_LATIN for c in plain(text))


def lines_of(text: str, size: float) -> list[tuple[str, float]]:
    """(line, font size) for each <br> line of a Plotly title; <sup>/<sub> lines at 70%."""
    out = []
    for line in re.split(r"<br\s*/?>", str(text or ""), flags=re.I):
        small = re.search(r"<su[pb]>", line, re.I) and not plain(re.sub(r"<su[pb]>.*?</su[pb]>", "", line,
                                                                         flags=re.I)).strip()
        out.append((line, size * (0.7 if small else 1.0)))
    return out


# ---- colours -----------------------------------------------------------------------------------
def rgb(colour: str) -> tuple[float, float, float]:
    c = colour.strip().lower()
    if c.startswith("#"):
        c = c[1:]
        if len(c) in (3, 4):
            c = "".join(ch * 2 for ch in c[:3])
        return tuple(int(c[i:i + 2], 16) for i in (0, 2, 4))
    m = re.match(r"rgba?\(([^)]*)\)", c)
    if m:
        return tuple(float(v) for v in re.split(r"[ ,/]+", m.group(1).strip())[:3])
    named = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}
    return named[c]


def luminance(c: tuple[float, float, float]) -> float:
    def lin(v):
        v = v / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(v) for v in c)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def scale_colour(scale, t: float) -> tuple[float, float, float]:
    """The colour at t in [0, 1] of a Plotly colour scale ((pos, colour), …), linearly interpolated."""
    stops = [(float(p), rgb(c)) for p, c in scale]
    t = min(max(t, 0.0), 1.0)
    for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
        if t <= p1:
            f = 0.0 if p1 == p0 else (t - p0) / (p1 - p0)
            return tuple(a + f * (b - a) for a, b in zip(c0, c1))
    return stops[-1][1]


def auto_text_colour(cell) -> tuple[float, float, float]:
    """Plotly's text colour for a heatmap cell when none is set: white on dark, #444 on light."""
    brightness = (cell[0] * 299 + cell[1] * 587 + cell[2] * 114) / 1000
    return (255, 255, 255) if brightness < 128 else (68, 68, 68)


def _scale_and_limits(fig, trace):
    """The trace's colour scale and (zmin, zmax), through its coloraxis when it has one."""
    z = np.asarray(trace.z, dtype=float)
    scale, lo, hi = trace.colorscale, trace.zmin, trace.zmax
    if trace.coloraxis:
        ax = fig.layout[trace.coloraxis]
        scale, lo, hi = ax.colorscale, ax.cmin, ax.cmax
    if scale is None:
        return None, None, None
    finite = z[np.isfinite(z)]
    lo = float(np.min(finite)) if lo is None and finite.size else lo
    hi = float(np.max(finite)) if hi is None and finite.size else hi
    if trace.zmid is not None and trace.zmin is None and finite.size:
        m = float(np.max(np.abs(finite - trace.zmid)))
        lo, hi = trace.zmid - m, trace.zmid + m
    return scale, lo, hi


def heatmaps(fig):
    return [t for t in fig.data if t.type == "heatmap" and t.z is not None and np.asarray(t.z).ndim == 2]


# ---- the checks: each takes a figure and returns sentences -------------------------------------
def cell_text_contrast(fig) -> list[str]:
    """Text drawn on heatmap cells: contrast >= 4.5:1 with the cell's colour."""
    out = []
    for tr in heatmaps(fig):
        text = tr.text if tr.text is not None else None
        if text is None or not tr.texttemplate:
            continue
        scale, lo, hi = _scale_and_limits(fig, tr)
        if scale is None or lo is None:
            continue
        z, text = np.asarray(tr.z, dtype=float), np.asarray(text, dtype=object)
        fixed = rgb(tr.textfont.color) if tr.textfont and tr.textfont.color else None
        worst = None
        for (r, c), v in np.ndenumerate(z):
            if not np.isfinite(v) or text.shape != z.shape or not str(text[r, c]).strip():
                continue
            cell = scale_colour(scale, (v - lo) / (hi - lo) if hi > lo else 0.5)
            ratio = contrast(fixed or auto_text_colour(cell), cell)
            if worst is None or ratio < worst[0]:
                worst = (ratio, plain(text[r, c]), v)
        if worst and worst[0] < MIN_CONTRAST:
            out.append(f"text on cells of {tr.name or 'a heatmap'!r}: contrast {worst[0]:.2f}:1 < 4.5 "
                       f"(“{worst[1]}” at {worst[2]:.3g})")
    return out


def colour_scale_robust(fig) -> list[str]:
    """A colour scale's limits are not set by one cell: pooled over the heatmaps that share the
    limits, the extreme cell is not more than twice the next one; cells beyond the limits say so in
    their hover (▲ or ▼), or, on a heatmap of more than viz.common.MARK_BUDGET cells (where text per
    cell would add half again to what is sent), every hover states the limits beside the value."""
    out = []
    groups: dict = {}
    for tr in heatmaps(fig):
        scale, lo, hi = _scale_and_limits(fig, tr)
        if scale is None or lo is None or (lo, hi) in ((0, 1), (0.0, 1.0)):
            continue
        mid = tr.zmid if tr.zmid is not None else (lo + hi) / 2 if lo < 0 < hi else lo
        groups.setdefault((lo, hi, mid), []).append(tr)
    for (lo, hi, mid), traces in groups.items():
        finite = np.concatenate([np.asarray(t.z, dtype=float).ravel() for t in traces])
        finite = finite[np.isfinite(finite)]
        names = "/".join(t.name or "a heatmap" for t in traces)
        reach = max(abs(hi - mid), abs(lo - mid))
        if finite.size >= 8 and reach > 0:
            dev = np.sort(np.abs(finite - mid))
            if abs(dev[-1] - reach) <= 1e-3 * reach and dev[-2] < 0.5 * dev[-1]:
                out.append(f"{names}: one cell ({dev[-1]:.3g} from {mid:g}) sets the colour scale; the next is "
                           f"{dev[-2]:.3g}")
        for tr in traces:
            z = np.asarray(tr.z, dtype=float)
            beyond = np.isfinite(z) & ((z < lo - 1e-9) | (z > hi + 1e-9))
            if not beyond.any():
                continue
            hover = " ".join(map(str, np.asarray(tr.customdata, dtype=object).ravel())) \
                if tr.customdata is not None else ""
            said = plain(re.sub(r"%\{[^}]*\}", " ", tr.hovertemplate)) if isinstance(tr.hovertemplate, str) else ""
            limits = [f"±{hi:.3g}"] if np.isclose(lo, -hi) else [f"{lo:.3g}", f"{hi:.3g}"]
            says_limits = z.size > MARK_BUDGET and all(v in said for v in limits)
            if "▲" not in hover and "▼" not in hover and not says_limits:
                out.append(f"{tr.name or 'a heatmap'!r}: {int(beyond.sum())} cells lie beyond the colour scale "
                           "and their hover does not say so (▲/▼, or the limits where a heatmap is too large to "
                           "mark cell by cell)")
    return out


def hover_names_what_it_shows(fig) -> list[str]:
    """A hover that names a number ("rank %{y}") must show that number: an axis relabelled with
    tick texts (tokens) would show the tick text instead. A reference with a number format
    ("%{y:d}") shows the number itself (plotly.js formats the raw value; only an unformatted one
    takes the axis's label)."""
    out = []
    for tr in fig.data:
        tmpl = tr.hovertemplate if hasattr(tr, "hovertemplate") else None
        if not isinstance(tmpl, str):
            continue
        for m in re.finditer(r"([^\s%{}<>:,=·]+)\s*[:=]?\s*%\{([xy])\}", tmpl):  # %{x:d}: a number format
            word, letter = m.group(1).lower().strip("(#"), m.group(2)
            ref = (getattr(tr, f"{letter}axis", None) or letter).replace(letter, f"{letter}axis", 1)
            axis = fig.layout[ref] if ref in fig.layout else None
            if axis is None or axis.ticktext is None or axis.tickvals is None:
                continue
            relabelled = any(plain(t).strip() != f"{v:g}" for t, v in zip(axis.ticktext, axis.tickvals)
                             if isinstance(v, (int, float, np.integer, np.floating)))
            if relabelled and (word in NUMBER_WORDS or m.group(1) in NUMBER_WORDS or word.endswith("#")):
                out.append(f"hover “{m.group(0)}” in {tr.name or tr.type!r}: the {letter} axis shows tick labels "
                           f"(“{plain(axis.ticktext[0])}”), so the hover shows a label where it names a {word}")
    return out


def _axis_px(fig, name: str, width: float, height: float) -> float:
    m = fig.layout.margin
    dom = fig.layout[name].domain or (0, 1)
    if name.startswith("x"):
        return (width - (m.l if m.l is not None else 80) - (m.r if m.r is not None else 80)) * (dom[1] - dom[0])
    return (height - (m.t if m.t is not None else 100) - (m.b if m.b is not None else 80)) * (dom[1] - dom[0])


def _font_size(fig, *sizes) -> float:
    for s in sizes:
        if s:
            return float(s)
    return float(fig.layout.font.size or 12)


def _ref(short_name: str) -> str:
    return f"{short_name[0]}axis{short_name[1:]}"


def _colour_bar_px(fig) -> float:
    """The width a vertical colour bar takes beside the plot: the bar, its tick labels (~4
    characters) and a title above it (Plotly pushes the right margin out to hold them)."""
    bars = [(t.colorbar, t.showscale) for t in heatmaps(fig) if not t.coloraxis]
    used = {t.coloraxis for t in fig.data if getattr(t, "coloraxis", None)}  # the layout always has one, unused
    bars += [(fig.layout[k].colorbar, fig.layout[k].showscale) for k in used if k in fig.layout]
    out = 0.0
    for bar, shown in bars:
        if bar is None or shown is False or bar.orientation == "h":
            continue
        size = _font_size(fig, bar.tickfont.size if bar.tickfont else None)
        tsize = _font_size(fig, bar.title.font.size if bar.title and bar.title.font else None)
        title = max((text_width(line, ls) for line, ls in lines_of(bar.title.text, tsize)), default=0.0) \
            if bar.title and bar.title.text and bar.title.side != "right" else 0.0
        out = max(out, (bar.thickness or 30) + 10 + 4 * EM_LATIN * size + 10, title + 10)
    return out


def _label_depth(fig, name: str, slot: float | None = None) -> float:
    """How far an axis's tick labels reach from it: their width on y; on x one line, or their width
    when Plotly turns them (they do not fit their slot flat)."""
    axis = fig.layout[name]
    size = _font_size(fig, axis.tickfont.size if axis.tickfont else None)
    texts = list(axis.ticktext) if axis.ticktext is not None else ["0.00"]
    wide = max(text_width(t, size) for t in texts)
    if name.startswith("y"):
        return wide + 6
    angle = axis.tickangle if isinstance(axis.tickangle, (int, float)) else \
        0 if slot is None or wide <= 0.95 * slot else 90
    return wide * abs(np.sin(np.radians(angle))) + size * LINE * abs(np.cos(np.radians(angle))) + 6


def plot_box(fig, width: float, height: float) -> tuple[float, float]:
    """(width, height) in px of the plot area: the figure less its margins, grown where the outer
    axes' tick labels and titles or a colour bar need more (Plotly's automargin)."""
    left, right, top, bottom = plot_margins(fig, width, height)
    return width - left - right, height - top - bottom


def plot_margins(fig, width: float, height: float) -> tuple[float, float, float, float]:
    """(left, right, top, bottom) px around the plot area, as plot_box estimates them."""
    m = fig.layout.margin
    left, r = (m.l if m.l is not None else 80), (m.r if m.r is not None else 80)
    t, b = (m.t if m.t is not None else 100), (m.b if m.b is not None else 80)
    for name in [k for k in fig.layout if re.fullmatch(r"[xy]axis\d*", k)]:
        axis = fig.layout[name]
        if axis.showticklabels is False or axis.side in ("top", "right") or axis.overlaying:
            continue
        title = _font_size(fig, axis.title.font.size if axis.title.font else None) * LINE + 6 \
            if axis.title.text else 0.0
        if name.startswith("y"):
            left = max(left, _label_depth(fig, name) + title)
        else:
            b = max(b, _label_depth(fig, name, 0.0 if axis.ticktext is not None else None) + title)
    bar = _colour_bar_px(fig)
    return left, max(r, bar + 10 if bar else 0), t, b


def _units(fig, name: str) -> float:
    """How many axis units an axis shows: its range, or the cells of a heatmap drawn on it, or its ticks'."""
    axis = fig.layout[name]
    if axis.range is not None and None not in axis.range:
        return abs(float(axis.range[1]) - float(axis.range[0]))
    letter = name[0]
    for tr in heatmaps(fig):
        if _ref(getattr(tr, f"{letter}axis") or letter) == name:
            return float(np.asarray(tr.z).shape[1 if letter == "x" else 0])
    vals = np.asarray(axis.tickvals, dtype=float)
    return float(np.ptp(vals)) + float(np.min(np.diff(np.sort(vals))))


def tick_labels_fit(fig, width: float, height: float) -> list[str]:
    """Tick labels set one by one (tickvals/ticktext) do not overlap, in the plot area left by the
    margins, the tick labels' own room and a colour bar (a square heatmap, scaleanchor, takes the
    smaller of its two scales): on x each fits its slot flat, or at its angle (automatic: Plotly
    turns them to 90°) its height does; on y its height fits."""
    out = []
    plot_w, plot_h = plot_box(fig, width, height)
    names = [k for k in fig.layout if re.fullmatch(r"[xy]axis\d*", k)]
    scale = {}
    for name in names:
        axis = fig.layout[name]
        if axis.tickvals is None or len(axis.tickvals) < 2:
            continue
        dom = axis.domain or (0, 1)
        scale[name] = (plot_w if name.startswith("x") else plot_h) * (dom[1] - dom[0]) / max(_units(fig, name), 1e-9)
    for name in list(scale):
        partner = _ref(fig.layout[name].scaleanchor) if fig.layout[name].scaleanchor else None
        if partner in scale:
            scale[name] = scale[partner] = min(scale[name], scale[partner])
    for name in scale:
        axis = fig.layout[name]
        if axis.ticktext is None or axis.showticklabels is False:
            continue
        vals = np.asarray(axis.tickvals, dtype=float)
        slot = scale[name] * float(np.min(np.diff(np.sort(vals))))
        size = _font_size(fig, axis.tickfont.size if axis.tickfont else None)
        wide = max(text_width(t, size) for t in axis.ticktext)
        tall = size * LINE
        angle = axis.tickangle if isinstance(axis.tickangle, (int, float)) else None
        if name.startswith("x"):
            flat = wide <= slot * 0.95
            fits = flat if angle == 0 else flat and angle is None or \
                tall / (1.0 if angle is None else abs(np.sin(np.radians(angle))) or 1e-9) <= slot
        else:
            fits = tall <= slot
        if not fits:
            out.append(f"{name}: {len(vals)} tick labels at {size:g} px in slots of {slot:.1f} px overlap "
                       f"(widest “{plain(max(axis.ticktext, key=lambda t: text_width(t, size)))}”)")
    return out


def titles_fit(fig, width: float, height: float) -> list[str]:
    """The title (each line) fits the figure's width; a colour bar's title fits beside its bar."""
    out = []
    title = fig.layout.title
    size = _font_size(fig, title.font.size if title.font else None, round((fig.layout.font.size or 12) * 1.4))
    for line, s in lines_of(title.text, size):
        w = text_width(line, s)
        if w > width - 10:
            out.append(f"title line “{plain(line)[:50]}…” is ~{w:.0f} px wide in a {width:.0f} px figure")
    if title.subtitle and title.subtitle.text:
        s = _font_size(fig, title.subtitle.font.size if title.subtitle.font else None, fig.layout.font.size)
        if text_width(title.subtitle.text, s) > width - 10:
            out.append(f"subtitle “{plain(title.subtitle.text)[:40]}…” does not fit {width:.0f} px")
    plot_h = height - (fig.layout.margin.t or 100) - (fig.layout.margin.b or 80)
    for tr in fig.data:
        bar = getattr(tr, "colorbar", None)
        if bar is None or not bar.title or not bar.title.text or getattr(tr, "showscale", None) is False:
            continue
        s = _font_size(fig, bar.title.font.size if bar.title.font else None)
        length = bar.len if bar.len is not None else 1.0
        length_px = length if bar.lenmode == "pixels" else length * plot_h
        for line, ls in lines_of(bar.title.text, s):
            w = text_width(line, ls)
            if bar.title.side == "right" and w > length_px:
                out.append(f"colour-bar title “{plain(line)}” (~{w:.0f} px) is longer than its bar "
                           f"({length_px:.0f} px)")
            room = length * (width - 100) if bar.orientation == "h" and bar.lenmode != "pixels" else \
                length if bar.orientation == "h" else max(140, width * 0.2)
            if bar.title.side in ("top", "bottom", None) and w > room:
                out.append(f"colour-bar title “{plain(line)}” (~{w:.0f} px) is wider than the room beside the plot")
    if plot_h < 60:
        out.append(f"the plot area is {plot_h:.0f} px high: the margins ({fig.layout.margin.t}+{fig.layout.margin.b}) "
                   f"take a {height:.0f} px figure")
    left, right, _, _ = plot_margins(fig, width, height)
    for name in [k for k in fig.layout if re.fullmatch(r"[xy]axis\d*", k)]:
        axis_title = fig.layout[name].title
        s = _font_size(fig, axis_title.font.size if axis_title.font else None)
        dom = fig.layout[name].domain or (0, 1)
        centre = left + (width - left - right) * (dom[0] + dom[1]) / 2  # an x title is centred on its axis
        room = 2 * min(centre, width - centre) - 10 if name.startswith("x") else height - 10
        for line, ls in lines_of(axis_title.text, s):
            if text_width(line, ls) > room:
                out.append(f"{name}'s title “{plain(line)[:40]}…” (~{text_width(line, ls):.0f} px) does not fit "
                           f"the {room + 10:.0f} px around the axis's centre")
    return out + title_block_fits(fig, width, height)


def _title_bottom(fig, height: float) -> float | None:
    """Where the title, and the subtitle under it, end (px from the figure's top, descenders
    included), for a title anchored at its top; None for another anchor. Measured in Plotly's
    renderer: lines 1.3 font sizes apart, a title of several lines lifted by ~0.72 of its size, a
    subtitle ending ~2.4 of its size below the title."""
    title = fig.layout.title
    if not title.text or title.yanchor != "top" or title.yref != "container":
        return None
    size = _font_size(fig, title.font.size if title.font else None, round((fig.layout.font.size or 12) * 1.4))
    n = len(re.split(r"<br\s*/?>", title.text))
    pad = title.pad.t if title.pad and title.pad.t is not None else 0
    bottom = (1 - (title.y if title.y is not None else 1)) * height + pad + size * (1.3 * (n - 1) + 1.0) \
        - (0.72 * size if n > 1 else 0)
    if title.subtitle and title.subtitle.text:
        bottom += 2.4 * _font_size(fig, title.subtitle.font.size if title.subtitle.font else None)
    return bottom


def title_block_fits(fig, width: float, height: float) -> list[str]:
    """The title and its subtitle end above what sits on top of the plot: a horizontal legend above
    it (where the two share columns), subplot titles, or the plot itself."""
    bottom = _title_bottom(fig, height)
    if bottom is None:
        return []
    title = fig.layout.title
    size = _font_size(fig, title.font.size if title.font else None, round((fig.layout.font.size or 12) * 1.4))
    title_right = (title.pad.l or 0) + max(text_width(line, ls) for line, ls in lines_of(title.text, size))
    m = fig.layout.margin
    top = m.t if m.t is not None else 100
    plot_h = height - top - (m.b if m.b is not None else 80)
    limit, what = top, "the plot"
    legend = fig.layout.legend
    names = [t.name for t in fig.data if t.name and t.showlegend is not False and t.visible is not False]
    if fig.layout.showlegend is not False and legend.orientation == "h" and (legend.y or 0) >= 1 and names:
        lsize = _font_size(fig, legend.font.size if legend.font else None)
        wide = sum(40 + text_width(n, lsize) for n in names)
        plot_w = width - (m.l if m.l is not None else 80) - (m.r if m.r is not None else 80)
        rows = int(np.ceil(wide / max(plot_w, 1)))
        legend_top = top - (legend.y - 1) * plot_h - rows * lsize * LINE - 6
        right = width - (m.r if m.r is not None else 80)
        legend_left = right - min(wide, plot_w) if (legend.xanchor == "right" and (legend.x or 0) >= 1) else \
            (m.l if m.l is not None else 80)
        if legend_left < title_right and legend_top < limit:
            limit, what = legend_top, "the legend above the plot"
    panels = [a for a in fig.layout.annotations or () if (a.yref or "paper") == "paper" and (a.y or 0) >= 0.99]
    if panels:
        asize = max(_font_size(fig, a.font.size if a.font else None) for a in panels)
        if top - asize * LINE < limit:
            limit, what = top - asize * LINE, "the subplot titles"
    if bottom > limit + 1:
        return [f"the title and subtitle reach {bottom:.0f} px from the top and run into {what} (from {limit:.0f} px)"]
    return []


def colour_bar_ticks_fit(fig, width: float, height: float) -> list[str]:
    """A colour bar keeps room for two tick labels beside its title (a title on top takes its lines
    from the bar's length, as Plotly draws it), and its ticks are at least a line of their font
    apart: Plotly asks for nticks, or length/40 px clamped to 4..9 (+1), and rounds the step up to
    1, 2 or 5 times a power of ten."""
    out = []
    m = fig.layout.margin
    plot_h = height - (m.t if m.t is not None else 100) - (m.b if m.b is not None else 80)
    for tr in heatmaps(fig):
        bar = tr.colorbar
        if tr.showscale is False or tr.coloraxis or bar.orientation == "h":
            continue
        _, lo, hi = _scale_and_limits(fig, tr)
        if lo is None or hi is None or hi <= lo:
            continue
        length = bar.len if bar.len is not None else 1.0
        length_px = length if bar.lenmode == "pixels" else length * plot_h
        size = _font_size(fig, bar.tickfont.size if bar.tickfont else None)
        if bar.title and bar.title.text and bar.title.side in ("top", "bottom", None):  # takes the bar's length
            tsize = _font_size(fig, bar.title.font.size if bar.title.font else None)
            length_px -= len(lines_of(bar.title.text, tsize)) * tsize * LINE + 4
        if length_px < 2 * size * LINE:
            out.append(f"colour bar of {tr.name or 'a heatmap'!r} is squashed to {max(length_px, 0):.0f} px "
                       f"(its title takes the rest of {length * plot_h if bar.lenmode != 'pixels' else length:.0f} px)")
            continue
        if bar.tickvals is not None:
            count = len(bar.tickvals)
        else:
            nt = bar.nticks or int(np.clip(length_px / 40, 4, 9)) + 1
            rough = (hi - lo) / nt if bar.dtick is None else float(bar.dtick)
            power = 10 ** np.floor(np.log10(rough))
            step = next(k * power for k in (1, 2, 5, 10) if k * power >= rough - 1e-12)
            count = int(np.floor(hi / step) - np.ceil(lo / step)) + 1
        if count > 1 and length_px / (count - 1) < size * LINE:
            out.append(f"colour bar of {tr.name or 'a heatmap'!r}: {count} tick labels at {size:g} px on a "
                       f"{length_px:.0f} px bar overlap")
    return out


def marks_stand_out(fig) -> list[str]:
    """Points and lines drawn in one colour have contrast >= 3:1 with the plot's background (WCAG
    1.4.11), legend swatches included; see-through hover carriers and faint backdrops (opacity <
    0.5) are left out."""
    bg = rgb(fig.layout.plot_bgcolor or "#ffffff")
    out = []
    for tr in fig.data:
        if tr.type not in ("scatter", "scattergl") or (tr.opacity is not None and tr.opacity < 0.5):
            continue
        mode = tr.mode or "lines+markers"
        for part, obj in (("markers", tr.marker), ("lines", tr.line)):
            colour = obj.color if obj is not None else None
            if part not in mode or not isinstance(colour, str):
                continue
            if part == "markers" and obj.opacity is not None and np.isscalar(obj.opacity) and obj.opacity < 0.5:
                continue
            alpha = re.match(r"rgba\([^)]*,\s*([\d.]+)\)", colour.replace(" ", ""))
            if alpha and float(alpha.group(1)) < 0.5:
                continue
            ratio = contrast(rgb(colour), bg)
            if ratio < 3.0:
                out.append(f"{part} of {tr.name or 'a scatter'!r} ({colour}) have contrast {ratio:.2f}:1 with "
                           f"the background {fig.layout.plot_bgcolor or '#ffffff'}")
    return out


def cell_text_fits(fig, width: float, height: float, spill: float = 1.5) -> list[str]:
    """Text drawn on heatmap cells does not spill far into its neighbours: one line at the text's
    font size at most `spill` times its cell's width (labels shortened to "␣congreg…" run a little
    over by design, and the estimate is generous for lower-case text)."""
    out = []
    plot_w, _ = plot_box(fig, width, height)
    for tr in heatmaps(fig):
        if tr.text is None or not tr.texttemplate:
            continue
        xa = fig.layout[_ref(tr.xaxis or "x")]
        dom = xa.domain or (0, 1)
        n = np.asarray(tr.z).shape[1]
        cell = plot_w * (dom[1] - dom[0]) / max(_units(fig, _ref(tr.xaxis or "x")) if xa.range else n, 1)
        size = _font_size(fig, tr.textfont.size if tr.textfont else None)
        texts = [str(t) for t in np.asarray(tr.text, dtype=object).ravel() if str(t).strip()]
        if not texts:
            continue
        widest = max(texts, key=lambda t: text_width(t, size))
        wide = text_width(widest, size)
        if wide > cell * spill:
            out.append(f"text on cells of {tr.name or 'a heatmap'!r}: “{plain(widest)}” (~{wide:.0f} px at {size:g} px)"
                       f" spills out of its {cell:.0f} px cell")
    return out


def _data_values(fig, name: str) -> set:
    """The values the figure's traces put on axis `name` (a heatmap's cells from x or x0/dx)."""
    letter, out = name[0], set()
    for tr in fig.data:
        if _ref(getattr(tr, f"{letter}axis", None) or letter) != name:
            continue
        values = getattr(tr, letter, None)
        if values is None and tr.type == "heatmap" and tr.z is not None:
            n = np.asarray(tr.z).shape[1 if letter == "x" else 0]
            start, step = getattr(tr, f"{letter}0"), getattr(tr, f"d{letter}")
            values = (start if start is not None else 0) + (step if step is not None else 1) * np.arange(n)
        for v in np.asarray(values if values is not None else [], dtype=object).ravel():
            try:
                out.add(round(float(v), 9))
            except (TypeError, ValueError):
                continue
    return out


def csv_carries_labels(fig, data: bytes | None = None) -> list[str]:
    """Every token label an axis shows at a value the data uses (a tick with no point or cell on
    it labels nothing) appears in the figure's CSV (`data`, by default viz.export.to_csv's)."""
    rows = list(csv.reader(io.StringIO((to_csv(fig) if data is None else data).decode("utf-8"))))
    cells = {html.unescape(c) for row in rows[1:] for c in row}
    blob = "\n".join(cells)
    out = []
    for name in [k for k in fig.layout if re.fullmatch(r"[xy]axis\d*", k)]:
        axis = fig.layout[name]
        if axis.ticktext is None or axis.tickvals is None:
            continue
        used = _data_values(fig, name)
        shown = [plain(t) for v, t in zip(axis.tickvals, axis.ticktext)
                 if plain(t).strip() and (not isinstance(v, (int, float, np.integer, np.floating))
                                          or round(float(v), 9) in used)]
        missing = [t for t in shown if t not in blob]
        if missing:
            out.append(f"{name}'s labels are not in the CSV ({len(missing)} of {len(shown)}, "
                       f"e.g. “{missing[0]}”); its columns: {','.join(rows[0])}")
    return out


def figure_texts(fig) -> list[str]:
    """Every text the figure shows outside its data: titles, axis titles, annotations, legend names."""
    texts = [fig.layout.title.text or ""]
    if fig.layout.title.subtitle:
        texts.append(fig.layout.title.subtitle.text or "")
    texts += [a.text or "" for a in fig.layout.annotations or ()]
    for name in [k for k in fig.layout if re.fullmatch(r"[xy]axis\d*", k)]:
        texts.append(fig.layout[name].title.text or "")
    texts += [t.name or "" for t in fig.data]
    return texts


def no_paths(texts) -> list[str]:
    return [f"a filesystem path in “{plain(t)[:80]}”" for t in texts if PATH.search(plain(t))]


def table_problems(df) -> list[str]:
    """No "None", "nan" or "<NA>" a person would read in a table."""
    bad = {"None", "nan", "NaN", "<NA>", "NaT"}
    out = []
    for col in df.columns:
        values = df[col].tolist()
        hits = [v for v in values if v is None or str(v) in bad or (isinstance(v, float) and v != v)]
        if hits:
            out.append(f"column {col!r}: {len(hits)} cells read “{hits[0]}”")
    return out


def check_figure(fig, width: float, height: float | None = None) -> list[tuple[str, str]]:
    """(check, problem) of the checks that need no browser, at `width` px (and the figure's height)."""
    height = fig.layout.height or height or 450
    width = fig.layout.width or width
    found = []
    for name, problems in (("contrast", cell_text_contrast(fig)),
                           ("colour scale", colour_scale_robust(fig)),
                           ("hover", hover_names_what_it_shows(fig)),
                           ("ticks", tick_labels_fit(fig, width, height) + colour_bar_ticks_fit(fig, width, height)),
                           ("titles", titles_fit(fig, width, height)),
                           ("cell text", cell_text_fits(fig, width, height)),
                           ("paths", no_paths(figure_texts(fig)))):
        found += [(name, p) for p in problems]
    return found


# ---- with the layout Plotly computes (fig.full_figure_for_development()) -----------------------
def _cells(values) -> tuple[float, float, float] | None:
    """(first edge, last edge, cell size) of heatmap cells centred on numeric `values`."""
    v = np.asarray(values, dtype=float) if values is not None else None
    if v is None or v.size == 0 or not np.all(np.isfinite(v)):
        return None
    step = float(np.min(np.diff(np.sort(v)))) if v.size > 1 else 1.0
    return float(v.min()) - step / 2, float(v.max()) + step / 2, step


def check_ranges(fig, full) -> list[str]:
    """Heatmap axes cover their cells and reach at most half a cell beyond; panels whose heatmaps
    share their rows (or columns) have the same range and domain on that axis."""
    out = []
    seen: dict = {}
    for tr in heatmaps(fig):
        z = np.asarray(tr.z)

        def axis_values(letter, n):
            if tr[letter] is not None:
                return tr[letter]
            start, step = tr[f"{letter}0"], tr[f"d{letter}"]
            return (start if start is not None else 0) + (step if step is not None else 1) * np.arange(n)
        for letter, values in (("x", axis_values("x", z.shape[1])), ("y", axis_values("y", z.shape[0]))):
            ref = (getattr(tr, f"{letter}axis") or letter).replace(letter, f"{letter}axis", 1)
            axis = full.layout[ref]
            if axis.type not in ("linear", "-", None) or axis.range is None:
                continue
            cells = _cells(values)
            if cells is None:
                continue
            lo, hi = sorted(float(r) for r in axis.range)
            first, last, step = cells
            if lo > first + 1e-6 * step or hi < last - 1e-6 * step:
                out.append(f"{ref} runs {lo:.2f}…{hi:.2f} and cuts off cells {first:.2f}…{last:.2f}")
            elif lo < first - step / 2 - 1e-6 or hi > last + step / 2 + 1e-6:
                out.append(f"{ref} runs {lo:.2f}…{hi:.2f}, more than half a cell beyond the cells "
                           f"{first:.2f}…{last:.2f}")
            key = (letter, tuple(np.asarray(values, dtype=float).tolist()))
            if len(key[1]) > 1:
                seen.setdefault(key, set()).add(ref)
    for (letter, values), refs in seen.items():
        refs = sorted(refs)
        for a, b in zip(refs, refs[1:]):
            ra, rb = full.layout[a], full.layout[b]
            if ra.domain is None or rb.domain is None:
                continue
            other = "y" if letter == "x" else "x"
            oa = full.layout[(ra.anchor or other).replace(other, f"{other}axis", 1)]
            ob = full.layout[(rb.anchor or other).replace(other, f"{other}axis", 1)]
            side_by_side = oa.domain[1] <= ob.domain[0] + 1e-9 or ob.domain[1] <= oa.domain[0] + 1e-9
            if not side_by_side:
                continue
            if not np.allclose(ra.domain, rb.domain, atol=1e-6) or not np.allclose(ra.range, rb.range, atol=1e-6):
                out.append(f"{a} and {b} share their {len(values)} rows/columns but do not line up: "
                           f"domains {tuple(round(d, 3) for d in ra.domain)} vs "
                           f"{tuple(round(d, 3) for d in rb.domain)}, "
                           f"ranges {tuple(round(r, 2) for r in ra.range)} vs {tuple(round(r, 2) for r in rb.range)}")
    return out


def point_labels_overlap(fig, full, width: float = 800, max_share: float = 0.2) -> list[str]:
    """Labels drawn beside scatter points (mode with "text"), over every trace of the figure,
    overlap for at most `max_share` of them; boxes estimated from the font size, the text position
    and the computed axis ranges (one scale for both axes where the map ties them)."""
    height = full.layout.height or 450
    boxes, names = [], set()
    for tr in fig.data:
        if tr.type != "scatter" or not tr.mode or "text" not in tr.mode or tr.text is None:
            continue
        xa = full.layout[(tr.xaxis or "x").replace("x", "xaxis", 1)]
        ya = full.layout[(tr.yaxis or "y").replace("y", "yaxis", 1)]
        w_px, h_px = _axis_px(full, "xaxis", width, height), _axis_px(full, "yaxis", width, height)
        (x0, x1), (y0, y1) = sorted(xa.range), sorted(ya.range)
        sx, sy = w_px / (x1 - x0), h_px / (y1 - y0)
        if ya.scaleanchor or xa.scaleanchor:
            sx = sy = min(sx, sy)
        size = _font_size(full, tr.textfont.size if tr.textfont else None)
        spots = tr.textposition if isinstance(tr.textposition, (list, tuple)) else \
            [tr.textposition or "top center"] * len(tr.text)
        for x, y, t, spot in zip(tr.x, tr.y, tr.text, spots):
            if not str(t).strip():
                continue
            px, py = (x - x0) * sx, (y1 - y) * sy
            w, h = text_width(t, size), size * LINE
            vert, horiz = (spot.split() + ["center"])[:2]
            bx = px - w / 2 if horiz == "center" else px + 4 if horiz == "right" else px - 4 - w
            by = py - 5 - h if vert == "top" else py + 5 if vert == "bottom" else py - h / 2
            boxes.append((bx, by, w, h))
            names.add(tr.name or "a scatter")
    hit = set()
    for i, (ax, ay, aw, ah) in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            bx, by, bw, bh = boxes[j]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                hit.update((i, j))
    if len(boxes) >= 4 and len(hit) > max_share * len(boxes):
        return [f"{len(hit)} of {len(boxes)} point labels ({', '.join(sorted(names))}) overlap"]
    return []
