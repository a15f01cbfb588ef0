"""The Tour page (tiny model): every step draws; each step's figure is the one its page draws for the
same prompt and controls, reached through the step's "Open this in …" button; continuations run
only when Generate is pressed, and stay; Previous/Next move the step and the link."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import recipes.tour
from recipes.tour import AI, ESSAY_TOP5, STEPS
from tests import apptest
from tests.plotly_json import chart_specs
from ui.shell import HELLO_BYE

TOUR = "pages/0_Tour.py"
NUMBERS = list(range(1, len(STEPS) + 1))
PAGE_RUN_BUTTON = {"greedy": "gen_run", "samples": "gen_sbs_run"}  # what the Generation page needs pressed


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
    assert [s.prompt for s in STEPS] == [AI] * 6 + [HELLO_BYE] * 3 + [AI] * 3
    assert len(STEPS) == 12 and len({s.title for s in STEPS}) == 12


@pytest.mark.parametrize("number", NUMBERS, ids=[s.kind for s in STEPS])
def test_each_step_draws_what_its_page_draws(tiny_env, number):
    """Every step draws, and its figures are the page's, trace for trace, once the step's button
    opened the page."""
    step = STEPS[number - 1]
    at = open_tour(number)
    assert at.session_state["tour_step"] == number
    assert any(h.value == step.title for h in at.subheader)
    if step.generates:
        click(at, "tour_generate")
    assert chart_specs(at), f"step {number} drew no figure"
    assert any("not the essay's GPT-2" in c.value for c in at.caption)  # the tiny model is not GPT-2
    tour_figures = figures(at)
    assert tour_figures
    click(at, "tour_open")
    assert at.session_state["prompt"] == step.prompt
    for key, value in step.controls.items():
        assert at.session_state[key] == value, key
    if step.kind in PAGE_RUN_BUTTON:
        click(at, PAGE_RUN_BUTTON[step.kind])
    page_figures = figures(at)
    for title, data in tour_figures.items():
        assert title in page_figures, f"{title!r} is not on the {step.page_label} page: {list(page_figures)}"
        assert data == page_figures[title], title


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
