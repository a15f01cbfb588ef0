"""Figure invariants: small checks of a Plotly figure as a person sees it, each returning the
problems it finds as sentences (an empty list: the figure passes).

    problems = check_figure(fig, width=800)               # the checks that need no browser
    problems += check_ranges(fig, full)                   # full = fig.full_figure_for_development()

What they look at (issue 25): axes cover the data and not more than half a cell beyond it;
panels that share a layer or position axis line up; a colour scale is not set by one cell and
cells beyond it say so in the hover; hovers that name a number show that number, not a tick
label; text on cells has WCAG contrast >= 4.5:1 with its cell; titles and colour-bar titles fit;
tick labels do not overlap; the CSV carries the labels the figure shows. Tables: no "None" or
"nan". Any text: no filesystem path.

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
    their hover (▲ or ▼)."""
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
            if "▲" not in hover and "▼" not in hover:
                out.append(f"{tr.name or 'a heatmap'!r}: {int(beyond.sum())} cells lie beyond the colour scale "
                           "and their hover does not say so (▲/▼)")
    return out


def hover_names_what_it_shows(fig) -> list[str]:
    """A hover that names a number ("rank %{y}") must show that number: an axis relabelled with
    tick texts (tokens) would show the tick text instead."""
    out = []
    for tr in fig.data:
        tmpl = tr.hovertemplate if hasattr(tr, "hovertemplate") else None
        if not isinstance(tmpl, str):
            continue
        for m in re.finditer(r"([^\s%{}<>:,=·]+)\s*[:=]?\s*%\{([xy])[}:]", tmpl):
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


def tick_labels_fit(fig, width: float, height: float) -> list[str]:
    """Tick labels set one by one (tickvals/ticktext) do not overlap: on x each fits its slot (or,
    at an automatic angle, its height does: Plotly turns them to 90°), on y its height fits."""
    out = []
    for name in [k for k in fig.layout if re.fullmatch(r"[xy]axis\d*", k)]:
        axis = fig.layout[name]
        if axis.ticktext is None or axis.tickvals is None or len(axis.tickvals) < 2 or axis.showticklabels is False:
            continue
        vals = np.asarray(axis.tickvals, dtype=float)
        spread = float(np.ptp(vals)) or 1.0
        n_slots = spread / float(np.min(np.diff(np.sort(vals)))) + 1
        slot = _axis_px(fig, name, width, height) / n_slots
        size = _font_size(fig, axis.tickfont.size if axis.tickfont else None)
        wide = max(text_width(t, size) for t in axis.ticktext)
        tall = size * LINE
        angle = axis.tickangle
        if name.startswith("x"):
            fits = wide <= slot * 0.95 if angle in (0, None) and angle is not None else \
                tall <= slot if angle in (None, "auto", 90, -90) else tall / np.sin(np.radians(abs(angle))) <= slot
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
    return out


def csv_carries_labels(fig) -> list[str]:
    """Every token label on an axis (tick text) appears in the figure's CSV."""
    rows = list(csv.reader(io.StringIO(to_csv(fig).decode("utf-8"))))
    cells = {html.unescape(c) for row in rows[1:] for c in row}
    blob = "\n".join(cells)
    out = []
    for name in [k for k in fig.layout if re.fullmatch(r"[xy]axis\d*", k)]:
        axis = fig.layout[name]
        if axis.ticktext is None:
            continue
        missing = [plain(t) for t in axis.ticktext if plain(t).strip() and plain(t) not in blob]
        if missing:
            out.append(f"{name}'s labels are not in the CSV ({len(missing)} of {len(axis.ticktext)}, "
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
    for name, problems in (("contrast", cell_text_contrast(fig)), ("colour scale", colour_scale_robust(fig)),
                           ("hover", hover_names_what_it_shows(fig)), ("ticks", tick_labels_fit(fig, width, height)),
                           ("titles", titles_fit(fig, width, height)), ("paths", no_paths(figure_texts(fig)))):
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
