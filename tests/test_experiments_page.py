"""The Experiments page as a person reaches it, tiny model: every view draws core's numbers."""
from __future__ import annotations

import numpy as np
from streamlit import dataframe_util
from streamlit.testing.v1 import AppTest

from core import load_model, trace
from core.interventions import ablate, head_ablation_scan
from core.prediction import direct_logit_attribution
from tests import apptest
from tests.apptest import EXPERIMENTS, show_view
from tests.plotly_json import chart_specs, decode

PROMPT = "The cat sat on the mat"


def open_page(**state) -> AppTest:
    return apptest.open_page(EXPERIMENTS, PROMPT, state)


def show(at: AppTest, view: str) -> AppTest:
    return show_view(at, EXPERIMENTS, view)


def shown_cells(table) -> "pd.DataFrame":  # noqa: F821
    """A table's cells as the page writes them (its formats applied), not the numbers the CSV keeps."""
    return dataframe_util.convert_arrow_bytes_to_pandas_df(table.proto.arrow_data.styler.display_values)


def test_the_page_opens_on_a_default_knock_out_the_reader_can_take_or_change(tiny_env, tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    t = trace(lm, PROMPT)
    dla = direct_logit_attribution(lm, t, int(t.top_ids[-1, 0])).heads
    head = tuple(int(i) for i in np.unravel_index(np.argmax(dla), dla.shape))
    at = open_page()
    [note] = [i.value for i in at.info]
    assert "Nothing is picked yet" in note and f"layer {head[0]}, head {head[1]}" in note
    table = at.dataframe[0].value  # the default already ran: it is cheap on this prompt
    np.testing.assert_allclose(table["p after"], ablate(lm, t, heads=[head]).next_probs[table["id"]], rtol=1e-6)
    assert at.multiselect(key="exp_heads").value == [] and at.query_params["exp_heads"] == "[]"  # a default only
    at.button(key="exp_pick_default").click().run()
    assert not at.exception and at.multiselect(key="exp_heads").value == [head]
    assert not any("Nothing is picked" in i.value for i in at.info)


def test_a_default_that_would_take_long_waits_for_the_button(tiny_env, monkeypatch):
    from recipes import experiments as recipe

    monkeypatch.setattr(recipe, "DEFAULT_MAX_S", 0.0)
    at = open_page()
    assert not at.dataframe and not chart_specs(at)
    assert "runs only once you pick it" in at.info[0].value
    at.button(key="exp_pick_default").click().run()
    assert not at.exception and at.dataframe


def test_the_change_column_is_in_percentage_points_and_the_csv_keeps_numbers(tiny_env):
    at = open_page(exp_heads=[(0, 1), (1, 2)])
    numbers, cells = at.dataframe[0].value, shown_cells(at.dataframe[0])
    assert numbers["change"].dtype == np.float64
    np.testing.assert_allclose(numbers["change"], numbers["p after"] - numbers["p before"], atol=1e-12)
    assert all(c.endswith(" pp") for c in cells["change"]), cells["change"].tolist()
    assert all(c.endswith("%") or "×10" in c for c in cells["p before"])
    written = [float(c.removesuffix(" pp").replace("−", "-")) for c in cells["change"]]
    np.testing.assert_allclose(written, numbers["change"] * 100, rtol=0.06)  # two significant digits


def test_knocking_out_a_head_shows_the_ablated_prediction(tiny_env, tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    t = trace(lm, PROMPT)
    at = open_page()
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
    assert not any("must match" in w.value for w in at.warning)  # padded: the warning's fix is done
    assert any("<|endoftext|> tokens, so both have" in c.value for c in at.caption)


def test_a_rerun_does_not_run_the_knock_out_again(tiny_env, monkeypatch):
    from recipes import experiments as recipe

    runs = []
    monkeypatch.setattr(recipe, "ablate", lambda *a, **k: runs.append(k) or ablate(*a, **k))
    at = open_page(exp_heads=[(0, 1)])
    at.toggle(key="exp_sae").set_value(False).run()  # another widget: the page runs again
    at.run()
    assert not at.exception and len(runs) == 1 and at.dataframe


def _clicks_a_scan_cell():
    from types import SimpleNamespace

    import streamlit as st

    from ui import controls
    from ui.state import remember

    ss = st.session_state
    if ss.pop("click", None) is not None:  # what Streamlit does on a click, before the run: the event, on_select
        ss["chart"] = SimpleNamespace(selection={"points": [{"x": 2.2, "y": 0.9, "z": -0.4}]})
        controls.add_clicked("chart", "heads")
    if ss.get("draw_picker", True):
        remember("heads")
        st.multiselect("heads", [(0, 0), (0, 1), (1, 0), (1, 2)], key="heads")


def test_a_click_on_the_scan_adds_its_head_to_those_picked():
    """The scan chart's on_select (ui.controls.add_clicked): the clicked cell's (layer, head) joins the heads
    already picked, once, also while the Knock out tab (the picker) is closed."""
    at = AppTest.from_function(_clicks_a_scan_cell).run()
    at.multiselect(key="heads").select((0, 1)).run()
    at.session_state["click"] = True
    at.run()
    assert not at.exception and at.session_state["heads"] == [(0, 1), (1, 2)]
    at.session_state["click"] = True
    at.run()
    assert at.session_state["heads"] == [(0, 1), (1, 2)]  # a second click on the same cell adds nothing
    at.session_state["draw_picker"] = False  # the picker's tab is closed: Streamlit drops its value
    at.run()
    assert "heads" not in at.session_state
    at.session_state["click"] = True
    at.session_state["draw_picker"] = True
    at.run()
    assert at.multiselect(key="heads").value == [(0, 1), (1, 2)]
