"""The slide deck (issue 26): Add to deck on the pages, the Deck page, the .pptx and HTML decks, the deck
file's round trip (figures recomputed from links), bad decks, and the batch exporter's --deck.

PNGs are drawn small here (kaleido is slow); the pixel size is what is checked, not the look."""
from __future__ import annotations

import io
import json
import struct
import zipfile
from urllib.parse import urlsplit

import pandas as pd
import plotly.graph_objects as go
import pytest
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE

from recipes.deck import Deck, DeckFileError, Slide, build_html, build_pptx, cell_text, from_json, rebuild, to_json
from tests.apptest import ATTENTION, NEXT_TOKEN, WEIGHTS, open_page
from viz.export import export_zip, plain_title, slug, static_export

DECK_PAGE = "pages/10_Deck.py"
needs_png = pytest.mark.skipif(not static_export().available, reason="PNG export needs Chromium")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def heatmap(title: str) -> go.Figure:
    return go.Figure(go.Heatmap(z=[[0.1, 0.9], [0.5, 0.5]])).update_layout(title=title)


def small_deck() -> Deck:
    table = pd.DataFrame({"rank": [1, 2, 3], "token": ["␣the", "你好", "<b>x</b>"], "probability": [0.5, 0.25, 0.125]})
    return Deck("A talk · 注意力", [
        Slide("figure", "pages/1_Attention.py", "http://h/Attention?attn_layer=1&model=gpt2", "attn_head_chart",
              "Layer 1, head 0 · 第 1 层", "What the head reads.\nPrompt: The cat", fig=heatmap("L1 <br><sup>x</sup>")),
        Slide("table", "app.py", "http://h/?next_k=3&model=gpt2", "next_topk_table", "Top 3", "The likeliest.",
              table=table),
        Slide("figure", "app.py", "http://h/?model=gpt2", "next_rank", "Rank plot", "", fig=heatmap("rank")),
    ])


def pptx_slides(data: bytes):
    return list(Presentation(io.BytesIO(data)).slides)


def picture_of(slide):
    pictures = [s for s in slide.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE]
    assert len(pictures) == 1
    return pictures[0].image


# ---- the .pptx, the HTML deck and the deck file, from slides in hand ----------------------------------
@needs_png
def test_the_pptx_has_a_title_slide_then_one_slide_per_figure_or_table():
    deck = small_deck()
    data = build_pptx(deck, "gpt2 · 2026-12-05", width=480, height=270, scale=1)
    slides = pptx_slides(data)
    assert len(slides) == 1 + len(deck.slides)
    cover = " ".join(s.text_frame.text for s in slides[0].shapes if s.has_text_frame)
    assert deck.title in cover and "gpt2 · 2026-12-05" in cover
    for slide, wanted in zip(slides[1:], deck.slides):
        assert slide.shapes.title.text == wanted.title
        notes = slide.notes_slide.notes_text_frame.text
        assert wanted.link in notes and wanted.notes in notes
    for i in (1, 3):
        image = picture_of(slides[i])
        assert image.content_type == "image/png" and png_size(image.blob) == (480, 270)
    tables = [s for s in slides[2].shapes if s.has_table]
    assert len(tables) == 1, "a table is a PowerPoint table, not a picture"
    cells = tables[0].table
    frame = deck.slides[1].table
    assert [cells.cell(0, c).text for c in range(len(frame.columns))] == list(frame.columns)
    for r, row in enumerate(frame.itertuples(index=False), 1):
        assert [cells.cell(r, c).text for c in range(len(row))] == [cell_text(v) for v in row]
    assert cells.cell(3, 1).text == "<b>x</b>", "token text is written as it is"


@needs_png
def test_pptx_text_names_a_cjk_font_and_dark_decks_have_dark_slides():
    deck = small_deck()
    deck.style = "dark"
    data = build_pptx(deck, width=480, height=270, scale=0.5, lang="zh")
    xml = zipfile.ZipFile(io.BytesIO(data)).read("ppt/slides/slide2.xml").decode()
    assert 'ea typeface="Microsoft YaHei"' in xml and 'lang="zh-CN"' in xml
    assert "111418" in xml, "the dark style's background"


def test_a_big_table_shows_its_first_rows_and_says_so():
    table = pd.DataFrame({"position": range(40), "token": [f"t{i}" for i in range(40)]})
    deck = Deck("T", [Slide("table", "app.py", "/?x=1", "k", "Tokens", table=table)])
    slide = pptx_slides(build_pptx(deck))[1]
    grid = [s for s in slide.shapes if s.has_table][0].table
    assert len(grid.rows) <= 17
    assert any("40" in s.text_frame.text for s in slide.shapes if s.has_text_frame and s != slide.shapes.title)


