"""Showing figures and tables with export built in: slide style, per-figure downloads, ZIP of a page.

Every page draws its figures through `show_figure` and its tables through `show_table`;
both register what they drew so the sidebar's "Export all" button can package the page.
Downloads are computed only when clicked (deferred `st.download_button` data). Beside each
Download menu, "Add to deck" puts the figure (or table) on the session's slide deck (ui.deck),
with the link that reopens its view; the sidebar counts the deck's slides and opens the Deck page.
"""
from __future__ import annotations

import html
import re
import unicodedata

import streamlit as st

import i18n
from i18n import N_, _, language
from ui import deck as slide_deck
from ui.controls import in_page_language
from ui.state import persisted
from viz import fonts
from viz.export import (
    export_zip,
    presentation_style,
    safe_filename,
    static_export,
    table_to_csv,
    to_csv,
    to_html,
    to_png,
    to_svg,
)

STYLES = {"normal": N_("Screen"), "slides": N_("Slides (white)"), "dark": N_("Slides (dark)")}  # shown translated
_REGISTRY = "_page_exports"
DECK_PAGE = "pages/10_Deck.py"


def start_page(view: str) -> None:
    """Begin a page run: forget the previous run's figures; remember the page's name (English: it
    names the ZIP, and the ZIP's index shows it translated)."""
    st.session_state[_REGISTRY] = {"view": view, "figures": {}, "tables": {}, "by_key": {}}


def _registry() -> dict:
    """What this page run drew: figures and tables by file name (the ZIP), and by key (kind, figure or
    table, caption), which "Add to deck" and a deck's rebuild read."""
    reg = st.session_state.setdefault(_REGISTRY, {"view": "figure", "figures": {}, "tables": {}})
    reg.setdefault("by_key", {})
    return reg


def _context() -> tuple[str, str]:
    ss = st.session_state
    return ss.get("_model_label", "model"), ss.get("prompt", "")


def export_settings() -> None:
    """Sidebar controls: figure style and exported image size (kept across pages)."""
    st.radio(_("Figure style"), list(STYLES), format_func=in_page_language(lambda style: _(STYLES[style])),
             horizontal=True,
             **persisted("style", "normal"),
             help=_("Slides: white or dark background, large fonts and thick lines, titles with the prompt."))
    with st.expander(_("Image export size")):
        c1, c2, c3 = st.columns(3)
        c1.number_input(_("Width"), 200, 8000, step=100, **persisted("png_width", 1600))
        c2.number_input(_("Height"), 200, 8000, step=100, **persisted("png_height", 900))
        c3.number_input(_("Scale"), 0.5, 6.0, step=0.5, **persisted("png_scale", 2.0))
        st.caption(_("PNG pixels = size × scale. The camera icon on each figure uses the same size."))
    if language() != "en" and fonts.cjk_font_missing():
        st.warning(_("This server has no Chinese font, so Chinese text in exported PNG figures would come out as "
                     "boxes. To fix it, install one and restart the app: {fix}").format(fix=fonts.CJK_FONT_FIX))


def export_all_button() -> None:
    """Sidebar button: a ZIP (SVG + PNG + HTML + CSV and an index) of this page's figures.
    Drawn before the page's figures exist; the ZIP is built when clicked, from what the
    page drew in this run. It may be built outside the page's run: in the page's language, kept here."""
    reg = _registry()
    model, prompt = _context()
    lang, view = i18n.language(), reg["view"]  # the view: the page's English title

    def build() -> bytes:
        with i18n.use_language(lang):
            title = _("Inside GPT-2 · {view} · {model}\nPrompt: {prompt}").format(view=_(view), model=model,
                                                                                  prompt=prompt)
            return export_zip(dict(reg["figures"]), dict(reg["tables"]), title=title)

    st.download_button(_("Export all figures on this page (ZIP)"), build, key="sidebar_export_all",
                       file_name=safe_filename(view, model, prompt=prompt, ext="zip"),
                       mime="application/zip", on_click="ignore", icon=":material/folder_zip:", width="stretch")
    if not static_export().available:
        st.caption(static_export().message)
    deck_counter()


