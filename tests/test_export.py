"""Export: image sizes, SVG, standalone HTML, CSV round trip, safe file names, ZIP, CLI, links."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import struct
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from recipes.export import main
from tests.conftest import ROOT
from viz.export import (
    CHROMIUM_ARGS,
    export_zip,
    find_chromium,
    presentation_style,
    safe_filename,
    static_export,
    to_csv,
    to_html,
    to_png,
    to_svg,
)

needs_static = pytest.mark.skipif(not static_export().available and not os.environ.get("CI"),
                                  reason="PNG/SVG export needs Chromium: apt-get install -y chromium")


def heatmap_fig(title="Layer 0 · head 1 &lt;b&gt;") -> go.Figure:
    z = np.array([[1.0, np.nan], [0.25, 0.75]])
    fig = go.Figure(go.Heatmap(z=z, x=[0, 1], y=[0, 1], name="pattern"))
    fig.update_layout(title=title)
    return fig


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@needs_static
def test_png_has_the_requested_pixel_size():
    assert png_size(to_png(heatmap_fig(), 800, 450, 2)) == (1600, 900)
    assert png_size(to_png(heatmap_fig(), 640, 480, 1)) == (640, 480)


@needs_static
def test_svg_parses_and_carries_the_title():
    svg = to_svg(heatmap_fig("Top 10 next tokens · gpt2"), 800, 450)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "Top 10 next tokens · gpt2" in "".join(root.itertext())


def test_html_is_standalone(tmp_path):
    html = to_html(heatmap_fig("Standalone check")).decode()
    assert "<html>" in html[:200].lower() and "Standalone check" in html
    assert not re.search(r"<script[^>]+src=[\"']https?://", html)  # plotly.js inlined, no network needed
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("opening the page needs Chromium")
    from playwright.sync_api import sync_playwright

    path = tmp_path / "figure.html"
    path.write_text(html)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.route("http*://**", lambda route: route.abort())  # offline: everything must be inline
        page.goto(path.as_uri())
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        assert "Standalone check" in page.inner_text(".js-plotly-plot")
        browser.close()


def test_csv_round_trips_to_the_figure_numbers():
    rows = list(csv.DictReader(io.StringIO(to_csv(heatmap_fig()).decode())))
    got = {(int(r["y"]), int(r["x"])): float(r["z"]) for r in rows}
    assert got[(0, 0)] == 1.0 and got[(1, 0)] == 0.25 and got[(1, 1)] == 0.75 and np.isnan(got[(0, 1)])
    bars = go.Figure(go.Bar(x=[0.5, 0.25], y=[1, 2], customdata=["␣cat", "<b>"], name="bars"))
    rows = list(csv.DictReader(io.StringIO(to_csv(bars).decode())))
    assert [(float(r["x"]), int(r["y"]), r["label"]) for r in rows] == [(0.5, 1, "␣cat"), (0.25, 2, "<b>")]


def test_csv_names_each_value_by_the_label_its_tick_shows():
    """A token axis draws positions labelled with tokens: each row carries the token its x (y)
    shows; a heatmap placed with x0/dx keeps the matrix's own indices; typed arrays (a figure read
    back from JSON, as a deck's) read the same."""
    heat = go.Figure(go.Heatmap(z=np.arange(6.0).reshape(2, 3), x=[0, 1, 2], y=[0, 1]))
    heat.update_xaxes(tickmode="array", tickvals=[0, 1, 2], ticktext=["␣the", "&lt;b&gt;", "猫"])
    rows = list(csv.DictReader(io.StringIO(to_csv(heat).decode())))
    assert {(int(r["x"]), r["x label"]) for r in rows} == {(0, "␣the"), (1, "<b>"), (2, "猫")}
    assert all(r["y label"] == "" for r in rows)
    read_back = go.Figure(heat.to_dict())  # z and tickvals as {"dtype", "bdata"}
    assert to_csv(read_back) == to_csv(heat)
    bars = go.Figure(go.Bar(x=[0.5, 0.2], y=[1, 2], orientation="h"))
    bars.update_yaxes(tickmode="array", tickvals=[1, 2], ticktext=["␣cat", "␣dog"])
    rows = list(csv.DictReader(io.StringIO(to_csv(bars).decode())))
    assert [(r["y"], r["y label"]) for r in rows] == [("1", "␣cat"), ("2", "␣dog")]
    smooth = go.Figure(go.Heatmap(z=np.ones((2, 2)), x0=24, dx=48, y0=24, dy=48))  # a 48 x 48 block average
    rows = list(csv.DictReader(io.StringIO(to_csv(smooth).decode())))
    assert {(float(r["x"]), float(r["y"])) for r in rows} == {(24, 24), (72, 24), (24, 72), (72, 72)}


