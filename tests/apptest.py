"""Opening the app as a person does, for the AppTest page tests: one helper instead of a copy per file.

AppTest starts on app.py (the entry point, where the sidebar state is set up), then switches
to the page, as the browser's navigation does; a link's query is kept across the switch."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

TIMEOUT = 120
NEXT_TOKEN, ATTENTION, EMBEDDINGS, WEIGHTS = ("app.py", "pages/1_Attention.py", "pages/2_Embeddings.py",
                                              "pages/3_Weights.py")
GENERATION, PREDICTION, EXPERIMENTS = "pages/4_Generation.py", "pages/5_Prediction.py", "pages/6_Experiments.py"
NGRAMS, TOUR = "pages/7_N-grams.py", "pages/0_Tour.py"
FEATURES, STEERING = "pages/8_Features.py", "pages/9_Steering.py"
TAB_KEYS = {ATTENTION: "attn_view", EMBEDDINGS: "emb_tab", WEIGHTS: "weights_tab", GENERATION: "gen_tab",
            PREDICTION: "pred_view", EXPERIMENTS: "exp_view", NGRAMS: "ngram_view", FEATURES: "feat_view",
            STEERING: "steer_view"}


def open_page(page: str = NEXT_TOKEN, prompt: str | None = None, state: dict | None = None, *,
              query: dict | None = None, typed: str | None = None, check: bool = True) -> AppTest:
    """The app opened on `page`: `prompt` and `state` set in the session first (as a click would),
    `query` as the address bar's link, `typed` typed into the sidebar's prompt box."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if query:
        at.query_params.update(query)
    if prompt is not None:
        at.session_state["prompt"] = prompt
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    if typed is not None:
        at.sidebar.text_area(key="sidebar_prompt").input(typed).run()
    if page != NEXT_TOKEN:
        at.switch_page(page).run()
    if check:
        assert not at.exception, at.exception
    return at


def show_view(at: AppTest, page: str, view: str) -> AppTest:
    """Open tab `view` of `page` (the page `at` shows)."""
    at.session_state[TAB_KEYS[page]] = view
    at.run()
    assert not at.exception, at.exception
    return at