def deck_counter() -> None:
    """Sidebar: how many slides the session's deck holds, and the way to the Deck page."""
    n = len(slide_deck.deck().slides)
    label = _("Slide deck ({n})").format(n=n)
    if (slide_deck.ROOT / DECK_PAGE).exists():
        st.page_link(DECK_PAGE, label=label, icon=":material/slideshow:")
    else:
        st.caption(label)


def _add_to_deck(kind: str, key: str, title: str, content, script: str, url_path: str) -> None:
    found = _registry()["by_key"].get(key)
    caption = found[2] if found else ""
    slide_deck.add(kind, key, title, content, caption, script, url_path)


def _deck_button(kind: str, key: str, title: str, content) -> None:
    script, url_path = slide_deck.current_page()
    st.button(_("Add to deck"), key=f"{key}_deck", icon=":material/add_to_queue:", on_click=_add_to_deck,
              args=(kind, key, title, content, script, url_path),
              help=_("Put this on the session's slide deck, with a link that reopens this exact view. "
                     "The Deck page (sidebar) downloads it as PowerPoint or an offline HTML deck."))


def styled(fig):
    """`fig` in the style chosen in the sidebar (slides styles add the prompt to the title)."""
    style = st.session_state.get("style", "normal")
    if style == "normal":
        return fig
    return presentation_style(fig, dark=style == "dark", prompt=_context()[1])


def figure_name(fig, key: str) -> str:
    """What a figure's files are called: its title (which names the view, the model and the
    layer or head) without markup or the quoted prompt, which safe_filename adds as a slug."""
    title = html.unescape(re.sub(r"<[^>]+>", " ", fig.layout.title.text or ""))
    title = re.sub(r"“[^”]*”", " ", title).strip(" ·")
    return title or key


def _unique(taken: dict, name: str, key: str, prompt: str) -> str:
    """A file name for `name` not yet `taken` in this page run. A title whose words the ASCII
    file name drops (Chinese) adds the figure's key, so every figure keeps a name of its own
    and the ZIP holds them all."""
    base = safe_filename(name, prompt=prompt)
    if base in taken or any(ch.isalpha() and not unicodedata.normalize("NFKD", ch).isascii()
                              for ch in re.sub(r"“[^”]*”", "", name)):
        base = safe_filename(name, key, prompt=prompt)
    n = 2
    while base in taken:
        base, n = safe_filename(name, key, str(n), prompt=prompt), n + 1
    return base


def show_figure(fig, key: str, name: str | None = None, **chart_kwargs) -> None:
    """Draw a Plotly figure full width, with downloads (PNG, SVG, HTML, CSV) under it.

    `name` (default: the figure's title, e.g. "tiny · layer 1, head 0: attention pattern")
    names the exported files, followed by the prompt's first words and a hash. Extra
    keyword arguments go to st.plotly_chart (on_select, selection_mode). Pages draw every
    figure through here (a test checks they never call st.plotly_chart themselves), so the
    page's ZIP holds exactly the figures on screen."""
    ss = st.session_state
    model, prompt = _context()
    base = _unique(_registry()["figures"], name or figure_name(fig, key), key, prompt)
    fig = styled(fig)
    _registry()["figures"][base] = fig
    _registry()["by_key"][key] = ("figure", fig, "")
    w, h, scale = int(ss.get("png_width", 1600)), int(ss.get("png_height", 900)), float(ss.get("png_scale", 2.0))
    # Slides styles set every colour themselves: Streamlit's chart theme would put its own (dark) legend
    # and font colours over them, dark on black on Slides (dark) (issue 25 item 4).
    theme = "streamlit" if ss.get("style", "normal") == "normal" else None
    st.plotly_chart(fig, key=key, theme=theme, config={"displaylogo": False, "toImageButtonOptions": {
        "format": "png", "width": w, "height": h, "scale": scale, "filename": base}}, **chart_kwargs)
    _download_row(fig, key, base, w, h, scale)


