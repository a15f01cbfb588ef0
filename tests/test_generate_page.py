"""The generation page as Streamlit runs it (AppTest on app.py, then the page), tiny model.

Figures and tables are read back from the page and checked against core.generate and
transformers' generate on the same model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import core.generate
from core.generate import Decoding, first_divergence, generate_ids
from tests.conftest import ROOT
from tests.plotly_json import decode, figure, figures_by_title

TIMEOUT = 120
PROMPT = "The best thing about AI is its ability to"


def open_page(prompt: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    if prompt is not None:
        at.sidebar.text_area(key="sidebar_prompt").input(prompt).run()
    at.switch_page("pages/4_Generation.py")
    at.run()
    return at


def texts(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


@pytest.fixture
def page(tiny_env):
    at = open_page()
    assert not at.exception
    return at


def test_default_run_streams_a_seeded_sample_and_shows_every_step(page, tiny_lm):
    ids = tiny_lm.encode(PROMPT)
    expected = generate_ids(tiny_lm, ids, 40, Decoding(temperature=0.8, seed=0))
    assert page.title[0].value == "Generation"
    table = page.dataframe[0].value
    assert list(table["id"]) == [s.token_id for s in expected]  # same seed and settings: same text
    np.testing.assert_allclose(table["p (GPT-2)"], [s.prob for s in expected], rtol=1e-5)
    chart = figure(page, "The chosen token's probability")
    np.testing.assert_allclose(decode(chart["data"][0]["y"]), [s.prob for s in expected], rtol=1e-5)
    entropy = [d for d in chart["data"] if d.get("name") == "entropy (bits)"][0]
    np.testing.assert_allclose(decode(entropy["y"]), [s.entropy_bits for s in expected], rtol=1e-5)
    assert texts(page)[0].endswith(core.generate.decode_text(tiny_lm, [s.token_id for s in expected]))
    detail = figure(page, "Step 1:")
    np.testing.assert_allclose(decode(detail["data"][0]["x"]), expected[0].top_probs, rtol=1e-5)


def test_greedy_equals_transformers_generate_and_loops_are_marked(page, tiny_lm):
    page.radio(key="gen_method").set_value("greedy")
    page.slider(key="gen_tokens").set_value(30)
    page.button(key="gen_run").click().run()
    assert not page.exception
    ids = tiny_lm.encode(PROMPT)
    with torch.inference_mode():
        ref = tiny_lm.model.generate(torch.tensor([ids]), max_new_tokens=30, do_sample=False)[0, len(ids):].tolist()
    table = page.dataframe[0].value
    assert list(table["id"]) == ref[: len(table)]
    loops = core.generate.repeated_ngram_mask(list(table["id"]), 4)
    assert loops.any()  # the tiny random model falls into a loop, as greedy GPT-2 does
    assert list(table["repeat"] == "⟳") == list(loops)
    colors = figure(page, "The chosen token's probability")["data"][0]["marker"]["color"]
    assert [c == "#c0392b" for c in colors] == list(loops)


def test_moving_chart_widgets_does_not_generate_again(page, monkeypatch):
    calls = []
    real = core.generate.generate_steps
    monkeypatch.setattr(core.generate, "generate_steps", lambda *a, **k: calls.append(1) or real(*a, **k))
    before = page.dataframe[0].value
    page.number_input(key="gen_loop_n").set_value(2).run()
    page.slider(key="gen_detail_step").set_value(5).run()
    assert not page.exception and calls == []
    assert page.dataframe[0].value["id"].tolist() == before["id"].tolist()
    assert figures_by_title(page)  # still drawn
    assert any(t.startswith("Step 5:") for t in figures_by_title(page))
    page.button(key="gen_run").click().run()  # while "Generate" does (and the patch is seen)
    assert calls == [1]


def test_top_k_sampling_stays_in_the_allowed_set(page):
    page.slider(key="gen_temperature").set_value(2.0)
    page.number_input(key="gen_top_k").set_value(3)
    page.button(key="gen_run").click().run()
    table = page.dataframe[0].value
    assert (table["rank"] <= 3).all() and (table["out of"] == 3).all()


def test_stop_keeps_the_tokens_so_far(page):
    # A Stop click arrives as a rerun while the run is in progress: emulate the state it leaves.
    result = page.session_state["gen_result"]
    result.update(steps=result["steps"][:7], done=False)
    page.button(key="gen_stop").click().run()
    assert not page.exception
    assert len(page.dataframe[0].value) == 7
    assert any("7 tokens (stopped)" in c.value for c in page.caption)


def test_beam_search_shows_transformers_beams(page, tiny_lm):
    page.radio(key="gen_method").set_value("beam")
    page.slider(key="gen_tokens").set_value(8)
    page.slider(key="gen_beams").set_value(3)
    page.button(key="gen_run").click().run()
    assert not page.exception
    ids = tiny_lm.encode(PROMPT)
    with torch.inference_mode():
        out = tiny_lm.model.generate(torch.tensor([ids]), max_new_tokens=8, num_beams=3, do_sample=False,
                                     num_return_sequences=3, return_dict_in_generate=True, output_scores=True)
    beams = page.dataframe[0].value
    np.testing.assert_allclose(beams["score"], out.sequences_scores.numpy(), rtol=1e-5)
    assert list(beams["text"]) == [core.generate.decode_text(tiny_lm, s[len(ids):].tolist()) for s in out.sequences]
    live = page.dataframe[1].value  # the beams still running after the last step that had any
    assert len(live) == 3 and (np.diff(live["log-prob"]) <= 0).all()
    page.slider(key="gen_beam_step").set_value(1).run()
    assert not page.exception and len(page.dataframe[1].value) == 3


def test_side_by_side_marks_where_samples_leave_greedy(page, tiny_lm):
    page.session_state["gen_tab"] = "Side by side"
    page.run()
    assert not page.exception
    grid = figure(page, "Greedy and 5 samples side by side")
    ids = tiny_lm.encode(PROMPT)
    greedy = [s.token_id for s in generate_ids(tiny_lm, ids, 20, Decoding(method="greedy", stop_at_eos=False))]
    samples = [[s.token_id for s in generate_ids(tiny_lm, ids, 20, Decoding(temperature=0.8, seed=k, stop_at_eos=False))]
               for k in range(5)]
    diverge = [first_divergence(greedy, s) for s in samples]
    marks = grid["data"][1]
    assert list(decode(marks["x"])) == [d + 1 for d in diverge if d is not None]
    table = page.dataframe[0].value
    assert table["run"].tolist()[0] == "greedy" and len(table) == 6
    assert table["text"].tolist()[0] == core.generate.decode_text(tiny_lm, greedy)


def test_temperature_sweep_flattens(page, tiny_lm):
    page.session_state["gen_tab"] = "Temperature"
    page.run()
    assert not page.exception
    bars = figure(page, "The next token's probabilities at 6 temperatures")["data"]
    ids = tiny_lm.encode(PROMPT)
    with torch.inference_mode():
        logits = tiny_lm.model(torch.tensor([ids])).logits[0, -1]
    top = logits.topk(10).indices
    peaks = []
    for bar, temp in zip(bars, [0.2, 0.5, 0.8, 1.0, 1.5, 2.0]):
        probs = torch.softmax(logits.double() / temp, -1)
        np.testing.assert_allclose(decode(bar["y"]), probs[top].numpy(), rtol=1e-4, atol=1e-7)
        bits = -(probs * probs.log2()).sum().item()
        assert bar["name"] == f"T = {temp:g} · {bits:.2f} bits"
        peaks.append(decode(bar["y"])[0])
    assert peaks == sorted(peaks, reverse=True)  # the top token loses probability as T rises


def test_token_text_is_escaped_and_never_markdown(tiny_env):
    prompt = "<b>bold</b> **markdown** <img src=x onerror=alert(1)>"
    at = open_page(prompt)
    assert not at.exception
    for fig in figures_by_title(at).values():
        text = json.dumps(fig)
        assert "<img" not in text and "<b>" not in text
    assert all(prompt not in md.value for md in at.markdown)
    assert texts(at)[0].startswith(prompt)  # shown as plain text, in a code block


def test_a_prompt_that_fills_the_context_gets_a_message(tiny_env):
    at = open_page(" ".join(f"w{i}" for i in range(1500)))
    assert not at.exception
    assert any("no room" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 0
