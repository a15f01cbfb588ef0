"""Inside the prediction as a person reaches it (tiny model): the contribution graph, what a
head writes, the neuron view and typed tokens, each figure's numbers held to core (itself
held to transformers and numpy in test_lens_core / test_lens_graph) or to the weights."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from safetensors.numpy import load_file
from streamlit.testing.v1 import AppTest

from core import load_model, trace
from core.contributions import contribution_graph
from core.prediction import head_writes, logit_lens
from tests import apptest
from tests.apptest import show_view
from tests.plotly_json import chart_specs, decode

PROMPT = "The <b>cat</b> sat on the mat & the dog sat on the"
PAGE = "pages/5_Prediction.py"


def open_page(**state) -> AppTest:
    return apptest.open_page(PAGE, PROMPT, state)


def show(at: AppTest, view: str) -> AppTest:
    return show_view(at, PAGE, view)


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def expected(lm):
    return trace(lm, PROMPT)


def _edge_hovers(spec: dict) -> list[str]:
    [hover] = [d for d in spec["data"] if d.get("hovertemplate") == "%{text}<extra></extra>"]
    return list(hover["text"])


def test_the_graph_draws_cores_edges_and_the_threshold_moves_it(tiny_env, lm, expected):
    at = show(open_page(), "Contribution graph")
    [graph] = chart_specs(at)
    counts = []
    for threshold in (0.04, 0.01):
        if threshold != 0.04:
            at.session_state["pred_graph_threshold"] = threshold
            at.run()
            assert not at.exception
            [graph] = chart_specs(at)
        edges = contribution_graph(lm, expected, -1, threshold)
        hovers = _edge_hovers(graph)
        assert len(hovers) == len(edges) > 0
        counts.append(len(edges))
        shown = [float(re.search(r"([\d.]+)% of the state", h).group(1)) / 100 for h in hovers]
        np.testing.assert_allclose(shown, [e.weight for e in edges], atol=6e-4)  # one decimal of a percent
    assert counts[1] > counts[0]  # a lower bar keeps more routes
    assert any("residual around block 0's attention" in h for h in hovers)  # down to the embeddings
    text = json.dumps(graph)
    assert "<b>cat" not in text and "&lt;b&gt;cat" in text  # token text is escaped, never markup
    assert graph["layout"]["yaxis"]["ticktext"][0] == "embeddings"


def test_what_a_head_and_a_neuron_write_come_from_core_and_the_weights(tiny_env, tiny_model_dir, lm, expected):
    at = show(open_page(pred_layer=1, pred_head=2, pred_neuron=17), "What a head writes")
    pushes, pattern = chart_specs(at)
    up, up_v, down, down_v = head_writes(lm, expected, 1, 2, -1, 12)
    np.testing.assert_allclose(decode(pushes["data"][0]["x"]), up_v, atol=1e-5)
    np.testing.assert_allclose(decode(pushes["data"][1]["x"]), down_v, atol=1e-5)
    np.testing.assert_allclose(np.nansum(decode(pattern["data"][0]["z"]), axis=1), 1, atol=1e-5)  # rows of a pattern
    at = show(at, "Neurons")
    strip, writes = chart_specs(at)
    w = load_file(str(tiny_model_dir / "model.safetensors"))
    direct = w["transformer.h.1.mlp.c_proj.weight"][17].astype(np.float64) @ w["transformer.wte.weight"].T
    np.testing.assert_allclose(decode(writes["data"][0]["x"]), np.sort(direct)[::-1][:12], atol=1e-5)
    np.testing.assert_allclose(decode(writes["data"][1]["x"]), np.sort(direct)[:12], atol=1e-5)
    assert decode(strip["data"][0]["z"]).shape == (16, expected.n_tokens)


def test_typed_tokens_colour_the_lens_and_bad_ones_get_a_message(tiny_env, lm, expected):
    word = next(w for w in (" cat", " the", " sat", " dog") if len(lm.encode(w)) == 1)
    token = lm.encode(word)[0]
    at = open_page()
    at.text_input(key="pred_token").input(word).run()
    at.radio(key="pred_lens_colour").set_value("typed").run()
    assert not at.exception and not at.warning
    lens = logit_lens(lm, expected, 5, positions=np.arange(expected.n_tokens), target=token)
    np.testing.assert_allclose(decode(chart_specs(at)[0]["data"][0]["z"]), lens.target_probs, rtol=1e-5)
    at = show(at, "Attribution")
    logit, total = (float(m.value) for m in at.metric)
    assert total == pytest.approx(logit, abs=2e-3)
    at.text_input(key="pred_minus").input("not one token").run()
    assert not at.exception and any("not one" in w.value for w in at.warning)
    at.text_input(key="pred_token").input("<b>two</b> words").run()
    assert not at.exception and any("not one" in w.value for w in at.warning)
    assert chart_specs(at)  # the page still draws, with the top prediction