def _download_row(fig, key: str, base: str, w: int, h: int, scale: float) -> None:
    static = static_export()
    row = st.container(horizontal=True, gap="small")
    with row:
        menu = st.popover(_("Download"), icon=":material/download:")
        _deck_button("figure", key, figure_name(fig, key), fig)
    with menu:
        st.caption(f"{base}.*")
        if static.available:
            st.download_button(f"PNG {w * scale:,.0f}×{h * scale:,.0f}", lambda: to_png(fig, w, h, scale),
                               key=f"{key}_png", file_name=f"{base}.png", mime="image/png", on_click="ignore")
            st.download_button("SVG", lambda: to_svg(fig, w, h), key=f"{key}_svg", file_name=f"{base}.svg",
                               mime="image/svg+xml", on_click="ignore")
        else:
            st.caption(static.message)
        st.download_button(_("Interactive HTML"), lambda: to_html(fig), key=f"{key}_html", file_name=f"{base}.html",
                           mime="text/html", on_click="ignore")
        st.download_button(_("Data (CSV)"), lambda: to_csv(fig), key=f"{key}_csv", file_name=f"{base}.csv",
                           mime="text/csv", on_click="ignore")


def show_table(table, key: str, name: str | None = None, formats: dict | None = None, **dataframe_kwargs) -> None:
    """st.dataframe (text only, never Markdown) plus a CSV download; registered for the ZIP.
    Pages draw every table through here (a test checks they never call st.dataframe).
    `formats` maps a column to a function that writes its values on screen (say,
    viz.common.format_prob for probabilities); the CSV keeps the numbers."""
    model, prompt = _context()
    base = _unique(_registry()["tables"], f"{name or key} {model}", key, prompt)
    _registry()["tables"][base] = table
    _registry()["by_key"][key] = ("table", table, "")
    st.dataframe(table.style.format(formats) if formats else table, key=key, **dataframe_kwargs)
    with st.container(horizontal=True, gap="small"):
        st.download_button(_("Table as CSV"), lambda: table_to_csv(table), key=f"{key}_csv",
                           file_name=f"{base}.csv", mime="text/csv", on_click="ignore", icon=":material/download:")
        _deck_button("table", key, f"{_(_registry()['view'])} · {name or key}", table)


def show(view_or_items) -> None:
    """Draw what a recipe returned (recipes.View or a list of its items), in order."""
    from recipes import Figure, Metric, Row, Table, Text, View

    items = view_or_items.items if isinstance(view_or_items, View) else view_or_items
    last = None  # the figure or table a caption right after it describes (a slide's notes start with it)
    for item in items:
        if isinstance(item, list):
            show(item)
        elif isinstance(item, Figure):
            extra = {"on_select": item.on_select, "selection_mode": item.selection_mode} if item.on_select else {}
            show_figure(item.fig, key=item.key, name=item.name, **extra)
            last = item.key
        elif isinstance(item, Table):
            extra = {"height": item.height} if item.height else {}
            show_table(item.data, item.key, name=item.name, formats=item.formats, hide_index=True, width="stretch",
                       **extra)
            last = item.key
        elif isinstance(item, Text):
            found = _registry()["by_key"].get(last)
            if found and item.kind == "caption" and not found[2]:
                _registry()["by_key"][last] = (*found[:2], item.text)
            last = None
            if item.kind == "code":
                st.code(item.text, language=None, wrap_lines=True)
            else:
                getattr(st, item.kind)(item.text)
        elif isinstance(item, Metric):
            st.metric(item.label, item.value, help=item.help)
        elif isinstance(item, Row):
            for column, content in zip(st.columns(list(item.widths or [1] * len(item.columns))), item.columns):
                with column:
                    show(content if isinstance(content, list) else [content])
        else:
            raise TypeError(f"cannot show {type(item).__name__}")  # i18n: skip