def test_the_zip_index_reads_a_wrapped_title_as_it_was_written():
    from viz.common import wrap_title
    from viz.export import plain_title

    for title in ("Next token before and after · gpt2 · “In the beginning God created the heaven and the…”",
                  "第 1 层第 0 头 · gpt2 · “起初神创造天地。地是空虚混沌，渊面黑暗；神的灵运行在水面上。”"):
        assert plain_title(wrap_title(title, 16)) == title


def _half_column_figure(title: str, n: int = 27) -> go.Figure:
    from viz.common import base_layout, fit_to_column, token_ticks

    z = np.random.default_rng(0).random((n, n))
    fig = go.Figure(go.Heatmap(z=z, colorbar=dict(title=dict(text="P(next | previous)", side="top"))))
    fig.update_layout(**base_layout(title))
    letters = [chr(97 + i % 26) for i in range(n)]
    fig.update_xaxes(**token_ticks(letters))
    fig.update_yaxes(**token_ticks(letters), autorange="reversed")
    return fit_to_column(fig, 0.5)


@pytest.mark.parametrize("dark", [False, True])
@pytest.mark.parametrize("title", [
    "which tokens attend to token 7 “␣and”, every layer (mean over heads) · gpt2 · “In the beginning God created…”",
    "第 1 层第 0 头，在“␣was”之后 · gpt2 · “起初神创造天地。地是空虚混沌，渊面黑暗；神的灵运行在水面上。”",
])
def test_slides_fit_the_column_the_figure_is_drawn_in(title, dark):
    """A half-column figure in a Slides style: title, prompt line, colour-bar title, tick labels and
    colour-bar ticks fit its 400 px column (the page's), and the title block ends above the plot;
    a deck's slide (width=1,600) wraps the title less. Checked with the figure tests' estimates."""
    from tests import figure_checks as checks

    fig = _half_column_figure(title)
    slides = presentation_style(fig, dark=dark, prompt="In the beginning God created the heaven and the earth. " * 3)
    height = slides.layout.height
    assert checks.titles_fit(slides, 400, height) == []
    assert checks.tick_labels_fit(slides, 400, height) == []
    assert checks.colour_bar_ticks_fit(slides, 400, height) == []
    assert height - slides.layout.margin.t - slides.layout.margin.b >= 0.9 * (450 - fig.layout.margin.t - 50)
    deck = presentation_style(fig, dark=dark, width=1600)
    assert deck.layout.title.text.count("<br>") < slides.layout.title.text.count("<br>")
    assert checks.titles_fit(deck, 1600, deck.layout.height) == []


def test_slides_thin_tick_labels_they_cannot_shrink_enough():
    """60 labels on a short axis overlap even at 14 px, the smallest slide font: every k-th is kept
    (at the largest font that then fits)."""
    from tests import figure_checks as checks

    fig = _half_column_figure("Next letter after each letter", n=60)
    fig.update_layout(height=300)
    slides = presentation_style(fig)
    y = slides.layout.yaxis
    assert y.tickfont.size >= 14 and len(y.tickvals) < len(fig.layout.yaxis.tickvals)
    assert checks.tick_labels_fit(slides, 400, slides.layout.height) == []


