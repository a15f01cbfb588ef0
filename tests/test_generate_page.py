"""The generation page as Streamlit runs it (AppTest on app.py, then the page), tiny model.

Figures and tables are read back from the page and checked against core.sampling, core.beam and
transformers' generate on the same model. A long run is cut the way a click cuts it: the
script stops in the middle of the work (`interrupt_after`), and the next run is whatever
the person clicked (Stop, Continue, or any other widget)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import core.beam
import core.kv_cache
import core.sampling
from core.beam import beam_search_steps
from core.continuations import decode_text, first_divergence, repeated_ngram_mask
from core.sampling import Decoding, generate_ids
from tests import apptest
from tests.apptest import GENERATION
from tests.conftest import ROOT
from tests.plotly_json import decode, figure, figures_by_title

TIMEOUT = 120
PROMPT = "The best thing about AI is its ability to"


def open_page(prompt: str | None = None, **query) -> AppTest:
    return apptest.open_page(GENERATION, query=query, typed=prompt, check=False)


def texts(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


def generate(at: AppTest) -> AppTest:
    at.button(key="gen_run").click().run()
    assert not at.exception
    return at


GENERATORS = {"generate_steps": core.sampling, "continue_runs": core.sampling, "beam_search_steps": core.beam}


def interrupt_after(monkeypatch, name: str, n: int, calls: list | None = None) -> None:
    """The generator `name` (of core.sampling or core.beam) stops the page's script after yielding
    n items, once, as a click during the run does (Streamlit interrupts the script at its next st.*
    call); calls records the `resume` argument of every call."""
    module = GENERATORS[name]
    real = getattr(module, name)
    fired = []

    def cut(*args, **kwargs):
        if calls is not None:
            calls.append(kwargs.get("resume"))
        for i, item in enumerate(real(*args, **kwargs)):
            if i == n and not fired:
                fired.append(True)
                st.stop()
            yield item

    monkeypatch.setattr(module, name, cut)


def progress_text(at: AppTest) -> str:
    bars = at.get("progress")
    assert len(bars) == 1
    return bars[0].proto.text


@pytest.fixture
def fresh(tiny_env):
    at = open_page()
    assert not at.exception
    return at


@pytest.fixture
def page(fresh):
    return generate(fresh)


def test_nothing_runs_on_opening_the_page(fresh, monkeypatch):
    forwards = []
    real = core.kv_cache.next_logits  # every generation forward, sampling's and beam search's
    monkeypatch.setattr(core.kv_cache, "next_logits", lambda *a: forwards.append(1) or real(*a))
    fresh.run()
    fresh.session_state["gen_tab"] = "Side by side"
    fresh.run()
    assert not fresh.exception and forwards == []  # no generation forward of the model
    assert len(fresh.dataframe) == 0 and len(fresh.code) == 0 and len(fresh.get("plotly_chart")) == 0
    infos = " ".join(i.value for i in fresh.info)
    assert "Press **Generate**" in infos and "Run side by side" in infos
    generate(fresh)
    assert len(forwards) == 40  # the prompt, then one position per token


def test_generate_makes_a_seeded_sample_and_shows_every_step(page, tiny_lm):
    ids = tiny_lm.encode(PROMPT)
    expected = generate_ids(tiny_lm, ids, 40, Decoding(temperature=0.8, seed=0))
    assert page.title[0].value == "Generation"
    table = page.dataframe[0].value
    assert list(table["id"]) == [s.token_id for s in expected]  # same seed and settings: same text
    np.testing.assert_allclose(table["p (model)"], [s.prob for s in expected], rtol=1e-5)
    chart = figure(page, "The chosen token's probability")
    np.testing.assert_allclose(decode(chart["data"][0]["y"]), [s.prob for s in expected], rtol=1e-5)
    entropy = [d for d in chart["data"] if d.get("name") == "entropy (bits)"][0]
    np.testing.assert_allclose(decode(entropy["y"]), [s.entropy_bits for s in expected], rtol=1e-5)
    assert texts(page)[0].endswith(decode_text(tiny_lm, [s.token_id for s in expected]))
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
    loops = repeated_ngram_mask(list(table["id"]), 4)
    assert loops.any()  # the tiny random model falls into a loop, as greedy GPT-2 does
    assert list(table["repeat"] == "⟳") == list(loops)
    colors = figure(page, "The chosen token's probability")["data"][0]["marker"]["color"]
    assert [c == "#c0392b" for c in colors] == list(loops)


def test_moving_chart_widgets_does_not_generate_again(page, monkeypatch):
    calls = []
    real = core.sampling.generate_steps
    monkeypatch.setattr(core.sampling, "generate_steps", lambda *a, **k: calls.append(1) or real(*a, **k))
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


def test_a_run_shows_its_progress_and_stop_keeps_the_tokens_so_far(fresh, tiny_lm, monkeypatch):
    ids = tiny_lm.encode(PROMPT)
    with torch.inference_mode():
        out = tiny_lm.model.generate(torch.tensor([ids]), max_new_tokens=40, min_new_tokens=40, do_sample=False)
    ref = out[0, len(ids):].tolist()
    fresh.radio(key="gen_method").set_value("greedy").run()
    interrupt_after(monkeypatch, "generate_steps", 7)
    fresh.button(key="gen_run").click().run()  # cut after token 7, mid-run: what the browser shows then
    assert not fresh.exception
    assert progress_text(fresh).startswith("Generating: token 7 of 40")
    assert texts(fresh)[-1] == decode_text(tiny_lm, ids + ref[:7])  # the text so far, as it grows
    fresh.button(key="gen_stop").click().run()
    assert not fresh.exception
    assert list(fresh.dataframe[0].value["id"]) == ref[:7]  # kept, not made again, not lost
    assert any("7 tokens (stopped)" in c.value for c in fresh.caption)
    assert len(fresh.get("progress")) == 0 and not [b for b in fresh.button if b.key == "gen_stop"]  # settled
    fresh.button(key="gen_continue").click().run()  # goes on from token 8
    assert not fresh.exception
    assert list(fresh.dataframe[0].value["id"]) == ref
    assert any(c.value.startswith("40 tokens ·") for c in fresh.caption)


def test_a_run_cut_by_another_click_goes_on_where_it_was(fresh, tiny_lm, monkeypatch):
    calls = []
    interrupt_after(monkeypatch, "generate_steps", 12, calls)
    fresh.button(key="gen_run").click().run()
    fresh.number_input(key="gen_top_k").set_value(5).run()  # any widget: a rerun during the run
    assert not fresh.exception
    assert [len(c) for c in calls] == [0, 12]  # picked up after token 12, not started again
    # with the settings it was started with; the new top-k waits for the next Generate
    expected = generate_ids(tiny_lm, tiny_lm.encode(PROMPT), 40, Decoding(temperature=0.8, seed=0))
    assert list(fresh.dataframe[0].value["id"]) == [s.token_id for s in expected]


def beam_reference(lm, n: int, beams: int):
    ids = lm.encode(PROMPT)
    with torch.inference_mode():
        return lm.model.generate(torch.tensor([ids]), max_new_tokens=n, num_beams=beams, do_sample=False,
                                 num_return_sequences=beams, return_dict_in_generate=True, output_scores=True)


def test_beam_search_shows_transformers_beams(page, tiny_lm):
    page.radio(key="gen_method").set_value("beam").run()
    page.slider(key="gen_tokens").set_value(8)
    page.slider(key="gen_beams").set_value(3)
    generate(page)
    ids = tiny_lm.encode(PROMPT)
    out = beam_reference(tiny_lm, 8, 3)
    beams = page.dataframe[0].value
    np.testing.assert_allclose(beams["score"], out.sequences_scores.numpy(), rtol=1e-5)
    assert list(beams["text"]) == [decode_text(tiny_lm, s[len(ids):].tolist()) for s in out.sequences]
    live = page.dataframe[1].value  # the beams still running after the last step that had any
    assert len(live) == 3 and (np.diff(live["log-prob"]) <= 0).all()
    page.slider(key="gen_beam_step").set_value(1).run()
    assert not page.exception and len(page.dataframe[1].value) == 3


def test_beam_search_shows_its_steps_and_stop_keeps_the_beams(fresh, tiny_lm, monkeypatch):
    fresh.radio(key="gen_method").set_value("beam").run()
    fresh.slider(key="gen_tokens").set_value(10)
    fresh.slider(key="gen_beams").set_value(3)
    interrupt_after(monkeypatch, "beam_search_steps", 4)
    fresh.button(key="gen_run").click().run()
    assert not fresh.exception
    assert progress_text(fresh).startswith("Beam search with 3 beams: step 4 of at most 10")
    fresh.button(key="gen_stop").click().run()
    assert not fresh.exception and len(fresh.get("progress")) == 0
    assert any("Stopped after step 4" in c.value for c in fresh.caption)
    ids = tiny_lm.encode(PROMPT)
    *_, fourth = list(beam_search_steps(tiny_lm, ids, 10, 3, 1.0, False))[:4]
    live = fresh.dataframe[-1].value  # the beams running after step 4, as a search that is not stopped has them
    assert list(live["text so far"]) == [decode_text(tiny_lm, b) for b, _ in fourth.result().running[3]]
    assert texts(fresh)[0].endswith(decode_text(tiny_lm, fourth.result().running[3][0][0]))
    fresh.button(key="gen_continue").click().run()
    assert not fresh.exception
    expected = beam_reference(tiny_lm, 10, 3).sequences_scores.numpy()
    np.testing.assert_allclose(fresh.dataframe[0].value["score"], expected, rtol=1e-5)


def side_by_side(at: AppTest) -> AppTest:
    at.session_state["gen_tab"] = "Side by side"
    at.run()
    at.button(key="gen_sbs_run").click().run()
    assert not at.exception
    return at


def test_side_by_side_marks_where_samples_leave_greedy(page, tiny_lm):
    side_by_side(page)
    grid = figure(page, "Greedy and 5 samples side by side")
    ids = tiny_lm.encode(PROMPT)
    greedy = [s.token_id for s in generate_ids(tiny_lm, ids, 20, Decoding(method="greedy", stop_at_eos=False))]
    samples = [[s.token_id for s in generate_ids(tiny_lm, ids, 20, Decoding(temperature=0.8, seed=k,
                                                                              stop_at_eos=False))]
               for k in range(5)]
    diverge = [first_divergence(greedy, s) for s in samples]
    marks = grid["data"][1]
    assert list(decode(marks["x"])) == [d + 1 for d in diverge if d is not None]
    table = page.dataframe[-1].value
    assert table["run"].tolist()[0] == "greedy" and len(table) == 6
    assert table["text"].tolist()[0] == decode_text(tiny_lm, greedy)


def test_side_by_side_stops_with_the_runs_so_far(fresh, tiny_lm, monkeypatch):
    interrupt_after(monkeypatch, "continue_runs", 25)  # greedy's 20 tokens and 5 of the first sample
    fresh.session_state["gen_tab"] = "Side by side"
    fresh.run()
    fresh.button(key="gen_sbs_run").click().run()
    assert progress_text(fresh).startswith("Side by side: run 2 of 6 (T 0.8, seed 0), token 5 of 20")
    fresh.button(key="gen_sbs_stop").click().run()
    assert not fresh.exception
    ids = tiny_lm.encode(PROMPT)
    greedy = [s.token_id for s in generate_ids(tiny_lm, ids, 20, Decoding(method="greedy", stop_at_eos=False))]
    sample = [s.token_id for s in generate_ids(tiny_lm, ids, 20, Decoding(temperature=0.8, seed=0, stop_at_eos=False))]
    table = fresh.dataframe[-1].value
    assert table["text"].tolist() == [decode_text(tiny_lm, greedy), decode_text(tiny_lm, sample[:5])]
    fresh.button(key="gen_sbs_continue").click().run()
    assert not fresh.exception and len(fresh.dataframe[-1].value) == 6
    assert fresh.dataframe[-1].value["text"].tolist()[1] == decode_text(tiny_lm, sample)


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
    at = generate(open_page(prompt))
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


SAMPLING = {"Temperature", "Top-p (1 = off)", "Top-k (0 = off)", "Seed"}
BEAM = {"Beams", "Length penalty", "Early stopping"}


def controls(at: AppTest) -> set[str]:
    """The labels of the decoding controls drawn above the result (tabs have their own)."""
    tab_keys = ("gen_loop_n", "gen_detail_step", "gen_beam_step", "gen_sbs_", "gen_sweep_", "sidebar_")
    widgets = list(at.slider) + list(at.number_input) + list(at.selectbox) + list(at.checkbox)
    return {w.label for w in widgets if not str(w.key).startswith(tab_keys)}


def test_the_form_shows_only_the_chosen_methods_controls_and_keeps_the_others(fresh):
    assert controls(fresh) == {"New tokens", "Stop at end of text"} | SAMPLING
    fresh.slider(key="gen_temperature").set_value(1.3).run()
    fresh.radio(key="gen_method").set_value("greedy").run()
    assert controls(fresh) == {"New tokens", "Stop at end of text"}
    fresh.radio(key="gen_method").set_value("beam").run()
    assert controls(fresh) == {"New tokens"} | BEAM
    fresh.radio(key="gen_method").set_value("sample").run()
    assert not fresh.exception and fresh.slider(key="gen_temperature").value == 1.3  # hidden, not forgotten
    assert fresh.query_params["gen_temperature"] == "1.3"


def test_a_link_asking_for_one_token_works(tiny_env, tiny_lm):
    at = generate(open_page(gen_tokens="1", gen_method="greedy"))
    ids = tiny_lm.encode(PROMPT)
    with torch.inference_mode():
        ref = tiny_lm.model.generate(torch.tensor([ids]), max_new_tokens=1, do_sample=False)[0, len(ids):].tolist()
    assert list(at.dataframe[0].value["id"]) == ref
    assert any(c.value == "Show the full table of step: 1 (the only possible value)" for c in at.caption)
    assert figure(at, "Step 1:")


def test_a_prompt_with_room_for_one_token_works_everywhere(tiny_env, tiny_lm):
    prompt = " the" * (tiny_lm.n_ctx - 1)
    assert len(tiny_lm.encode(prompt)) == tiny_lm.n_ctx - 1
    at = open_page(prompt)
    assert not at.exception
    assert any(c.value == "New tokens: 1 (the only possible value)" for c in at.caption)
    at.radio(key="gen_method").set_value("greedy").run()
    generate(at)
    assert len(at.dataframe[0].value) == 1
    at.radio(key="gen_method").set_value("beam").run()
    generate(at)
    assert len(at.dataframe[0].value) == at.session_state["gen_beams"]  # every beam ends at the one position left
    side_by_side(at)
    assert any(c.value == "Tokens: 1 (the only possible value)" for c in at.caption)
    assert [len(r) for r in figure(at, "Greedy and 5 samples")["data"][0]["text"]] == [1] * 6


def test_values_out_of_range_are_corrected_in_the_page_and_the_link(tiny_env):
    at = open_page(gen_tokens="999", gen_top_p="7", gen_method="nonsense", gen_sweep_temps="[0.5, 9, \"x\"]",
                   gen_tab="Temperature")
    assert not at.exception
    assert at.slider(key="gen_tokens").value == 200 and at.query_params["gen_tokens"] == "200"
    assert at.slider(key="gen_top_p").value == 1.0 and at.query_params["gen_top_p"] == "1.0"
    assert at.radio(key="gen_method").value == "sample" and at.query_params["gen_method"] == "sample"
    assert at.multiselect(key="gen_sweep_temps").value == [0.5] and at.query_params["gen_sweep_temps"] == "[0.5]"


def test_clearing_the_prompt_keeps_the_controls(tiny_env):
    at = open_page(gen_tokens="30", gen_temperature="1.1", gen_top_p="0.9", gen_seed="7")
    at.sidebar.text_area(key="sidebar_prompt").input("").run()
    assert any("The prompt is empty" in i.value for i in at.info)
    for prompt in ("Hello world", "Hello world again"):
        at.sidebar.text_area(key="sidebar_prompt").input(prompt).run()
        assert not at.exception
        keys = ("gen_method", "gen_tokens", "gen_temperature", "gen_top_p", "gen_seed")
        values = {k: at.session_state[k] for k in keys}
        assert values == {"gen_method": "sample", "gen_tokens": 30, "gen_temperature": 1.1, "gen_top_p": 0.9,
                          "gen_seed": 7}
        assert at.slider(key="gen_tokens").value == 30 and at.query_params["gen_tokens"] == "30"


def test_the_runs_table_never_shows_none(tiny_lm):
    """Issue 25 item 14: the greedy row and a run that never differs read as words, not "None"."""
    from recipes.generation import runs_table

    runs = [[1, 2, 3, 4], [1, 2, 9, 4], [1, 2, 3, 4]]
    diverge, table = runs_table(tiny_lm, runs, ["greedy", "seed 0", "seed 1"])
    assert diverge == [None, 2, None]  # the figure's markers still get the numbers
    column = table["first step that differs from greedy"].tolist()
    assert column == ["—", "3", "never"]
    assert not table.astype(str).isin(["None", "nan", "<NA>"]).any().any()


# ---- a model that is not GPT-2 (issue 25, item 13) ------------------------------------------------
BUNDLED = ROOT / "bundled" / "mini-gpt2-kjv"


def plain(markdown: str) -> str:
    """Markdown as it reads on the page: escapes and invisible word joiners gone."""
    return markdown.replace("\u2060", "").replace("\\", "")


def everything_said(at: AppTest) -> str:
    """Every text a person can read on the page: prose, widget labels and help, figures, table headers."""
    parts = [plain(e.value) for kind in ("markdown", "caption", "info", "warning", "subheader", "title")
             for e in at.get(kind)]
    for kind in ("slider", "number_input", "radio", "selectbox", "checkbox", "text_input", "tab", "button"):
        parts += [f"{plain(w.label)} {plain(w.help or '')}" for w in at.get(kind) if hasattr(w, "label")]
    parts += [json.dumps(spec, ensure_ascii=False) for spec in figures_by_title(at).values()]
    parts += [" ".join(map(str, d.value.columns)) for d in at.dataframe]
    return "\n".join(parts)


def test_whose_numbers_a_label_names_and_when_the_page_says_the_model_is_not_gpt2():
    from types import SimpleNamespace

    from recipes.generation import model_note
    from recipes.naming import is_gpt2, model_name

    for name in ("gpt2", "gpt2-medium", "gpt2-xl", "distilgpt2"):
        gpt2 = SimpleNamespace(name=name, label=name, n_layer=12)
        assert is_gpt2(gpt2) and model_name(gpt2) == "GPT-2" and not model_note(gpt2).items
    for name, label in ((str(BUNDLED), "mini-gpt2-kjv"), ("/srv/models/my-gpt", "my-gpt"), ("org/gpt2-finetuned",
                                                                                             "org/gpt2-finetuned")):
        other = SimpleNamespace(name=name, label=label, n_layer=6)
        assert not is_gpt2(other) and model_name(other) == label
        [note] = model_note(other).items
        assert "not GPT-2" in plain(note.text) and label in plain(note.text)


def test_the_bundled_model_gets_a_note_and_no_label_calls_its_numbers_gpt2s(bundled_env):
    at = generate(open_page())
    notes = [plain(i.value) for i in at.info if "not GPT-2" in i.value]
    assert len(notes) == 1 and "mini-gpt2-kjv" in notes[0] and "King James Bible" in notes[0]
    assert "samples are rough" in notes[0]
    said = everything_said(at)
    assert "The continuation, coloured by mini-gpt2-kjv's probability" in said
    assert "Step 1: mini-gpt2-kjv's 10 likeliest next tokens" in said and "p (model)" in said
    assert "p(chosen) under mini-gpt2-kjv" in said
    at.session_state["gen_tab"] = "Temperature"
    at.run()
    assert not at.exception
    said = everything_said(at)
    assert "mini-gpt2-kjv's likeliest next tokens" in said and "never past mini-gpt2-kjv's 256 positions" in said
    assert not [s for s in ("GPT-2's", "GPT-2’s", "p (GPT-2)", "under GPT-2") if s in said]


def test_a_random_model_gets_the_general_note(fresh):
    [note] = [plain(i.value) for i in fresh.info if "not GPT-2" in i.value]
    assert "sentence above may not hold" in note and "King James" not in note
