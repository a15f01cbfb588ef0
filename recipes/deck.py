"""A slide deck of figures and tables: PowerPoint (.pptx), an offline HTML deck, and a deck file (JSON).

A slide is a figure (or table) with the link that reopens its view, a title and speaker notes.
The deck file holds the links and the notes only; the figures are recomputed from the links
(`ui.deck.rebuild`, which runs each link's page headless), so a deck is small and can be shared.

    pptx = build_pptx(slides, title="Attention in GPT-2", subtitle="gpt2 · 5 Dec 2026")

Pure python-pptx and Plotly (no streamlit): the Deck page and the batch exporter
(`python -m recipes.export --deck talk.json --out talk.pptx`) call the same functions.
"""
from __future__ import annotations

import html
import io
import json
import math
import os
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import plotly.graph_objects as go
import plotly.io as pio

from i18n import _
from viz.export import SLIDE, plain_title, presentation_style, to_png

DECK_VERSION = 1
MAX_SLIDES = 60  # slides a deck holds (each holds its figure in the session's memory, and is a page run and a PNG
#                  when a deck file is rebuilt): an hour's talk; adding more is refused, a longer file is cut
MAX_DECK_BYTES = 2_000_000  # links and notes only: a real deck is a few kB
TABLE_MAX_ROWS, TABLE_MAX_COLS = 16, 10  # a native table beyond this shows its first rows and says so
CJK_FONT = "Microsoft YaHei"  # i18n: skip (PowerPoint's east-asian font; LibreOffice substitutes Noto Sans CJK)
LATIN_FONT = "Calibri"
DARK_BG, DARK_FG, LIGHT_FG = "111418", "F2F2F2", "111111"
Progress = Callable[[int, int, str], None]  # (done, total, what) for a progress bar


@dataclass
class Slide:
    """One slide: a figure or a table, the page (script path) and link that reopen its view, the key of
    the figure on that page, and what the person wrote (title, notes)."""
    kind: str  # "figure" or "table"
    page: str  # the page's script, relative to the app: "pages/1_Attention.py"
    link: str  # the view's address, e.g. http://host/Attention?prompt=…&attn_layer=1
    key: str  # the figure's (or table's) widget key on its page
    title: str
    notes: str = ""
    fig: Any = None  # plotly Figure, in the figure style chosen when it was added
    table: Any = None  # pandas DataFrame
    error: str = ""  # why a slide of an uploaded deck could not be rebuilt
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])  # names its widgets on the Deck page

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.link).query, keep_blank_values=True))

    def record(self) -> dict:
        """The slide as the deck file holds it: no figure, only what rebuilds it."""
        return {"kind": self.kind, "page": self.page, "link": self.link, "key": self.key, "title": self.title,
                "notes": self.notes}


@dataclass
class Deck:
    title: str
    slides: list[Slide] = field(default_factory=list)
    style: str = "slides"  # normal, slides or dark (the sidebar's figure style)


def page_link(base_url: str, url_path: str, query: dict) -> str:
    """The address that reopens a view: the app's address, the page's path and its controls."""
    path = base_url.rstrip("/") + "/" + url_path.strip("/")
    return path + ("?" + urlencode(query) if query else "")


def plain(text: str) -> str:
    """Text without Plotly or Markdown markup: for slide titles, notes and file indexes."""
    text = plain_title(str(text or ""))  # a line break is " · ", a title's wrapped part joins back
    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~$])", r"\1", text).replace("\u2060", "")
    return " ".join(text.split())


# ---- the deck file (JSON) ------------------------------------------------------------------------
def to_json(deck: Deck) -> bytes:
    data = {"version": DECK_VERSION, "app": "Inside GPT-2", "title": deck.title, "style": deck.style,
            "slides": [s.record() for s in deck.slides]}
    return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")


class DeckFileError(ValueError):
    """A deck file that cannot be read at all (one line saying why and what to do)."""


