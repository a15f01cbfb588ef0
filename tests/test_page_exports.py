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
    "pages/0_Tour.py": ("tour_step", list(range(1, 13))),
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
