"""The "Inside the prediction" page as a person reaches it, tiny model: each view draws core's numbers."""
from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import load_model, trace
from core.prediction import direct_logit_attribution, logit_lens, neuron_attribution
from tests import apptest
from tests.apptest import show_view
from tests.plotly_json import chart_specs, decode

PROMPT = "The cat sat on the mat. The cat sat on the"
PAGE = "pages/5_Prediction.py"


def open_page(**state) -> AppTest:
    return apptest.open_page(PAGE, PROMPT, state)


def show(at: AppTest, view: str) -> AppTest:
    return show_view(at, PAGE, view)


@pytest.fixture(scope="module")
def expected(tiny_model_dir):
    return trace(load_model(str(tiny_model_dir), device="cpu"), PROMPT)


def test_the_lens_ends_in_the_prediction_and_attribution_adds_up(tiny_env, tiny_model_dir, expected):
    at = open_page()
    grid, lines = chart_specs(at)
    z = decode(grid["data"][0]["z"])
    np.testing.assert_allclose(z[-1], expected.top_probs[:, 0], rtol=1e-5)  # the output row: the trace's own top-1
    names = grid["layout"]["yaxis"]["ticktext"]
    assert len(names) == len(z) and names[0] == "embeddings" and names[-1] == "output" and names[1] == "after block 0"
    at = show(at, "Attribution")
    logit, total = (float(m.value) for m in at.metric)
    assert total == pytest.approx(logit, abs=2e-3)
    lm = load_model(str(tiny_model_dir), device="cpu")
    a = direct_logit_attribution(lm, expected, int(expected.top_ids[-1, 0]))
    assert logit == pytest.approx(a.logit, abs=1e-3)
    heads = decode(chart_specs(at)[0]["data"][0]["z"])
    np.testing.assert_allclose(heads, a.heads, atol=1e-5)
    parts = neuron_attribution(lm, expected, int(expected.top_ids[-1, 0]), -1, 15)
    first = (int(parts.layers[0]), int(parts.neurons[0]))
    at.selectbox(key="pred_neuron_pick").set_value(first).run()
    at.button(key="pred_open_neuron").click().run()
    assert not at.exception and at.session_state["pred_view"] == "Neurons"
    assert (at.session_state["pred_layer"], at.session_state["pred_neuron"]) == first
    strip, tokens = chart_specs(at)
    assert f"neuron {first[1]} of layer {first[0]}" in tokens["layout"]["title"]["text"]


def test_every_view_renders_and_bad_tokens_get_a_message(tiny_env, tiny_model_dir, expected):
    at = open_page()
    at.radio(key="pred_lens_colour").set_value("next").run()
    lens = logit_lens(load_model(str(tiny_model_dir), device="cpu"), expected)
    np.testing.assert_allclose(decode(chart_specs(at)[0]["data"][0]["z"]), np.nan_to_num(lens.target_probs), rtol=1e-5)
    at.text_input(key="pred_token").input("two words").run()
    assert not at.exception and any("not one" in w.value for w in at.warning)
    for view in ["Logit lens", "Attribution", "Neurons", "What a head writes", "Contribution graph"]:
        assert chart_specs(show(at, view)), view


def test_a_long_prompt_shows_a_window_of_the_lens(tiny_env):
    at = open_page(prompt="The cat sat on the mat and looked at the dog. " * 60)
    [grid, _] = chart_specs(at)
    assert decode(grid["data"][0]["z"]).shape[1] == 24
    at.slider(key="pred_lens_start").set_value(100).run()
    assert not at.exception
    assert grid["layout"]["title"]["text"].startswith("Logit lens")


def test_the_heads_that_push_a_token_open_in_experiments(tiny_env, tiny_model_dir, expected):
    at = show(open_page(), "Attribution")
    at.button(key="pred_to_experiments").click().run()
    assert not at.exception
    a = direct_logit_attribution(load_model(str(tiny_model_dir), device="cpu"), expected, int(expected.top_ids[-1, 0]))
    top3 = [tuple(int(i) for i in np.unravel_index(k, a.heads.shape)) for k in np.argsort(-a.heads, axis=None)[:3]]
    assert at.multiselect(key="exp_heads").value == top3
    assert "p after" in at.dataframe[0].value.columns  # the ablation already ran
