"""The Experiments page as a person reaches it, tiny model: every view draws core's numbers."""
from __future__ import annotations

import numpy as np
from streamlit.testing.v1 import AppTest

from core import load_model, trace
from core.interventions import ablate, head_ablation_scan
from tests import apptest
from tests.apptest import EXPERIMENTS, show_view
from tests.plotly_json import chart_specs, decode

PROMPT = "The cat sat on the mat"


def open_page(**state) -> AppTest:
    return apptest.open_page(EXPERIMENTS, PROMPT, state)


def show(at: AppTest, view: str) -> AppTest:
    return show_view(at, EXPERIMENTS, view)


def test_knocking_out_a_head_shows_the_ablated_prediction(tiny_env, tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    t = trace(lm, PROMPT)
    at = open_page()
    assert any("Pick at least one" in i.value for i in at.info)
    at.multiselect(key="exp_heads").select((1, 2)).run()
    assert not at.exception
    table = at.dataframe[0].value
    after = ablate(lm, t, heads=[(1, 2)]).next_probs
    np.testing.assert_allclose(table["p after"], after[table["id"]], rtol=1e-6)
    np.testing.assert_allclose(table["p before"], t.next_probs[table["id"]], rtol=1e-6)
    bars, strip = chart_specs(at)
    assert "before and after" in bars["layout"]["title"]["text"]
    at.text_input(key="exp_neurons").input("1:5, nonsense").run()
    assert any("nonsense" in w.value for w in at.warning) and not at.exception
    show(show(at, "Patching"), "Knock out parts")  # a closed tab's choices are kept
    assert at.multiselect(key="exp_heads").value == [(1, 2)]
    assert at.text_input(key="exp_neurons").value == "1:5, nonsense"


def test_the_scan_draws_the_change_of_each_head(tiny_env, tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    t = trace(lm, PROMPT)
    at = show(open_page(), "Which parts matter")
    [scan] = chart_specs(at)
    expected = head_ablation_scan(lm, t, int(t.top_ids[-1, 0]))
    np.testing.assert_allclose(decode(scan["data"][0]["z"]), expected["heads"], atol=1e-5)
    at.text_input(key="exp_target").input("two tokens here").run()
    assert not at.exception and any("not one" in w.value for w in at.warning)


def test_two_prompts_and_patching_say_when_lengths_differ(tiny_env):
    at = show(open_page(exp_other="The dog sat on the mat"), "Two prompts")
    assert len(at.dataframe) == 2
    lenses = [f for f in chart_specs(at) if f["layout"]["title"]["text"].startswith("Logit lens")]
    assert len(lenses) == 2  # one per prompt
    diffs = [f for f in chart_specs(at) if "minus the" in f["layout"]["title"]["text"]]
    lengths_match = not any("tokens; comparing" in i.value for i in at.info)
    assert bool(diffs) == lengths_match
    at.text_input(key="exp_other").input("A much longer second prompt than the first one, by many tokens").run()
    at.run()
    assert any("comparing attention position by position" in i.value for i in at.info)
    show(at, "Patching")
    assert any("must match" in w.value for w in at.warning) and not chart_specs(at)
    at.toggle(key="exp_pad").set_value(True).run()
    assert not at.exception
    [grid] = chart_specs(at)
    assert "restored" in grid["layout"]["title"]["text"]
