""""Export all figures on this page (ZIP)" holds exactly the figures and tables on screen, on every
page and in every view; and no page can draw a chart or table that export does not see."""
from __future__ import annotations

import io
import re
import zipfile

import pytest
from streamlit.testing.v1 import AppTest

from tests import apptest
from tests.conftest import ROOT
from viz.export import export_zip

PROMPT = "hello hello hello bye bye. The <b>cat</b> sat on the mat."
VIEWS = {  # page -> (tab state key, tab names); None: the page has no tabs
    "app.py": None,
    "pages/1_Attention.py": ("attn_view", ["Head atlas", "One layer, all heads", "One head", "One head across layers",
                                           "Token focus"]),
    "pages/2_Embeddings.py": ("emb_tab", ["The prompt's embeddings", "Positions", "Word vectors", "Meaning space",
                                          "Whole vocabulary", "In context"]),
    "pages/3_Weights.py": ("weights_tab", ["Matrix", "Smoothed", "Across blocks", "All parameters", "Spectrum"]),
    "pages/5_Prediction.py": ("pred_view", ["Logit lens", "Attribution", "Neurons", "What a head writes",
                                            "Contribution graph"]),
    "pages/6_Experiments.py": ("exp_view", ["Knock out parts", "Which parts matter", "Two prompts", "Patching"]),
    "pages/7_N-grams.py": ("ngram_view", ["Samples", "Next letter and word", "Letter statistics"]),
    "pages/8_Features.py": ("feat_view", ["Features per token", "Feature card", "Fidelity",  # no SAE for the tiny
                                          "Which features make the prediction"]),  # model: test_features_page's ZIP
    "pages/9_Steering.py": ("steer_view", ["Generation", "Next token", "Logit lens", "Coefficient sweep"]),
    "pages/0_Tour.py": ("tour_step", list(range(1, 15))),
}


def test_pages_draw_charts_and_tables_only_through_the_export_helpers():
    """st.plotly_chart / st.dataframe called directly would draw something the ZIP misses."""
    direct = re.compile(r"\bst\.(plotly_chart|dataframe|table|data_editor)\(")
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        assert not direct.search(path.read_text()), f"{path.name} draws a chart or table without ui.figures"


def _zip_matches_screen(at: AppTest, where: str) -> None:
    reg = at.session_state["_page_exports"]
    charts, tables = len(at.get("plotly_chart")), len(at.dataframe)
    assert len(reg["figures"]) == charts, f"{where}: {charts} charts on screen, {len(reg['figures'])} in the export"
    assert len(reg["tables"]) == tables, f"{where}: {tables} tables on screen, {len(reg['tables'])} in the export"
    names = zipfile.ZipFile(io.BytesIO(export_zip(reg["figures"], reg["tables"], static=False))).namelist()
    assert sum(n.endswith(".html") for n in names) == charts, where  # one interactive page per figure
    assert sum(n.endswith(".csv") for n in names) == charts + tables, where


@pytest.mark.parametrize("page", list(VIEWS))
def test_the_zip_holds_what_every_view_shows(tiny_env, page):
    at = apptest.open_page(page, PROMPT)
    if VIEWS[page] is None:
        _zip_matches_screen(at, page)
        return
    key, tabs = VIEWS[page]
    for tab in tabs:
        at.session_state[key] = tab
        at.run()
        assert not at.exception, (page, tab)
        _zip_matches_screen(at, f"{page} · {tab}")



def _two_chinese_figures():
    import plotly.graph_objects as go
    import streamlit as st

    from ui.figures import show_figure, show_table

    st.session_state.update(prompt="你好", _model_label="tiny")
    for key, title in [("probs", "下一个词的概率<br>tiny"), ("lens", "逐层的预测<br>tiny")]:
        show_figure(go.Figure(go.Bar(y=[1, 2]), layout_title_text=title), key=key)
    import pandas as pd
    for key in ["表一", "表二"]:
        show_table(pd.DataFrame({"a": [1]}), key=key)


def test_chinese_titles_keep_a_file_name_each():
    """Chinese titles leave no ASCII words for a file name: each figure still gets a name of its
    own (its key), so none overwrites another in the ZIP or in the downloads."""
    at = AppTest.from_function(_two_chinese_figures).run()
    assert not at.exception
    _zip_matches_screen(at, "two Chinese titles")
    figures = list(at.session_state["_page_exports"]["figures"])
    assert any("probs" in n for n in figures) and any("lens" in n for n in figures)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in [*figures, *at.session_state["_page_exports"]["tables"]])