def from_json(raw: bytes | str) -> tuple[Deck, list[str]]:
    """A deck read from its file, without figures (rebuild them from the links), and one message per
    slide that was left out. A file that is not a deck raises DeckFileError."""
    if isinstance(raw, bytes) and len(raw) > MAX_DECK_BYTES or isinstance(raw, str) and len(raw) > MAX_DECK_BYTES:
        raise DeckFileError(_("This deck file is over {n:,} bytes; a deck file holds links and notes only, a few "
                              "kB. Download the deck file from the Deck page again.").format(n=MAX_DECK_BYTES))
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise DeckFileError(_("This file is not a deck file (it is not JSON). Upload a .json file downloaded "
                              "from the Deck page.")) from None
    if not isinstance(data, dict) or not isinstance(data.get("slides"), list):
        raise DeckFileError(_("This JSON file is not a deck file (it has no list of slides). Upload a .json file "
                              "downloaded from the Deck page."))
    deck = Deck(title=_text(data.get("title")) or _("Inside GPT-2"),
                style=data.get("style") if data.get("style") in ("normal", "slides", "dark") else "slides")
    problems = []
    for i, item in enumerate(data["slides"][:MAX_SLIDES], 1):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item.get(k)
                                                 for k in ("page", "link", "key")):
            problems.append(_("Slide {n}: it names no page, link or figure, so it was left out.").format(n=i))
            continue
        kind = "table" if item.get("kind") == "table" else "figure"
        deck.slides.append(Slide(kind, item["page"], item["link"], item["key"], _text(item.get("title")),
                                 _text(item.get("notes"))))
    if len(data["slides"]) > MAX_SLIDES:
        problems.append(_("The deck has {n:,} slides; the first {max:,} were kept.").format(
            n=len(data["slides"]), max=MAX_SLIDES))
    return deck, problems


def _text(value: Any) -> str:
    return value[:20_000] if isinstance(value, str) else ""


def rebuilt(kind: str, content) -> dict:
    """A rebuilt figure or table as the rebuild's child process sends it (JSON)."""
    if kind == "table":
        return {"table": content.to_json(orient="split", index=False)}
    return {"fig": content.to_json()}


def fill(slide: Slide, message: dict) -> None:
    """Put what the rebuild sent (`rebuilt`, or an error) on `slide`."""
    if message.get("error"):
        slide.error = message["error"]
    elif "table" in message:
        import pandas as pd

        slide.table = pd.read_json(io.StringIO(message["table"]), orient="split")
    else:
        slide.fig = pio.from_json(message["fig"])


def rebuild(slides: list[Slide], lang: str = "en", progress: Progress | None = None,
            timeout_s: float = 900) -> None:
    """Fill each slide's figure (or table) by recomputing its link's view; a slide that cannot be rebuilt
    gets `error` (one line saying why) and the others still build. `progress(done, total, title)`.

    The views are drawn by the app's own pages, run headless (Streamlit's AppTest) in a child process,
    `python -m ui.deck`: every view is rebuilt exactly as its page draws it, and neither this process
    nor a running server's Streamlit runtime is touched (this module never imports streamlit)."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    todo = json.dumps({"lang": lang, "slides": [s.record() for s in slides]})
    proc = subprocess.Popen([sys.executable, "-m", "ui.deck"], cwd=root, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        proc.stdin.write(todo)
        proc.stdin.close()
        for done, line in enumerate(proc.stdout, 1):
            message = json.loads(line)
            slide = slides[message["i"]]
            fill(slide, message)
            if progress:
                progress(done, len(slides), slide.title)
        proc.wait()
    finally:
        timer.cancel()
    for i, slide in enumerate(slides, 1):
        if slide.fig is None and slide.table is None and not slide.error:
            slide.error = _("Slide {n}: its view could not be rebuilt (the rebuild stopped early).").format(n=i)


# ---- PowerPoint ----------------------------------------------------------------------------------
def cell_text(value: Any) -> str:
    """A table value as its PowerPoint cell shows it: numbers to 4 significant digits, no "nan"."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    try:
        import numpy as np

        if isinstance(value, np.floating):
            return "" if np.isnan(value) else f"{float(value):.4g}"
        if isinstance(value, np.integer):
            return str(int(value))
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def _font(run_or_par, size: int, color: str, bold: bool = False, lang: str = "en") -> None:
    """Latin and east-asian typefaces, so Chinese text has glyphs in PowerPoint and LibreOffice."""
    from pptx.dml.color import RGBColor
    from pptx.util import Pt

    font = run_or_par.font
    font.size, font.bold, font.name = Pt(size), bold, LATIN_FONT
    font.color.rgb = RGBColor.from_string(color)
    rpr = font._rPr if hasattr(font, "_rPr") else font._element
    for tag in ("a:ea", "a:cs"):
        for old in rpr.findall("{http://schemas.openxmlformats.org/drawingml/2006/main}" + tag[2:]):
            rpr.remove(old)
    from lxml import etree
    from pptx.oxml.ns import qn

    ea = etree.SubElement(rpr, qn("a:ea"))
    ea.set("typeface", CJK_FONT)
    if lang != "en":
        rpr.set("lang", "zh-CN")
        rpr.set("altLang", "en-US")


