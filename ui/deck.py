"""The session's slide deck: what "Add to deck" collects on every page, and rebuilding a deck file.

The deck lives in st.session_state (it survives page changes) as a recipes.deck.Deck. A slide
keeps the figure as it was drawn (in the figure style of that moment), the link that reopens
its view (the address bar: the link mechanism, ui.url, holds every control) and notes
pre-filled with the figure's caption, the prompt and the model.

A deck file holds links and notes only. `rebuild` recomputes its figures by running each
link's page headless (Streamlit's AppTest, the way the page tests open a link) in a child
process, `python -m ui.deck`, so the server's own runtime is never touched: the figure comes
from the same page code and recipes as on screen, and a link to a model the server does not
allow, a page or figure that no longer exists, or a page that fails gives that slide a
message while the rest of the deck still builds.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from i18n import _
from recipes.deck import MAX_SLIDES, Deck, Slide, page_link, plain, rebuilt
from recipes.deck import rebuild as rebuild_slides

ROOT = Path(__file__).resolve().parent.parent
_DECK = "_deck"
REBUILD_TIMEOUT_S = 600


def deck() -> Deck:
    ss = st.session_state
    if not isinstance(ss.get(_DECK), Deck):
        ss[_DECK] = Deck(title=_("Inside GPT-2"))
    return ss[_DECK]


def current_page() -> tuple[str, str]:
    """The running page's script (relative to the app, "pages/1_Attention.py") and its address path."""
    ctx = get_script_run_ctx()
    page = ctx.pages_manager.get_pages().get(ctx.pages_manager.current_page_script_hash, {}) if ctx else {}
    script = Path(page.get("script_path") or "app.py")
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        script = Path(script.name)
    return script.as_posix(), page.get("url_pathname", "")


def base_url() -> str:
    """The app's address as the browser sees it (scheme, host, port and any base path)."""
    from urllib.parse import urlsplit

    url = urlsplit(getattr(st.context, "url", "") or "")
    base = f"{url.scheme}://{url.netloc}" if url.netloc else ""
    path = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{base}/{path}" if path else base


def default_notes(caption: str) -> str:
    ss = st.session_state
    lines = [plain(caption)] if caption else []
    lines += [_("Prompt: {prompt}").format(prompt=ss.get("prompt", "")),
              _("Model: {model}").format(model=ss.get("_model_label", ""))]
    return "\n".join(lines)


def add(kind: str, key: str, title: str, content, caption: str, script: str, url_path: str) -> None:
    """A click on "Add to deck" (a callback: it runs before the next run, while the address bar still
    holds the whole link of the run that drew the figure). Callbacks run before the page sets its
    language, so the notes and the message are made in the session's language here."""
    from i18n import LANGUAGES, use_language

    lang = st.session_state.get("lang")
    with use_language(lang if lang in LANGUAGES else "en"):
        _add(kind, key, title, content, caption, script, url_path)


def _add(kind: str, key: str, title: str, content, caption: str, script: str, url_path: str) -> None:
    if len(deck().slides) >= MAX_SLIDES:  # each slide keeps its figure in this session's memory
        st.toast(_("The deck holds at most {max} slides; remove some on the Deck page to add more.").format(
            max=MAX_SLIDES), icon=":material/block:")
        return
    link = page_link(base_url(), url_path, {k: st.query_params[k] for k in st.query_params})
    slide = Slide(kind, script, link, key, plain(title) or key, default_notes(caption))
    if kind == "table":
        slide.table = content
    else:
        slide.fig = content
    deck().slides.append(slide)
    st.toast(_("Added to the slide deck (now {n}).").format(n=len(deck().slides)), icon=":material/slideshow:")


def move(i: int, step: int) -> None:
    slides = deck().slides
    j = i + step
    if 0 <= i < len(slides) and 0 <= j < len(slides):
        slides[i], slides[j] = slides[j], slides[i]


def remove(i: int) -> None:
    slides = deck().slides
    if 0 <= i < len(slides):
        del slides[i]


# ---- rebuilding a deck file's figures from its links ----------------------------------------------
def rebuild(slides: list[Slide], progress: Callable[[int, int, str], None] | None = None) -> None:
    """Fill each slide's figure (or table) from its link, in the page's language (recipes.deck.rebuild runs
    `python -m ui.deck` below); a slide that cannot be rebuilt gets `error`."""
    from i18n import language

    rebuild_slides(slides, language(), progress)


