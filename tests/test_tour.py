"""The Tour page (tiny model): every step draws; each step's figure is the one its page draws for the
same prompt and controls, reached through the step's "Open this in …" button, which also carries
what Generate made; continuations run only when Generate is pressed, and stay; Previous/Next move
the step and the link; the features step works with and without an SAE; the steering step is the
Steering page's steer."""
from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

import recipes.tour
from recipes.tour import AI, ESSAY_TOP5, STEPS
from tests import apptest
from tests.plotly_json import chart_specs
from ui.shell import HELLO_BYE

TOUR = "pages/0_Tour.py"
NUMBERS = list(range(1, len(STEPS) + 1))
SHIPPED_HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture
def shipped(tiny_env, tiny_sae_dir, tmp_path, monkeypatch):
    """The tiny model as the bundled one, with a random SAE shipped beside it (as bundled/mini-gpt2-kjv-saes/)."""
    from recipes import features

    shutil.copytree(tiny_sae_dir, tmp_path / "shipped" / SHIPPED_HOOK)
    monkeypatch.setattr(features, "BUNDLED_DIR", tiny_env)
    monkeypatch.setattr(features, "BUNDLED_SAES", tmp_path / "shipped")
    return tmp_path / "shipped" / SHIPPED_HOOK


def open_tour(number: int = 1) -> AppTest:
    return apptest.open_page(TOUR, query={"tour_step": str(number)})


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def figures(at: AppTest) -> dict[str, list]:
    """title -> the figure's traces, of every chart on the page."""
    return {spec["layout"]["title"]["text"]: spec["data"] for spec in chart_specs(at)}


def test_the_steps_use_the_essays_prompts():
    assert recipes.tour.HELLO_BYE == HELLO_BYE
    assert [s.prompt for s in STEPS] == [AI] * 6 + [HELLO_BYE] * 3 + [AI] * 5
    assert len(STEPS) == 14 and len({s.title for s in STEPS}) == 14
    assert [s.kind for s in STEPS][8:10] == ["across_layers", "features"] and STEPS[-1].kind == "steer"
    assert all(s.title.startswith(f"{n} · ") for n, s in enumerate(STEPS, 1))


@pytest.mark.parametrize("number", NUMBERS, ids=[s.kind for s in STEPS])
def test_each_step_draws_what_its_page_draws(tiny_env, request, number):
    """Every step draws, and its figures are the page's, trace for trace, once the step's button
    opened the page; what Generate made goes with it, so the page shows it without running again
    (the features step with an SAE shipped for the model)."""
    step = STEPS[number - 1]
    if step.kind == "features":
        request.getfixturevalue("shipped")
    at = open_tour(number)
    assert at.session_state["tour_step"] == number
    assert any(h.value == step.title for h in at.subheader)
    if step.generates:
        click(at, "tour_generate")
    assert chart_specs(at), f"step {number} drew no figure"
    assert any("not from the essay's GPT-2" in c.value for c in at.caption)  # the tiny model is not GPT-2
    tour_figures, tour_texts = figures(at), [c.value for c in at.code]
    assert tour_figures
    prompt = at.session_state["prompt"]
    click(at, "tour_open")
    assert at.session_state["prompt"] == (step.prompt if step.uses_trace else prompt)
    for key, value in step.controls.items():
        assert at.session_state[key] == value, key
    page_figures = figures(at)  # no Generate pressed on the page
    for title, data in tour_figures.items():
        assert title in page_figures, f"{title!r} is not on the {step.page_label} page: {list(page_figures)}"
        assert data == page_figures[title], title
    if step.kind == "steer":  # the two texts are on the page's Generation tab
        at.session_state["steer_view"] = "Generation"
        at.run()
    assert [c.value for c in at.code] == tour_texts  # the texts (greedy, steering); side by side is a figure


def test_the_features_step_without_an_sae_says_why_and_shows_neurons(tiny_env):
    at = open_tour(10)
    assert "No SAE ships for" in at.info[0].value and "Features page" in at.info[0].value
    (strip,) = chart_specs(at)
    assert strip["layout"]["title"]["text"].startswith("Layer 1's most active neurons")
    click(at, "tour_open")
    assert at.session_state["feat_view"] == "Features per token"
    assert any("no public SAEs" in i.value for i in at.info)  # the Features page says how to load one