def test_the_html_deck_is_offline_escaped_and_has_every_slide():
    deck = small_deck()
    deck.slides[0].title = "<script>alert(1)</script>"
    page = build_html(deck, "sub").decode()
    assert page.count("<section") == 1 + len(deck.slides)
    assert page.count("plotly.js v") <= 2 and "cdn.plot.ly" not in page.replace("https://cdn.plot.ly", "")
    assert "<script src=" not in page and "<script>alert(1)" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "ArrowRight" in page


def test_the_deck_file_holds_links_and_notes_and_reads_back():
    deck = small_deck()
    raw = to_json(deck)
    assert len(raw) < 3000 and b"Heatmap" not in raw and b"data" not in raw.replace(b"\"", b"")[:0]
    again, problems = from_json(raw)
    assert not problems and again.title == deck.title
    assert [s.record() for s in again.slides] == [s.record() for s in deck.slides]
    assert all(s.fig is None and s.table is None for s in again.slides)


@pytest.mark.parametrize("raw, says", [
    (b"\x89PNG not json", "not JSON"), (b"[1, 2]", "no list of slides"), (b"[" * 100_000, "not JSON"),
    (b"x" * 3_000_000, "bytes"),
])
def test_a_file_that_is_not_a_deck_says_so(raw, says):
    with pytest.raises(DeckFileError, match=says):
        from_json(raw)


def test_a_slide_missing_its_link_is_left_out_with_a_message():
    raw = json.dumps({"slides": [{"page": "app.py", "link": "/?a=1", "key": "k", "title": "ok"}, {"title": "bad"},
                                 "not a slide"]})
    deck, problems = from_json(raw)
    assert [s.title for s in deck.slides] == ["ok"]
    assert len(problems) == 2 and problems[0].startswith("Slide 2")


# ---- the ZIP export (issue 25, item 14) ---------------------------------------------------------------
def test_the_zip_index_has_no_markup_and_dashes_keep_their_numbers():
    fig = heatmap("Which parts matter<br><sup>Δ ln p · “the cat”</sup>")
    index = zipfile.ZipFile(io.BytesIO(export_zip({"scan": fig}, static=False))).read("index.txt").decode()
    assert "<br>" not in index and "<sup>" not in index and "Which parts matter · Δ ln p" in index
    assert plain_title("a &lt;b&gt;<br>c") == "a <b> · c"
    assert slug("mini-gpt2-kjv 层 0–5") == "mini-gpt2-kjv-0-5"


# ---- in the app: Add to deck, the Deck page, the link round trip ----------------------------------------
def collect(prompt: str = "the cat sat on the mat and the cat"):
    """Figures and a table added from three pages, as a person would."""
    at = open_page(ATTENTION, prompt, query={"attn_view": "One head", "attn_layer": "1", "attn_head": "1"})
    at.button(key="attn_head_chart_deck").click().run()
    at.switch_page(NEXT_TOKEN).run()
    at.button(key="next_topk_table_deck").click().run()
    at.button(key="next_rank_deck").click().run()
    at.switch_page(WEIGHTS).run()
    at.button(key=next(b.key for b in at.button if b.key and b.key.endswith("_deck"))).click().run()
    assert not at.exception, at.exception
    return at


def test_add_to_deck_on_three_pages_then_edit_and_reorder_on_the_deck_page(tiny_env):
    at = collect()
    at.switch_page(DECK_PAGE).run()
    assert not at.exception, at.exception
    deck = at.session_state["_deck"]
    assert [s.key for s in deck.slides][:3] == ["attn_head_chart", "next_topk_table", "next_rank"]
    assert any("Slide deck (4)" in p.label for p in at.sidebar.get("page_link"))
    first = deck.slides[0]
    query = first.query()
    assert urlsplit(first.link).path == "/Attention" and query["attn_layer"] == "1" and query["attn_head"] == "1"
    assert "the cat sat" in first.notes and "tiny" in first.notes
    assert deck.slides[1].table is not None and deck.slides[2].fig is not None
    at.text_area(key=f"deck_notes_{first.uid}").input("My own note").run()
    at.button(key=f"deck_down_{first.uid}").click().run()
    at.button(key=f"deck_remove_{deck.slides[3].uid}").click().run()
    deck = at.session_state["_deck"]
    assert [s.key for s in deck.slides] == ["next_topk_table", "attn_head_chart", "next_rank"]
    assert deck.slides[1].notes == "My own note"
    assert not at.exception, at.exception