@pytest.mark.parametrize("dark", [False, True])
def test_short_heatmaps_keep_room_for_their_colour_bar(dark):
    """Patching on a 2-layer model (issue 25: "squashed, colour-bar ticks on top of each other"):
    the colour bar's two-line title takes its length from the bar, so a short figure grows until the
    bar holds three tick labels, and asks Plotly for no more ticks than fit, on the page and in the
    Slides styles."""
    from tests import figure_checks as checks
    from viz.experiments import patching_figure

    grid = np.array([[0.9, 0.1, -0.2, 0.0], [0.4, -1.0, 0.3, 0.1]])
    fig = patching_figure(grid, "Share of the clean prediction restored by patching · tiny", x_title="head")
    assert checks.colour_bar_ticks_fit(fig, 800, fig.layout.height) == []
    slides = presentation_style(fig, dark=dark)
    assert checks.colour_bar_ticks_fit(slides, 800, slides.layout.height) == []
    assert checks.titles_fit(slides, 800, slides.layout.height) == []


def test_dark_slides_lift_marks_too_faint_on_the_background():
    """The contribution graph's dark state dots (#222) vanish on #111418; a line colour that already
    stands out keeps its colour (legend and caption still match)."""
    from viz.fit import contrast_ratio, readable_colour

    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="markers", marker=dict(color="#222222", size=9)),
                     go.Scatter(x=[0, 1], y=[1, 0], mode="lines", line=dict(color="#3b6fb6")),
                     go.Scatter(x=[0], y=[0], mode="markers", marker=dict(color="rgba(0,0,0,0)"))])
    dark = presentation_style(fig, dark=True)
    dots = tuple(int(dark.data[0].marker.color[i:i + 2], 16) for i in (1, 3, 5))
    assert contrast_ratio(dots, (0x11, 0x14, 0x18)) >= 3.0
    assert dark.data[1].line.color == "#3b6fb6" and dark.data[2].marker.color == "rgba(0,0,0,0)"
    assert readable_colour("#9a9a9a", "#ffffff") != "#9a9a9a"  # white slides darken a light grey


@pytest.mark.parametrize("prompt", [
    "a/b\\c", "../../etc/passwd", "人工智能", "😀🚀", "CON", "x" * 500, "tab\tnew\nline\x00nul", 'quote"star*?<>|:',
])
def test_file_names_are_safe_everywhere(prompt):
    name = safe_filename("attention layer 3/head 5", "gpt2", prompt=prompt, ext="png")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.png", name), name
    stem = name[:-4].lower()
    assert stem not in {"con", "prn", "aux", "nul"} and len(name) <= 160 and ".." not in name
    assert safe_filename("con") == "con_"


def test_the_zip_uses_the_names_the_page_buttons_use():
    name = safe_filename("tiny · layer 1, head 0: attention pattern", prompt="The cat 你好")
    data = export_zip({name: heatmap_fig()}, {}, static=False)
    assert f"{name}.csv" in zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_prompts_without_ascii_still_get_distinct_names():
    assert safe_filename("v", prompt="人工智能") != safe_filename("v", prompt="机器学习")


def test_presentation_style_is_big_and_carries_the_prompt():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], line_width=2), layout=dict(title="Rank plot"))
    slides = presentation_style(fig, prompt="hello <b>world</b>")
    assert slides.layout.font.size >= 18 and slides.layout.xaxis.tickfont.size >= 18
    assert slides.data[0].line.width >= 3
    assert "hello &lt;b&gt;world&lt;/b&gt;" in slides.layout.title.subtitle.text
    dark = presentation_style(fig, dark=True)
    assert dark.layout.paper_bgcolor == "#111418"
    assert fig.layout.font.size is None  # the original is untouched


def test_zip_holds_every_figure_and_an_index():
    import pandas as pd

    data = export_zip({"head": heatmap_fig(), "bars": go.Figure(go.Bar(x=[1], y=[2]))},
                      {"table": pd.DataFrame({"a": [1]})}, title="t", static=False)
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {"index.txt", "head.csv", "head.html", "bars.csv", "bars.html", "table.csv"} <= set(names)


