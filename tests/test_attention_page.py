"""The attention page as a person reaches it: app.py, then the Attention page, tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import core.attention
import recipes.attention
import ui.shell
from core.attention import head_scores
from core.trace import trace
from tests import apptest
from tests.apptest import ATTENTION, show_view
from tests.plotly_json import chart_specs, decode
from viz.attention import CELL_BUDGET, causal_nan

PROMPT = "hello hello hello bye bye. The <b>cat</b> sat on the mat & slept."


def open_page(prompt: str = PROMPT, **state) -> AppTest:
    return apptest.open_page(ATTENTION, prompt, state)


def show(at: AppTest, view: str) -> AppTest:
    return show_view(at, ATTENTION, view)


@pytest.fixture(scope="module")
def expected(tiny_model_dir):
    from core import load_model
    return trace(load_model(str(tiny_model_dir), device="cpu"), PROMPT)


@pytest.fixture
def counted_forwards(monkeypatch):
    """Counts model forwards: prompt traces (ui.shell) and induction runs (core.attention)."""
    calls = {"prompt": 0, "induction": 0}

    def counting(name, real):
        def run(*a, **kw):
            calls[name] += 1
            return real(*a, **kw)
        return run

    monkeypatch.setattr(ui.shell, "trace_ids", counting("prompt", ui.shell.trace_ids))
    monkeypatch.setattr(core.attention, "trace_ids", counting("induction", core.attention.trace_ids))
    ui.shell.trace_cache().clear()
    return calls


def test_every_view_shows_the_traces_slices(tiny_env, expected, counted_forwards):
    a = expected.attention
    at = open_page(attn_layer=1, attn_head=2)
    [atlas] = chart_specs(at)  # the atlas is the first tab; other tabs build nothing until opened
    np.testing.assert_allclose(decode(atlas["data"][0]["z"]), head_scores(expected)["previous"], atol=1e-6)
    assert "head atlas" in atlas["layout"]["title"]["text"]

    figs = chart_specs(show(at, "One layer, all heads"))[0]["data"]
    assert len(figs) == 4
    for h in range(4):
        np.testing.assert_array_equal(decode(figs[h]["z"]), causal_nan(a[1, h]))

    [head] = chart_specs(show(at, "One head"))
    np.testing.assert_array_equal(decode(head["data"][0]["z"]), causal_nan(a[1, 2]))
    assert "layer 1, head 2" in head["layout"]["title"]["text"]
    assert "<b>" not in json.dumps(head["data"][0]["customdata"])  # token text stays escaped

    across, means = chart_specs(show(at, "One head across layers"))
    for L in range(2):
        np.testing.assert_array_equal(decode(across["data"][L]["z"]), causal_nan(a[L, 2]))
        np.testing.assert_allclose(decode(means["data"][L]["z"]), causal_nan(a[L].astype(np.float32).mean(0)),
                                   atol=1e-6)

    to, frm = chart_specs(show(at, "Token focus"))
    mid = (expected.n_tokens - 1) // 2  # it opens where both directions have tokens (issue 25, item 11)
    np.testing.assert_allclose(decode(to["data"][0]["z"]), a[:, :, mid, :mid + 1].astype(np.float32).mean(1),
                               atol=1e-6)
    np.testing.assert_allclose(decode(frm["data"][0]["z"]), a[:, :, mid:, mid].astype(np.float32).mean(1), atol=1e-6)
    assert counted_forwards["induction"] == 0  # only the induction score needs its own forward


def test_switching_layer_and_head_runs_no_model(tiny_env, counted_forwards):
    at = show(open_page(), "One head")
    before = dict(counted_forwards)
    at.selectbox(key="attn_layer").set_value(1).run()
    at.selectbox(key="attn_head").set_value(3).run()
    at.toggle(key="attn_scores").set_value(True).run()
    assert not at.exception
    pattern, scores = chart_specs(at)
    assert "layer 1, head 3" in pattern["layout"]["title"]["text"]
    assert "pre-softmax" in scores["layout"]["title"]["text"]
    assert counted_forwards == before


def test_every_tab_and_page_after_the_first_reads_the_stored_trace(tiny_env, counted_forwards):
    """One forward per prompt: every Attention tab, a layer and head change in each, the entropy
    atlas (which reads every pattern) and the other pages all reuse the prompt's trace."""
    at = open_page()
    assert counted_forwards["prompt"] <= 1
    before = counted_forwards["prompt"]
    at.radio(key="attn_metric").set_value("entropy").run()
    for view in ["One layer, all heads", "One head", "One head across layers", "Token focus"]:
        show(at, view)
        at.selectbox(key="attn_layer").set_value(1).run()
        at.selectbox(key="attn_head").set_value(3).run()
        at.selectbox(key="attn_layer").set_value(0).run()
        assert not at.exception and chart_specs(at), view
    for page in ["pages/2_Embeddings.py", "pages/4_Generation.py", "app.py"]:
        at.switch_page(page)
        at.run()
        assert not at.exception, page
    assert counted_forwards["prompt"] == before