def test_a_full_deck_refuses_another_slide_and_says_so(tiny_env):
    """Each slide keeps its figure in the session's memory: a deck stops at MAX_SLIDES, with a message."""
    from recipes.deck import MAX_SLIDES

    at = open_page(NEXT_TOKEN, "the cat sat on the mat")
    full = small_deck()
    full.slides = [Slide("figure", "app.py", "http://h/?model=gpt2", f"k{i}", f"slide {i}", fig=heatmap("x"))
                   for i in range(MAX_SLIDES)]
    at.session_state["_deck"] = full
    at.button(key="next_rank_deck").click().run()
    assert not at.exception, at.exception
    assert len(at.session_state["_deck"].slides) == MAX_SLIDES
    assert any(f"at most {MAX_SLIDES} slides" in t.value for t in at.toast), [t.value for t in at.toast]
    at.session_state["_deck"].slides.pop()
    at.button(key="next_rank_deck").click().run()
    assert at.session_state["_deck"].slides[-1].key == "next_rank"


@needs_png
def test_a_deck_file_rebuilds_the_same_deck_in_a_fresh_session_and_its_links_reopen_their_views(tiny_env):
    at = collect()
    deck = at.session_state["_deck"]
    good = len(deck.slides)
    raw = to_json(deck)
    fresh, _ = from_json(raw)
    bad = [json.loads(raw)["slides"][0] for _ in range(3)]
    bad[0]["page"] = "pages/99_Gone.py"
    bad[1]["key"] = "no_such_chart"
    bad[2]["link"] = bad[2]["link"].replace("model=tiny", "model=someone%2Fsomething")
    extra, _ = from_json(json.dumps({"slides": bad}))
    fresh.slides += extra.slides
    seen = []
    rebuild(fresh.slides, progress=lambda done, total, title: seen.append((done, total)))
    assert seen[-1] == (len(fresh.slides), len(fresh.slides))
    assert [bool(s.error) for s in fresh.slides] == [False] * good + [True] * 3
    assert "no longer exists" in fresh.slides[good].error and "no longer shows" in fresh.slides[good + 1].error
    assert "does not load" in fresh.slides[good + 2].error
    for old, new in zip(deck.slides, fresh.slides):
        assert new.title == old.title
        if old.kind == "table":
            pd.testing.assert_frame_equal(new.table.reset_index(drop=True), old.table.reset_index(drop=True),
                                          check_dtype=False)
        else:
            assert new.fig.layout.title.text == old.fig.layout.title.text
    first, second = (pptx_slides(build_pptx(d, width=480, height=300, scale=0.5)) for d in (deck, fresh))
    assert len(second) == len(first) == 1 + good, "the bad slides are left out, the rest built"
    for a, b in zip(first[1:], second[1:]):
        assert a.shapes.title.text == b.shapes.title.text
        if any(s.shape_type == MSO_SHAPE_TYPE.PICTURE for s in a.shapes):
            assert png_size(picture_of(a).blob) == png_size(picture_of(b).blob) == (240, 150)
    for slide in deck.slides:  # the link round trip: the link alone reopens the view with the same figure
        page = slide.page if slide.page != "app.py" else NEXT_TOKEN
        reopened = open_page(page, query=slide.query())
        kind, content, _caption = reopened.session_state["_page_exports"]["by_key"][slide.key]
        assert kind == slide.kind
        if kind == "figure":
            assert content.layout.title.text == slide.fig.layout.title.text