def test_batch_export_writes_the_standard_set(tiny_model_dir, tmp_path):
    main(["--model", str(tiny_model_dir), "--prompt", "hello/../你好 <b>", "--out", str(tmp_path),
          "--formats", "html,csv"])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "index.txt" in files
    csvs = [f for f in files if f.endswith(".csv")]
    assert any(f.startswith("next-token-top10") for f in csvs)
    assert any(f.startswith("attention-layer1-all-heads") for f in csvs)
    assert any(f.startswith("weights-block0-w-o-moving-average") for f in csvs)
    assert any(f.startswith("prediction-logit-lens") for f in csvs)
    assert any(f.startswith("prediction-attribution") for f in csvs)
    graph = [f for f in csvs if f.startswith("prediction-contribution-graph")]
    assert graph and len((tmp_path / graph[0]).read_text().splitlines()) > 2  # its edges, not an empty figure
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", f) for f in files)


def test_batch_export_in_chinese_has_chinese_titles_and_the_same_file_names(tiny_model_dir, tmp_path):
    main(["--model", str(tiny_model_dir), "--prompt", "hello world", "--out", str(tmp_path / "en"),
          "--formats", "html"])
    main(["--model", str(tiny_model_dir), "--prompt", "hello world", "--out", str(tmp_path / "zh"), "--formats", "html",
          "--lang", "zh"])
    en, zh = (sorted(p.name for p in (tmp_path / d).iterdir()) for d in ("en", "zh"))
    assert en == zh  # file names stay the same (English, safe on every OS)
    top = next(f for f in zh if f.startswith("next-token-top10") and f.endswith(".html"))
    # as written, or as JSON escapes it (\u4e0b…), by plotly version
    title = ("下一个词元", json.dumps("下一个词元")[1:-1])
    assert any(t in (tmp_path / "zh" / top).read_text() for t in title)
    assert not any(t in (tmp_path / "en" / top).read_text() for t in title)