def _run_link(page: str, query: dict):
    """The app opened on `page` at `query`, as a browser opening the link does (AppTest, as the page tests)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=REBUILD_TIMEOUT_S)
    at.query_params.update(query)
    if page != "app.py":  # straight to the page (it sets up the session itself), as a link to it opens
        at.switch_page(page)
    return at.run()


def _state(at, key: str):
    try:
        return at.session_state[key]
    except KeyError:
        return None


def _rebuild_child() -> None:
    """`python -m ui.deck`: read {"lang", "slides"} on stdin, print one JSON line per slide on stdout."""
    from i18n import set_language

    job = json.load(sys.stdin)
    set_language(job.get("lang", "en"))
    slides = [Slide(**{k: s.get(k, "") for k in ("kind", "page", "link", "key", "title", "notes")})
              for s in job["slides"]]
    runs: dict = {}
    for i, s in enumerate(slides):
        out = {"i": i}
        pages = {p.relative_to(ROOT).as_posix() for p in [ROOT / "app.py", *ROOT.glob("pages/*.py")]}
        link_id = (s.page, s.link)
        if s.page not in pages:
            out["error"] = _("Slide {n}: the page {page} no longer exists in this app.").format(n=i + 1, page=s.page)
        else:
            if link_id not in runs:
                try:
                    runs[link_id] = _run_link(s.page, s.query())
                except Exception as e:  # a page that fails on this link: this slide says so, the rest build
                    runs[link_id] = e
            out.update(_take(runs[link_id], s, i + 1))
        print(json.dumps(out), flush=True)


def _take(at, s: Slide, n: int) -> dict:
    if isinstance(at, Exception) or at.exception:
        return {"error": _("Slide {n}: its page failed on this link, so it was left out.").format(n=n)}
    refused = _state(at, "_link_model_refused")
    if refused:
        return {"error": _("Slide {n}: its link asks for the model {model}, which this server does not load from "
                           "links, so it was left out.").format(n=n, model=refused)}
    if _state(at, "_model_fallback"):
        return {"error": _("Slide {n}: its model could not be loaded here, so it was left out.").format(n=n)}
    reg = _state(at, "_page_exports") or {}
    found = reg.get("by_key", {}).get(s.key)
    if found is None:
        return {"error": _("Slide {n}: its page no longer shows the view “{title}” at this link (it may need a "
                           "click to compute; open the link), so it was left out.").format(n=n, title=s.title)}
    kind, content, _caption = found
    return rebuilt(kind, content)


if __name__ == "__main__":
    _rebuild_child()


# ---- the Deck page's parts ------------------------------------------------------------------------
def _edited(uid: str, field_: str) -> None:
    for s in deck().slides:
        if s.uid == uid:
            setattr(s, field_, st.session_state[f"deck_{field_}_{uid}"])


def _deck_title_edited() -> None:
    deck().title = st.session_state["deck_title"]


def editor() -> None:
    """The deck's title, then each slide: its figure, editable title and notes, move, remove, its link."""
    d, ss = deck(), st.session_state
    ss["deck_title"] = d.title
    st.text_input(_("Deck title"), key="deck_title", on_change=_deck_title_edited, max_chars=200)
    for i, s in enumerate(d.slides):
        with st.container(border=True):
            left, right = st.columns([3, 2])
            with left:
                if s.kind == "table":
                    st.dataframe(s.table, hide_index=True, height=260, key=f"deck_table_{s.uid}")
                else:
                    st.plotly_chart(s.fig, key=f"deck_fig_{s.uid}", config={"displaylogo": False,
                                                                             "displayModeBar": False})
            with right:
                for name, widget in (("title", st.text_input), ("notes", st.text_area)):
                    ss[f"deck_{name}_{s.uid}"] = getattr(s, name)
                label = _("Slide {n}: title").format(n=i + 1)
                widget_kw = dict(on_change=_edited, max_chars=20_000)
                st.text_input(label, key=f"deck_title_{s.uid}", args=(s.uid, "title"), **widget_kw)
                st.text_area(_("Speaker notes"), key=f"deck_notes_{s.uid}", args=(s.uid, "notes"), height=150,
                             **widget_kw)
                with st.container(horizontal=True, gap="small"):
                    st.button(_("Up"), key=f"deck_up_{s.uid}", icon=":material/arrow_upward:", on_click=move,
                              args=(i, -1), disabled=i == 0)
                    st.button(_("Down"), key=f"deck_down_{s.uid}", icon=":material/arrow_downward:", on_click=move,
                              args=(i, 1), disabled=i == len(d.slides) - 1)
                    st.button(_("Remove"), key=f"deck_remove_{s.uid}", icon=":material/delete:", on_click=remove,
                              args=(i,))
                    if s.link.startswith(("http://", "https://", "/")):
                        st.link_button(_("Open this view"), s.link, icon=":material/open_in_new:")


