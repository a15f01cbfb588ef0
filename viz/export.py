"""Export figures for slides and sharing: PNG, SVG, standalone HTML, CSV, ZIP; slide styling.

Pure functions of Plotly figures (no streamlit, no torch). Static images use Plotly's
kaleido with a system Chromium (`BROWSER_PATH`, or `chromium` on PATH); one kaleido
browser is started per process and reused for every image.

Batch export without the browser, which loads a model, is recipes.export (`python -m recipes.export`).
"""
from __future__ import annotations

import csv
import hashlib
import html
import io
import os
import re
import shutil
import threading
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from i18n import _

from .common import COLUMN_PX, MODEBAR_PX, column_share, columns_for, esc, short, unwrap_title, wrap_title
from .fit import (
    LINE,
    as_array,
    fit_axis_titles,
    fit_cell_text,
    fit_colour_bars,
    fit_tick_labels,
    label_margins,
    legend_above_px,
    readable_marks,
)

SLIDE = dict(width=1600, height=900, scale=2)
# How this project starts a headless Chromium (tests, screenshots, benchmarks): no sandbox as
# root, and none of the background traffic that a closed network answers with errors.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,150}")
_kaleido_lock = threading.Lock()
_kaleido_started = False


# ---- file names -----------------------------------------------------------------------------
def slug(text: str, limit: int = 40) -> str:
    """ASCII words of `text` joined by '-', for file names; '' if none survive. A character with no ASCII
    form (an en dash, a Chinese word) separates words rather than joining them: "层 0–5" gives "0-5"."""
    text = "".join(ch if ch.isascii() else "" if unicodedata.combining(ch) else " "
                   for ch in unicodedata.normalize("NFKD", str(text)))
    words = re.findall(r"[A-Za-z0-9]+", text)
    out = "-".join(words)[:limit].strip("-")
    return out.lower()