def test_query_string_round_trips_through_the_app(tiny_env, tiny_model_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update({"prompt": "hello 你好 world", "next_k": "7", "model": str(tiny_model_dir)})
    at.run()
    assert not at.exception
    assert at.session_state["prompt"] == "hello 你好 world"
    assert at.sidebar.text_area(key="sidebar_prompt").value == "hello 你好 world"
    assert at.slider(key="next_k").value == 7 and len(at.dataframe[0].value) == 7
    at.slider(key="next_k").set_value(12).run()
    assert at.query_params["next_k"] == ["12"] or at.query_params["next_k"] == "12"
    at.sidebar.text_area(key="sidebar_prompt").input("bye bye").run()
    assert at.query_params["prompt"] in ("bye bye", ["bye bye"])
    name = tiny_model_dir.name  # an allowed local checkpoint is named in the link, never its server path
    assert at.query_params["model"] in (name, [name])
    again = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    again.query_params.update({k: v[0] if isinstance(v, list) else v for k, v in at.query_params.items()})
    again.run()  # the written link reopens the same model and table
    assert not again.exception and not again.error
    assert again.dataframe[0].value.equals(at.dataframe[0].value)


def test_bad_query_values_fall_back_to_defaults(tiny_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update({"next_k": "lots", "keep": "middle"})
    at.run()
    assert not at.exception
    assert at.slider(key="next_k").value == 10 and at.session_state["keep"] == "first"


def test_slides_style_applies_to_the_page(tiny_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.sidebar.radio(key="sidebar_style").set_value("dark").run()
    assert not at.exception
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["paper_bgcolor"] == "#111418" and spec["layout"]["font"]["size"] >= 18
    # Streamlit's chart theme would draw its own dark legend text over the slide's (dark on black)
    assert all(c.proto.theme != "streamlit" for c in at.get("plotly_chart"))
    at.sidebar.radio(key="sidebar_style").set_value("normal").run()
    assert all(c.proto.theme == "streamlit" for c in at.get("plotly_chart"))


def test_figure_files_are_named_after_view_model_layer_and_head():
    from ui.figures import figure_name

    fig = go.Figure(layout=dict(title="tiny · layer 1, head 0: attention pattern"))
    name = safe_filename(figure_name(fig, "attn_head_chart"), prompt="The cat 你好")
    assert name.startswith("tiny-layer-1-head-0-attention-pattern_the-cat_")
    fig = go.Figure(layout=dict(title="Top 10 next tokens · gpt2 · “&lt;b&gt;The cat…”"))
    assert figure_name(fig, "k") == "Top 10 next tokens · gpt2"
    assert figure_name(go.Figure(), "next_rank") == "next_rank"


# ---- the batch exporter's command line: one clear line and a non-zero exit, before any work ------
def run_cli(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if the CLI loads a model: argument errors must be caught before that work."""
    import core

    def forbidden(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(core, "load_model", forbidden)


@pytest.mark.parametrize("args, says", [
    (["--prompt", "", "--out", "{tmp}/out"], "--prompt is empty"),
    (["--prompt", "  \n", "--out", "{tmp}/out"], "--prompt is empty"),
    (["--prompt", "hi", "--out", "{tmp}/out", "--formats", "gif"], "unknown gif; choose from png,svg,html,csv"),
    (["--prompt", "hi", "--out", "{tmp}/out", "--formats", "csv,jpeg,html"], "unknown jpeg"),
    (["--prompt", "hi", "--out", "{tmp}/out", "--formats", ","], "no format given"),
    (["--prompt", "hi", "--out", "{tmp}/a-file"], "is a file; give a directory"),
    (["--prompt", "hi", "--out", "{tmp}/a-file/below"], "cannot be created"),
    (["--prompt", "hi", "--out", ""], "--out is empty"),  # issue 25 item 19: it wrote into the current directory
    (["--prompt", "hi", "--out", "{tmp}/" + "x" * 300], "cannot be created"),  # item 19: OSError, name too long
    (["--prompt", "caf\udce9 \ud800", "--out", "{tmp}/out", "--formats", "gif"], "unknown gif"),  # item 22
])
def test_bad_arguments_fail_fast_with_one_line(tmp_path, capsys, no_model_load, args, says):
    (tmp_path / "a-file").write_text("not a directory")
    code, out, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and says in error_line(err)
    assert not (tmp_path / "out").exists()
    if any("\udce9" in a for a in args):  # the prompt the tokenizer gets is valid text, and the user is told
        assert "not UTF-8" in err


def test_a_missing_model_fails_with_one_line_and_the_fix(tmp_path, capsys):
    code, out, err = run_cli(capsys, "--model", str(tmp_path / "nope"), "--prompt", "hi",
                             "--out", str(tmp_path / "out"))
    line = error_line(err)
    assert code == 1 and "No directory at" in line and "GPT2VIZ_MODEL" in line
    assert not (tmp_path / "out").exists()  # the directory made for the export is removed again


def test_an_over_long_prompt_says_how_many_tokens_were_dropped(tiny_model_dir, tiny_lm, tmp_path, capsys):
    prompt = " ".join(f"w{i}" for i in range(12_000))[:60_000]
    n = len(tiny_lm.encode(prompt))
    code, out, err = run_cli(capsys, "--model", str(tiny_model_dir), "--prompt", prompt, "--out", str(tmp_path),
                             "--formats", "csv", "--style", "normal")
    assert code == 0 and "wrote " in out
    assert f"the prompt is {n:,} tokens" in err and f"the last {n - 1024:,} were dropped" in err
    assert "--keep last" in err
    rows = csv.DictReader(io.StringIO(next(tmp_path.glob("surprisal*.csv")).read_text()))
    positions = {int(m.group(1)) for r in rows if (m := re.match(r"#(\d+):", r["label"]))}
    assert positions == set(range(1024))  # one cell per kept token, and no more
    code, out, err = run_cli(capsys, "--model", str(tiny_model_dir), "--prompt", prompt,
                             "--out", str(tmp_path / "last"), "--formats", "csv", "--keep", "last")
    assert code == 0 and f"the first {n - 1024:,} were dropped" in err


def test_a_short_prompt_gets_no_note(tiny_model_dir, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--model", str(tiny_model_dir), "--prompt", "hello world", "--out", str(tmp_path),
                             "--formats", "html")
    assert code == 0 and "dropped" not in err and all(p.suffix in (".html", ".txt") for p in tmp_path.iterdir())