def _text_box(slide, text: str, left, top, width, height, size: int, color: str, bold=False, lang="en"):
    from pptx.enum.text import MSO_ANCHOR

    box = slide.shapes.add_textbox(left, top, width, height)
    frame = box.text_frame
    frame.word_wrap, frame.vertical_anchor = True, MSO_ANCHOR.TOP
    lines = text.split("\n")
    for i, line in enumerate(lines):
        par = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        run = par.add_run()
        run.text = line
        _font(run, size, color, bold, lang)
    return box


def _title(slide, text: str, color: str, lang: str) -> None:
    from pptx.util import Inches, Pt

    shape = slide.shapes.title
    shape.left, shape.top, shape.width, shape.height = Inches(0.4), Inches(0.15), Inches(12.5), Inches(0.8)
    frame = shape.text_frame
    frame.word_wrap = True
    frame.text = ""
    run = frame.paragraphs[0].add_run()
    run.text = text
    _font(run, 26 if len(text) < 70 else 20, color, True, lang)
    frame.paragraphs[0].alignment = 1  # left
    frame.margin_left = Pt(0)


def _background(slide, dark: bool) -> None:
    if dark:
        from pptx.dml.color import RGBColor

        fill = slide.background.fill
        fill.solid()
        fill.fore_color.rgb = RGBColor.from_string(DARK_BG)