def safe_filename(*parts: str, prompt: str | None = None, ext: str = "") -> str:
    """A file name safe on Windows, macOS and Linux: ASCII letters, digits, '-', '_' and one
    '.ext'. The prompt adds a slug of its first words plus a short hash, so two prompts
    never share a name even when nothing ASCII is left (Chinese, emoji)."""
    pieces = [slug(p, 80) for p in parts]
    if prompt is not None:
        digest = hashlib.sha1(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        pieces += [slug(prompt, 40), digest]
    name = "_".join(p for p in pieces if p) or "figure"
    if name.lower() in _WINDOWS_RESERVED:
        name += "_"
    name = name[:150]
    ext = re.sub(r"[^A-Za-z0-9]", "", ext)
    return f"{name}.{ext}" if ext else name


# ---- slide styling --------------------------------------------------------------------------
TITLE_PX, SUBTITLE_PX, TICK_PX, MIN_TICK_PX, LEGEND_PX, ANNOTATION_PX, COLOURBAR_TITLE_PX = 28, 20, 18, 14, 18, 20, 20
SCREEN_HEIGHT = 450  # what a figure without a height of its own is drawn at


def presentation_style(fig: go.Figure, dark: bool = False, prompt: str | None = None,
                       width: float | None = None) -> go.Figure:
    """A copy of `fig` for slides: plain background, fonts of 18-28 px, thicker lines and markers,
    and the prompt under the title when the title lacks it. `dark` gives light text on near-black.

    Fitted to `width` px, by default the page's column the figure is drawn in (viz.common.COLUMN_PX
    times the share fit_to_column marked; a deck's 1,600 px slide has room to spare): the title wraps
    and the prompt line shortens to it; the top margin holds the title's lines, the prompt, a legend
    above the plot and subplot titles; the bottom and left margins hold the tick labels; the plot area
    keeps its height (the figure grows). Tick labels the slide font would overlap shrink to 14 px,
    then every k-th is kept (viz.fit); colour bars ask for the ticks that fit their length; points
    and lines too faint on the background are lightened (darkened on white) to 3:1."""
    width = float(width or COLUMN_PX * column_share(fig))
    fig = go.Figure(fig)
    old = fig.layout.margin
    old_t, old_b = (old.t if old.t is not None else 100), (old.b if old.b is not None else 80)
    title = wrap_title(unwrap_title(fig.layout.title.text or ""), columns_for(width, TITLE_PX))
    quoted = esc(short(prompt, max(12, columns_for(width, SUBTITLE_PX) - 2))) if prompt else ""
    subtitle = bool(quoted) and quoted[:20] not in title
    if subtitle:
        fig.update_layout(title_subtitle_text=f"“{quoted}”", title_subtitle_font_size=SUBTITLE_PX)
    bg, fg, grid = ("#111418", "#f2f2f2", "#3a3f47") if dark else ("#ffffff", "#111111", "#e3e3e3")
    fig.update_layout(
        template="plotly_dark" if dark else "plotly_white",
        paper_bgcolor=bg, plot_bgcolor=bg,
        font=dict(size=20, color=fg),
        title=dict(text=title, font=dict(size=TITLE_PX, color=fg), x=0, xref="container", xanchor="left",
                   y=1, yref="container", yanchor="top", pad=dict(t=MODEBAR_PX, l=8)),
        legend_font=dict(size=LEGEND_PX),
        margin=dict(l=90, r=40, t=_top_margin(fig, title, subtitle, width), b=80),
    )
    fig.update_xaxes(title_font=dict(size=22), tickfont=dict(size=TICK_PX), gridcolor=grid, zerolinecolor=grid)
    fig.update_yaxes(title_font=dict(size=22), tickfont=dict(size=TICK_PX), gridcolor=grid, zerolinecolor=grid)
    fig.update_annotations(font_size=ANNOTATION_PX)
    for trace in fig.data:
        if trace.type in ("scatter", "scattergl"):
            line_width = (trace.line.width or 2) if trace.line is not None else 2
            trace.update(line_width=max(3, line_width * 1.6))
            if trace.marker is not None and trace.marker.size is not None and np.isscalar(trace.marker.size):
                trace.update(marker_size=trace.marker.size * 1.5)
            readable_marks(trace, bg)
        if trace.type == "bar":
            trace.update(textfont_size=18)
        if trace.type == "heatmap" and trace.colorbar is not None:
            trace.update(colorbar_tickfont_size=TICK_PX, colorbar_title_font_size=COLOURBAR_TITLE_PX)
            if trace.colorbar.title.text and trace.colorbar.title.side != "right":  # beside the plot, ~20% wide
                room = columns_for(max(140.0, 0.2 * width) + 16, COLOURBAR_TITLE_PX)
                trace.update(colorbar_title_text=wrap_title(trace.colorbar.title.text, room))
    # the plot area keeps its size: the larger slide margins come on top of it (a short strip would
    # otherwise shrink to a line, issue 25 item 4), the tick labels' room included (Plotly would push
    # the margins out itself, squashing the plot)
    base = fig.layout.height or SCREEN_HEIGHT
    for _pass in range(3):
        added = (fig.layout.margin.t - old_t) + (fig.layout.margin.b - old_b)
        fig.update_layout(height=int(base + max(0, added)))
        if _pass < 2:
            fit_tick_labels(fig, width, fig.layout.height, TICK_PX, MIN_TICK_PX)
            fig.update_layout(margin=label_margins(fig, bottom=80, left=90))
            fit_axis_titles(fig, width, fig.layout.height, wrap_title)
    fit_colour_bars(fig)
    fit_cell_text(fig, width, fig.layout.height)
    return fig


def _lines_px(n: int, size: float) -> float:
    """How far below its anchor the last of `n` title lines ends (descenders included): Plotly
    lifts a title of several lines by ~0.72 em (measured in its renderer)."""
    return size * (LINE * (n - 1) + 1.05) - (0.72 * size if n > 1 else 0)


def _top_margin(fig: go.Figure, title: str, subtitle: bool, width: float) -> int:
    """Room above the plot for the title's lines, the prompt line, a legend above the plot and
    subplot titles."""
    n = max(1, len(re.split(r"<br\s*/?>", title))) if title else 0
    top = MODEBAR_PX + (_lines_px(n, TITLE_PX) if n else 0)
    if subtitle:
        top += SUBTITLE_PX * (LINE + 1.05) + 8
    panels = any((a.yref or "").startswith("paper") or a.yref is None for a in fig.layout.annotations or ())
    top += 12 + legend_above_px(fig, width - 130) + (ANNOTATION_PX * LINE + 6 if panels else 0)
    return int(np.ceil(top))


# ---- formats ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StaticExport:
    available: bool
    message: str  # why not, and how to fix it


def find_chromium() -> str | None:
    for candidate in (os.environ.get("BROWSER_PATH"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def static_export() -> StaticExport:
    """Whether PNG/SVG export can run here; if not, the message says how to fix it."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return StaticExport(False, _("PNG and SVG export need the kaleido package: pip install kaleido. "
                                     "HTML and CSV export work without it."))
    if find_chromium() is None:
        return StaticExport(False, _("PNG and SVG export need Chromium or Chrome: apt-get install -y chromium "
                                     "(or set BROWSER_PATH to a Chrome binary). HTML and CSV export work without it."))
    return StaticExport(True, "")


def _ensure_kaleido() -> None:
    """Start kaleido's browser once per process; later images reuse it (~0.5 s instead of ~5 s)."""
    global _kaleido_started
    with _kaleido_lock:
        if _kaleido_started:
            return
        status = static_export()
        if not status.available:
            raise RuntimeError(status.message)
        os.environ.setdefault("BROWSER_PATH", find_chromium())
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        _kaleido_started = True


def _image(fig: go.Figure, fmt: str, width: int, height: int, scale: float) -> bytes:
    _ensure_kaleido()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")  # i18n: skip
        return pio.to_image(fig, format=fmt, width=int(width), height=int(height), scale=scale)


def to_png(fig: go.Figure, width: int = SLIDE["width"], height: int = SLIDE["height"],
           scale: float = SLIDE["scale"]) -> bytes:
    """PNG of width*scale x height*scale pixels."""
    return _image(fig, "png", width, height, scale)


def to_svg(fig: go.Figure, width: int = SLIDE["width"], height: int = SLIDE["height"]) -> bytes:
    return _image(fig, "svg", width, height, 1)


def to_html(fig: go.Figure) -> bytes:
    """A standalone interactive page: plotly.js is inlined, so it opens without a network."""
    return pio.to_html(fig, include_plotlyjs=True, full_html=True, config={"displaylogo": False}).encode()


def _column(values, n: int) -> list:
    if values is None:
        return [""] * n
    arr = as_array(values).ravel()
    return arr.tolist() if arr.size == n else [""] * n


def _tick_labels(fig: go.Figure, trace, letter: str) -> dict:
    """{axis value: the label its tick shows} of the trace's x or y axis (tickvals/ticktext), as plain text."""
    name = getattr(trace, f"{letter}axis", None) or letter
    key = f"{letter}axis{name[1:]}"
    axis = fig.layout[key] if key in fig.layout else None
    if axis is None or axis.tickvals is None or axis.ticktext is None:
        return {}
    out = {}
    for v, t in zip(as_array(axis.tickvals, object).ravel(), axis.ticktext):
        try:
            out[round(float(v), 9)] = html.unescape(re.sub(r"<[^>]+>", "", str(t)))
        except (TypeError, ValueError):
            continue
    return out


def _label_of(labels: dict, value) -> str:
    try:
        return labels.get(round(float(value), 9), "")
    except (TypeError, ValueError):
        return ""


def _cell_axis(trace, letter: str, n: int) -> np.ndarray:
    """A heatmap's axis values: its x (y), or x0 + dx * i (y0 + dy * i) as Plotly places the cells."""
    values = getattr(trace, letter)
    if values is not None:
        return as_array(values)
    start, step = getattr(trace, f"{letter}0"), getattr(trace, f"d{letter}")
    return (start if start is not None else 0) + (step if step is not None else 1) * np.arange(n)


def to_csv(fig: go.Figure) -> bytes:
    """The figure's numbers in long form: one row per point or cell, with its trace's name.

    Columns: trace, x, y, z, label, x label, y label. Heatmap cells give (x, y, z) for every cell
    (x, y are the axis values: positions for token axes); bars and lines give (x, y); `label` is the
    hover or text label where the figure has one; `x label` and `y label` are what the axis's tick
    shows at that value (the token at a position, a layer's name), where it shows one. NaN (e.g.
    the causal upper triangle) stays NaN."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trace", "x", "y", "z", "label", "x label", "y label"])
    for i, trace in enumerate(fig.data):
        name = trace.name or f"{trace.type} {i}"
        x_labels, y_labels = _tick_labels(fig, trace, "x"), _tick_labels(fig, trace, "y")
        if getattr(trace, "z", None) is not None and trace.type in ("heatmap", "contour"):
            z = as_array(trace.z, float)
            if z.ndim != 2:
                continue
            ys, xs = _cell_axis(trace, "y", z.shape[0]), _cell_axis(trace, "x", z.shape[1])
            labels = as_array(trace.customdata, object) if trace.customdata is not None else None
            for r in range(z.shape[0]):
                for c in range(z.shape[1]):
                    lab = labels[r, c] if labels is not None and labels.shape[:2] == z.shape else ""
                    xv, yv = (xs[c] if c < len(xs) else c), (ys[r] if r < len(ys) else r)
                    w.writerow([name, xv, yv, z[r, c], lab, _label_of(x_labels, xv), _label_of(y_labels, yv)])
        elif getattr(trace, "x", None) is not None or getattr(trace, "y", None) is not None:
            x = trace.x if trace.x is not None else np.arange(len(trace.y))
            x = as_array(x).ravel()
            n = len(x)
            y = _column(trace.y, n)
            z = _column(getattr(trace, "z", None), n)
            lab = _column(trace.customdata if trace.customdata is not None else getattr(trace, "text", None), n)
            for xi, yi, zi, li in zip(x.tolist(), y, z, lab):
                w.writerow([name, xi, yi, zi, li, _label_of(x_labels, xi), _label_of(y_labels, yi)])
    return buf.getvalue().encode("utf-8")


def table_to_csv(table) -> bytes:
    return table.to_csv(index=False).encode("utf-8")


def plain_title(text: str) -> str:
    """A Plotly title as plain text (for the ZIP's index): line breaks as " · " (a line that wrap_title
    broke off a part joins it again), no tags, no entities."""
    text = re.sub(r"<br\s*/?>", " · ", unwrap_title(str(text)), flags=re.I)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return " ".join(text.split()).strip(" ·")


def _zip_name(name: str) -> str:
    """A name already made by safe_filename (the page's buttons use it) is kept as it is."""
    return name if _SAFE_NAME.fullmatch(name) and name.lower() not in _WINDOWS_RESERVED else safe_filename(name)


def export_zip(figures: dict[str, go.Figure], tables: dict | None = None, *, title: str = "",
               static: bool | None = None) -> bytes:
    """A ZIP with SVG + PNG + CSV of every figure (PNG/SVG only if static export works),
    CSV of every table, and an index.txt listing them."""
    static = static_export().available if static is None else static
    buf = io.BytesIO()
    lines = [title or _("Inside GPT-2 figures"), ""]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, fig in figures.items():
            base = _zip_name(name)
            title_text = plain_title(fig.layout.title.text or "") or name
            files = [f"{base}.csv", f"{base}.html"]
            z.writestr(f"{base}.csv", to_csv(fig))
            z.writestr(f"{base}.html", to_html(fig))
            if static:
                z.writestr(f"{base}.svg", to_svg(fig))
                z.writestr(f"{base}.png", to_png(fig))
                files += [f"{base}.svg", f"{base}.png"]
            lines.append(f"{title_text}\n    " + ", ".join(sorted(files)))
        for name, table in (tables or {}).items():
            base = _zip_name(name)
            z.writestr(f"{base}.csv", table_to_csv(table))
            lines.append(_("{name} (table)").format(name=name) + f"\n    {base}.csv")
        if not static:
            lines += ["", static_export().message]
        z.writestr("index.txt", "\n".join(lines) + "\n")
    return buf.getvalue()