@needs_png
def test_the_batch_exporter_builds_a_deck_file(tiny_env, tmp_path, capsys):
    from recipes.export import main

    at = open_page(NEXT_TOKEN, "one two three four")
    at.button(key="next_rank_deck").click().run()
    deck = at.session_state["_deck"]
    deck.slides.append(Slide("figure", "pages/99_Gone.py", "/Gone?model=tiny", "x", "Gone"))
    (tmp_path / "talk.json").write_bytes(to_json(deck))
    assert main(["--deck", str(tmp_path / "talk.json"), "--out", str(tmp_path / "talk.pptx")]) == 0
    err = capsys.readouterr().err
    assert "no longer exists" in err and "[2/2]" in err
    slides = pptx_slides((tmp_path / "talk.pptx").read_bytes())
    assert len(slides) == 2 and slides[1].shapes.title.text == deck.slides[0].title
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(SystemExit) as e:
        main(["--deck", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.pptx")])
    assert e.value.code == 2 and "not JSON" in capsys.readouterr().err


# ---- in a real browser: three pages, the Deck page, both downloads, the HTML deck offline -------------
@pytest.fixture(scope="module")
def deck_server(tiny_model_dir, tmp_path_factory):
    from tests import test_e2e_browser as e2e  # skips when there is no Chromium

    env = {**__import__("os").environ, "GPT2VIZ_MODEL": str(tiny_model_dir), "GPT2VIZ_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1"}
    yield from e2e._serve(env, tmp_path_factory.mktemp("deck-streamlit") / "server.log")


def _wait_drawn(page) -> None:
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=180_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
    page.wait_for_timeout(800)


def _go(page, label: str) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=label).click()
    _wait_drawn(page)


@needs_png
def test_in_the_browser_collect_reorder_annotate_and_download_both_decks(deck_server, tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.test_e2e_browser import CHROMIUM, SHOTS
    from viz.export import CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
        page.goto(f"{deck_server}/Attention?attn_view=One+head&attn_layer=1&prompt=the+cat+sat+on+the+mat")
        _wait_drawn(page)
        page.get_by_role("button", name="Add to deck").first.click()
        page.wait_for_timeout(1500)
        _go(page, "Next token")
        page.get_by_role("button", name="Add to deck").nth(1).click()
        page.wait_for_timeout(1500)
        _go(page, "Weights")
        page.get_by_role("button", name="Add to deck").first.click()
        page.wait_for_timeout(1500)
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Slide deck (3)").click()
        page.wait_for_selector("text=Speaker notes", timeout=120_000)
        _wait_drawn(page)
        page.get_by_role("button", name="Down").first.click()
        page.wait_for_timeout(1500)
        notes = page.get_by_label("Speaker notes").first
        notes.fill("Say: this head looks one token back.")
        notes.press("Tab")
        page.wait_for_timeout(1500)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "deck_page.png"), full_page=True)
        with page.expect_download(timeout=120_000) as html_download:
            page.get_by_role("button", name="Offline HTML deck").click()
        html_path = tmp_path / "deck.html"
        html_download.value.save_as(html_path)
        page.get_by_role("button", name="Build the PowerPoint (.pptx)").click()
        with page.expect_download(timeout=300_000) as pptx_download:
            page.get_by_role("button", name="Download the PowerPoint").click(timeout=300_000)
        pptx_path = tmp_path / "deck.pptx"
        pptx_download.value.save_as(pptx_path)

        # no network: anything but the file itself is refused
        offline = browser.new_context(viewport={"width": 1280, "height": 720})
        offline.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                      else route.abort())
        deck_page = offline.new_page()
        deck_page.goto(html_path.as_uri())
        deck_page.wait_for_timeout(1500)
        n_sections = deck_page.locator("section").count()
        assert n_sections == 4
        assert deck_page.locator(".js-plotly-plot .main-svg").count() >= 3, "every figure is drawn offline"
        assert deck_page.evaluate("() => [...document.querySelectorAll('section')].findIndex(s => "
                                  "s.classList.contains('on'))") == 0
        for want in (1, 2):
            deck_page.keyboard.press("ArrowRight")
            assert deck_page.evaluate("() => [...document.querySelectorAll('section')].findIndex(s => "
                                      "s.classList.contains('on'))") == want
        deck_page.keyboard.press("ArrowLeft")
        assert deck_page.locator("section.on h1").inner_text() != ""
        deck_page.screenshot(path=str(SHOTS / "deck_html.png"))
        browser.close()
    slides = pptx_slides(pptx_path.read_bytes())
    assert len(slides) == 4
    notes = [s.notes_slide.notes_text_frame.text for s in slides[1:]]
    assert sum("this head looks one token back" in n for n in notes) == 1
    assert "Attention?" in notes[1] and "attn_layer=1" in notes[1], "the attention slide moved down to second"


@pytest.mark.parametrize("title", ["All 50,257 next-token probabilities by rank · gpt2-small-random · “The best thing”",
                                   "全部 50,257 个下一个词元的概率（按排名） · gpt2-small-random"])
def test_a_slide_title_reads_as_the_figure_title_before_it_was_wrapped(title):
    """The page wraps long titles to its column; the slide's title keeps their " · " and their words whole
    (it read "…by rank gpt2-small-random" when a line break became a space)."""
    from recipes.deck import plain
    from viz.common import wrap_title

    wrapped = wrap_title(title, columns=24)
    assert "<br>" in wrapped
    assert plain(wrapped) == title
    assert plain(wrapped + "<br><sup>grey: the first token</sup>") == title + " · grey: the first token"