def _picture(slide, png: bytes, top) -> None:
    """The PNG as large as the slide allows below the title, centred, its aspect kept."""
    from PIL import Image
    from pptx.util import Emu, Inches

    w_px, h_px = Image.open(io.BytesIO(png)).size
    box_w, box_h = Inches(12.9), Inches(7.5) - top - Inches(0.15)
    scale = min(box_w / w_px, box_h / h_px)
    w, h = int(w_px * scale), int(h_px * scale)
    slide.shapes.add_picture(io.BytesIO(png), Emu((Inches(13.333) - w) // 2), top, Emu(w), Emu(h))


def _table(slide, table, top, fg: str, lang: str) -> None:
    from pptx.util import Inches, Pt

    rows = table.iloc[:TABLE_MAX_ROWS, :TABLE_MAX_COLS]
    n_rows, n_cols = len(rows) + 1, len(rows.columns)
    height = Inches(min(0.4 * n_rows, 6.0))
    shape = slide.shapes.add_table(n_rows, n_cols, Inches(0.4), top, Inches(12.5), height).table
    size = 14 if n_rows <= 10 else 11
    for c, name in enumerate(rows.columns):
        cell = shape.cell(0, c)
        cell.text = str(name)
        _font(cell.text_frame.paragraphs[0].runs[0], size, "FFFFFF", True, lang)
    for r, values in enumerate(rows.itertuples(index=False), 1):
        for c, value in enumerate(values):
            cell = shape.cell(r, c)
            cell.text = cell_text(value)
            cell.margin_top = cell.margin_bottom = Pt(2)
            for run in cell.text_frame.paragraphs[0].runs:
                _font(run, size, "111111", False, lang)
    if len(table) > TABLE_MAX_ROWS or len(table.columns) > TABLE_MAX_COLS:
        note = _("The first {rows} of {n_rows:,} rows and {cols} of {n_cols} columns; the whole table is in the "
                 "view's CSV.").format(rows=len(rows), n_rows=len(table), cols=n_cols, n_cols=len(table.columns))
        _text_box(slide, note, Inches(0.4), Inches(7.0), Inches(12.5), Inches(0.4), 12, fg, lang=lang)


def deck_figure(slide: Slide, dark: bool) -> go.Figure:
    """The slide's figure in the deck's style (white or dark slides, whatever style it was added in), with
    its link's prompt under the title, so every slide of a deck looks alike."""
    return presentation_style(slide.fig, dark=dark, prompt=slide.query().get("prompt") or None,
                              width=SLIDE["width"])  # fitted to the slide, not to the page's column it came from


def build_pptx(deck: Deck, subtitle: str = "", *, width: int = SLIDE["width"], height: int = SLIDE["height"],
               scale: float = SLIDE["scale"], lang: str = "en", progress: Progress | None = None) -> bytes:
    """The deck as a 16:9 PowerPoint file: a title slide, then one slide per figure (a PNG of
    width*scale x height*scale pixels) or table (a native table), each with its title and speaker notes
    (the notes, then the link). Slides that could not be rebuilt are left out."""
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    prs.slide_width, prs.slide_height = Inches(13.333), Inches(7.5)
    dark = deck.style == "dark"
    fg = DARK_FG if dark else LIGHT_FG
    first = prs.slides.add_slide(prs.slide_layouts[6])
    _background(first, dark)
    _text_box(first, deck.title, Inches(0.8), Inches(2.4), Inches(11.7), Inches(1.6), 40, fg, True, lang)
    _text_box(first, subtitle, Inches(0.8), Inches(4.1), Inches(11.7), Inches(1.2), 20, fg, lang=lang)
    shown = [s for s in deck.slides if not s.error and (s.fig is not None or s.table is not None)]
    for i, s in enumerate(shown):
        if progress:
            progress(i, len(shown), s.title)
        slide = prs.slides.add_slide(prs.slide_layouts[5])  # title only
        _background(slide, dark)
        _title(slide, s.title, fg, lang)
        if s.kind == "table" and s.table is not None:
            _table(slide, s.table, Inches(1.1), fg, lang)
        else:
            _picture(slide, to_png(deck_figure(s, dark), width, height, scale), Inches(1.0))
        slide.notes_slide.notes_text_frame.text = f"{s.notes}\n\n{s.link}".strip()
    if progress:
        progress(len(shown), len(shown), "")
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


# ---- the offline HTML deck -----------------------------------------------------------------------
# Markup only (the line below is marked for the catalog check); "speaker notes" is passed in translated.
_HTML = ("""<!doctype html><!-- # i18n: skip --><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{margin:0;font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;background:{bg};color:{fg}}}
section{{display:none;height:100vh;box-sizing:border-box;padding:2vh 3vw;flex-direction:column}}
section.on{{display:flex}} h1{{margin:0 0 1vh;font-size:3.2vh}} .fig{{flex:1;min-height:0}}
.fig>div{{height:100%;width:100%}}
.cover h1{{font-size:6vh;margin-top:30vh}} .cover p{{font-size:3vh}}
table{{border-collapse:collapse;font-size:2.2vh}} td,th{{border:1px solid #999;padding:.3em .6em}}
aside{{display:none;font-size:2vh;white-space:pre-wrap;border-top:1px solid #888;padding-top:1vh}}
body.notes aside{{display:block}} nav{{position:fixed;right:1vw;bottom:1vh;font-size:1.8vh;opacity:.7}}
</style></head><body>
<script>{plotly}</script>
{slides}
<nav><span id="n"></span> · ← → · N: {notes_label}</nav>
<script>
const S=[...document.querySelectorAll('section')];let i=0;
function go(k){{i=Math.max(0,Math.min(S.length-1,k));S.forEach((s,j)=>s.classList.toggle('on',j===i));
document.getElementById('n').textContent=(i+1)+' / '+S.length;
S[i].querySelectorAll('.js-plotly-plot').forEach(p=>Plotly.Plots.resize(p));location.hash=i+1}}
document.addEventListener('keydown',e=>{{if(['ArrowRight','PageDown',' '].includes(e.key))go(i+1);
else if(['ArrowLeft','PageUp'].includes(e.key))go(i-1);else if(e.key==='Home')go(0);
else if(e.key==='End')go(S.length-1);else if(e.key==='n'||e.key==='N')document.body.classList.toggle('notes')}});
go((parseInt(location.hash.slice(1))||1)-1);
</script></body></html>""")


def build_html(deck: Deck, subtitle: str = "", lang: str = "en", progress: Progress | None = None) -> bytes:
    """A self-contained HTML deck: interactive figures, plotly.js inlined once, no network; arrow keys
    move between slides, N shows the speaker notes. All text is escaped (prompts are untrusted)."""
    dark = deck.style == "dark"
    esc = html.escape
    parts = [f'<section class="cover"><h1>{esc(deck.title)}</h1><p>{esc(subtitle)}</p></section>']  # i18n: skip
    shown = [s for s in deck.slides if not s.error and (s.fig is not None or s.table is not None)]
    for i, s in enumerate(shown):
        if progress:
            progress(i, len(shown), s.title)
        if s.kind == "table" and s.table is not None:
            body = s.table.head(60).to_html(index=False, escape=True, na_rep="")
        else:
            fig = deck_figure(s, dark).update_layout(autosize=True, width=None, height=None)
            body = pio.to_html(fig, include_plotlyjs=False, full_html=False, default_width="100%",
                               default_height="100%", config={"displaylogo": False, "responsive": True})
        notes = esc(s.notes) + (f'\n<a href="{esc(s.link)}">{esc(s.link)}</a>' if s.link else "")
        parts.append(f'<section><h1>{esc(s.title)}</h1><div class="fig">{body}</div>'  # i18n: skip (markup)
                     f"<aside>{notes}</aside></section>")
    from plotly.offline import get_plotlyjs

    page = _HTML.format(lang="zh-CN" if lang != "en" else "en", title=esc(deck.title),
                        bg="#" + DARK_BG if dark else "#ffffff", fg="#" + DARK_FG if dark else "#111111",
                        plotly=get_plotlyjs(), slides="\n".join(parts), notes_label=esc(_("speaker notes")))
    return page.encode("utf-8")