def upload() -> None:
    """Open a deck file: read it, rebuild every figure from its link with progress, and say per slide what
    could not be rebuilt; the rest of the deck builds."""
    from recipes.deck import DeckFileError, from_json

    file = st.file_uploader(_("Open a deck file (.json)"), type=["json"], key="deck_upload",
                            help=_("A deck file holds the links and the notes; every figure is recomputed from "
                                   "its link, on this server."))
    for problem in st.session_state.get("_deck_problems", []):
        st.warning(problem)
    if file is None:
        return
    try:
        loaded, problems = from_json(file.getvalue())
    except DeckFileError as e:
        st.error(str(e))
        return
    if st.button(_("Rebuild {n} slides from this file (replaces the deck)").format(n=len(loaded.slides)),
                 key="deck_rebuild", icon=":material/refresh:", type="primary"):
        bar = st.progress(0.0, text=_("Rebuilding the figures from their links…"))
        rebuild(loaded.slides, lambda done, total, title: bar.progress(
            done / max(total, 1), text=_("Rebuilt {done} of {total}: {title}").format(done=done, total=total,
                                                                                     title=title)))
        bar.empty()
        problems += [s.error for s in loaded.slides if s.error]
        loaded.slides = [s for s in loaded.slides if not s.error]
        st.session_state[_DECK] = loaded
        st.session_state["_deck_problems"] = problems
        st.rerun()


def subtitle(d: Deck) -> str:
    """The title slide's second line: the models the slides come from, and today's date."""
    import datetime

    from core.model import display_name

    models = dict.fromkeys(display_name(s.query().get("model", "")) for s in d.slides if s.query().get("model"))
    return " · ".join([", ".join(models), datetime.date.today().isoformat()]).strip(" ·")


def downloads() -> None:
    """The deck as PowerPoint (built with progress: one PNG per figure), an offline HTML deck, a deck file."""
    from i18n import language
    from recipes.deck import build_html, build_pptx, to_json
    from viz.export import safe_filename, static_export

    d, ss = deck(), st.session_state
    name, lang = safe_filename(d.title or "deck") + "_deck", language()
    w, h, scale = int(ss.get("png_width", 1600)), int(ss.get("png_height", 900)), float(ss.get("png_scale", 2.0))
    d.style = ss.get("style", "slides") if ss.get("style") != "normal" else "slides"
    sig = (d.title, d.style, w, h, scale, lang, tuple((s.uid, s.title, s.notes) for s in d.slides))
    c1, c2, c3 = st.columns(3)
    with c1:
        if not static_export().available:
            st.caption(static_export().message)
        elif st.button(_("Build the PowerPoint (.pptx)"), key="deck_build_pptx", icon=":material/slideshow:",
                       type="primary"):
            bar = st.progress(0.0, text=_("Drawing the slides…"))
            pptx = build_pptx(d, subtitle(d), width=w, height=h, scale=scale, lang=lang, progress=lambda done, total,
                              title: bar.progress(done / max(total, 1), text=_("Slide {done} of {total}: {title}")
                                                  .format(done=done + 1 if done < total else done, total=total,
                                                          title=title)))
            bar.empty()
            ss["_deck_pptx"] = (sig, pptx)
        built = ss.get("_deck_pptx")
        if built and built[0] == sig:
            st.download_button(_("Download the PowerPoint"), built[1], key="deck_pptx", file_name=f"{name}.pptx",
                               mime="application/vnd.openxmlformats-officedocument.presentationml.presentation",
                               on_click="ignore", icon=":material/download:")
        st.caption(_("16:9, one slide per figure as a {w:,}×{h:,} PNG (the sidebar's image size), tables as "
                     "PowerPoint tables, notes and links as speaker notes.").format(w=int(w * scale),
                                                                                     h=int(h * scale)))
    c2.download_button(_("Offline HTML deck"), lambda: build_html(d, subtitle(d), lang), key="deck_html",
                       file_name=f"{name}.html", mime="text/html", on_click="ignore", icon=":material/web:")
    c2.caption(_("Interactive figures in one file that needs no network: arrow keys move, N shows the notes."))
    c3.download_button(_("Deck file (.json)"), lambda: to_json(d), key="deck_json", file_name=f"{name}.json",
                       mime="application/json", on_click="ignore", icon=":material/data_object:")
    c3.caption(_("The links and the notes: open it on the Deck page to rebuild every figure."))