def test_induction_atlas_runs_once_and_a_pick_opens_the_head(tiny_env, counted_forwards):
    import streamlit as st

    st.cache_resource.clear()  # the induction atlas is cached per model across tests: start from empty
    ui.shell.trace_cache().clear()
    at = open_page()
    at.radio(key="attn_metric").set_value("induction").run()
    at.radio(key="attn_metric").set_value("entropy").run()
    at.radio(key="attn_metric").set_value("induction").run()
    assert not at.exception
    assert counted_forwards["induction"] == 1  # one forward on repeated random tokens, then cached per model
    at.selectbox(key="attn_atlas_pick").set_value((1, 3)).run()
    assert not at.exception
    assert at.session_state["attn_view"] == "One head"
    assert at.session_state["attn_layer"] == 1 and at.session_state["attn_head"] == 3
    [head] = chart_specs(at)
    assert "layer 1, head 3" in head["layout"]["title"]["text"]


def test_a_1024_token_prompt_stays_within_budget(tiny_env):
    long_prompt = "The cat sat on the mat and looked at the dog. " * 200  # well over 1,024 tokens
    at = open_page(long_prompt)
    budget_bytes = 10_000_000
    for view in ["Head atlas", "One layer, all heads", "One head", "One head across layers", "Token focus"]:
        figs = chart_specs(show(at, view))
        assert figs, view
        cells = [sum(decode(tr["z"]).size for tr in f["data"] if "z" in tr) for f in figs]
        assert max(cells) <= CELL_BUDGET, (view, cells)
        assert sum(len(c.proto.spec) for c in at.get("plotly_chart")) < budget_bytes, view
    head = chart_specs(show(at, "One head"))[0]
    assert decode(head["data"][0]["z"]).shape == (512, 512)  # one head pooled to what its plot shows, and said
    assert "2×2" in head["layout"]["title"]["text"] and any("smaller than a pixel" in c.value for c in at.caption)
    at.toggle(key="attn_scores").set_value(True).run()
    [scores] = chart_specs(at)  # two 1,024 x 1,024 heads would pass the page budget: scores alone
    assert "pre-softmax" in scores["layout"]["title"]["text"]
    assert len(at.get("plotly_chart")[0].proto.spec) < budget_bytes


def test_reading_every_layer_asks_first_when_it_would_be_long(tiny_env, monkeypatch):
    """Over ~2 s of work waits for a click (estimated from the model and prompt); a stopped
    run offers Continue and keeps what it finished."""
    monkeypatch.setattr(recipes.attention, "summaries_seconds", lambda t: 12.0)  # the recipe's estimate of the job
    monkeypatch.setattr(recipes.attention, "summaries_cached", lambda t, side: False)
    at = open_page()
    at.radio(key="attn_metric").set_value("entropy").run()
    assert not at.exception and not chart_specs(at)
    assert any("about 12 s" in c.value for c in at.caption)
    at.button(key="attn_summaries_compute").click().run()
    [atlas] = chart_specs(at)
    assert "Entropy" in atlas["layout"]["title"]["text"]
    at.session_state["attn_summaries_stopped"] = True
    at.run()
    assert not chart_specs(at) and any("stopped" in i.value for i in at.info)
    at.button(key="attn_summaries_continue").click().run()
    assert chart_specs(at)


def test_the_induction_atlas_says_when_it_draws_from_the_tokens_a_checkpoint_lists(tiny_env, tmp_path, monkeypatch):
    import shutil

    at = open_page(attn_metric="induction")
    assert not at.exception and not any("often enough to learn" in c.value for c in at.caption)
    narrow = shutil.copytree(tiny_env, tmp_path / "narrow")
    (narrow / "trained_tokens.json").write_text(json.dumps({"token_ids": list(range(20, 420))}))
    monkeypatch.setenv("GPT2VIZ_MODEL", str(narrow))
    at = open_page(attn_metric="induction")
    assert not at.exception
    assert any("drawn from the 400 tokens this model saw often enough to learn" in c.value for c in at.caption)


@pytest.mark.parametrize("n_positions", [4, 5, 3])
def test_the_induction_atlas_fits_a_short_context_or_says_why_not(tiny_env, tmp_path, monkeypatch, n_positions):
    """Issue 25, item 21: 4 positions hold two copies of 2 random tokens (no bos); 3 cannot, and the page says so."""
    from core.synthetic import build_checkpoint

    monkeypatch.setenv("GPT2VIZ_MODEL", str(build_checkpoint(tmp_path / f"short-{n_positions}",
                                                             n_positions=n_positions)))
    at = apptest.open_page(ATTENTION, "ab", {"attn_metric": "induction"}, check=False)
    assert not at.exception, at.exception
    if n_positions >= 4:
        [atlas] = chart_specs(at)
        assert np.isfinite(decode(atlas["data"][0]["z"])).all()
    else:
        assert any("measuring induction needs 4" in i.value for i in at.info) and not at.get("plotly_chart")