def test_the_features_step_opens_on_the_shipped_sae(shipped):
    at = open_tour(10)
    assert not at.info
    heat = figures(at)
    assert any(title.startswith("The 20 strongest features (residual stream before block 1)") for title in heat)
    assert any("ships with the app" in c.value for c in at.caption)  # the model note for the bundled model
    assert not any("Pick gpt2" in c.value for c in at.caption)
    click(at, "tour_open")
    assert at.session_state["feat_sae_source"] == "bundled" and at.session_state["feat_sae_hook"] == SHIPPED_HOOK


def test_the_steering_step_is_the_steering_pages_love_minus_hate(tiny_env, tiny_lm):
    import numpy as np
    import torch

    from core.steering import contrast_vector, steered_logits

    at = open_tour(len(STEPS))
    table = at.dataframe[0].value
    ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.encode(AI)
    v = contrast_vector(tiny_lm, "Love", "Hate", 1)  # an early block on a small model: 1 of 2
    after = torch.softmax(steered_logits(tiny_lm, ids, v, 1, 5.0)[-1], -1).numpy()
    np.testing.assert_allclose(table["p steered"], after[table["id"]], rtol=1e-4, atol=1e-7)
    assert any("Generate" in i.value for i in at.info) and not at.code
    click(at, "tour_generate")
    assert len(at.code) == 2 and all(c.value.startswith(AI) for c in at.code)


def test_opening_a_step_says_it_replaces_the_sidebars_prompt(tiny_env):
    at = apptest.open_page(TOUR, "my own prompt", query={"tour_step": "8"})
    assert any("in place of yours" in c.value for c in at.caption)
    click(at, "tour_open")
    assert at.session_state["prompt"] == HELLO_BYE
    same = apptest.open_page(TOUR, AI, query={"tour_step": "1"})
    assert not any("in place of yours" in c.value for c in same.caption)
    weights = apptest.open_page(TOUR, "my own prompt", query={"tour_step": "11"})  # no prompt in the figure
    assert not any("in place of yours" in c.value for c in weights.caption)
    click(weights, "tour_open")
    assert weights.session_state["prompt"] == "my own prompt"


def test_continuations_wait_for_generate_and_stay(tiny_env, monkeypatch):
    calls = []
    real = recipes.tour.continuations
    monkeypatch.setattr(recipes.tour, "continuations", lambda *a: calls.append(a[0].kind) or real(*a))
    at = open_tour(2)
    assert not calls and not chart_specs(at) and not at.code
    assert any("Generate" in i.value for i in at.info)
    click(at, "tour_generate")
    assert calls == ["greedy"] and chart_specs(at) and at.code
    text = at.code[0].value
    assert text.startswith(AI)
    click(at, "tour_next")  # step 3 waits for its own Generate
    assert calls == ["greedy"] and not chart_specs(at)
    click(at, "tour_prev")  # back on step 2: the text is still there, not made again
    assert calls == ["greedy"] and at.code[0].value == text


def test_previous_and_next_move_the_step_and_the_link(tiny_env):
    at = open_tour(1)
    assert at.button(key="tour_prev").disabled
    click(at, "tour_next")
    assert at.session_state["tour_step"] == 2 and at.query_params["tour_step"] in ("2", ["2"])
    assert any(h.value == STEPS[1].title for h in at.subheader)
    click(at, "tour_prev")
    assert at.session_state["tour_step"] == 1 and at.query_params["tour_step"] in ("1", ["1"])
    last = open_tour(len(STEPS))
    assert last.button(key="tour_next").disabled


def test_step_1_shows_the_essays_numbers_beside_the_live_ones(tiny_env):
    at = open_tour(1)
    assert any("Wolfram's essay (GPT-2)" in m.value for m in at.markdown)
    essay = next(df.value for df in at.dataframe if "learn" in set(df.value.iloc[:, 0]))
    assert list(essay["word"]) == [w for w, _ in ESSAY_TOP5]
    assert list(essay["probability"]) == [p for _, p in ESSAY_TOP5]
    assert any(len(df.value) == 5 and "probability" in df.value.columns and "learn" not in set(df.value.iloc[:, 0])
               for df in at.dataframe)  # the live top 5
