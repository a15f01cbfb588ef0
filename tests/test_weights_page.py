"""The weights page as Streamlit runs it (AppTest on app.py, then the page), tiny model.

Figure data is read back from the chart's JSON and checked against the parameter tensors.
"""
from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import viz.common
from core.weights import moving_average
from tests import apptest
from tests.apptest import WEIGHTS, show_view
from tests.plotly_json import chart_specs, decode

TIMEOUT = 120


def title(spec: dict) -> str:
    return spec["layout"]["title"]["text"]


def params(tiny_lm) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy() for n, p in tiny_lm.model.named_parameters()}


@pytest.fixture
def page(tiny_env):
    return apptest.open_page(WEIGHTS)


def show_tab(at: AppTest, name: str) -> AppTest:
    return show_view(at, WEIGHTS, name)


def test_matrix_view_shows_w_q_split_from_c_attn(page, tiny_lm):
    (spec,) = chart_specs(page)
    c_attn = params(tiny_lm)["transformer.h.0.attn.c_attn.weight"]
    np.testing.assert_array_equal(decode(spec["data"][0]["z"]), c_attn[:, :64])
    assert spec["data"][0]["zmid"] == 0
    assert spec["layout"]["yaxis"]["title"]["text"] == "d_model (input)"
    assert "W_Q" in title(spec) and "block 0" in title(spec) and "downsampled" not in title(spec)
    assert len(spec["layout"]["shapes"]) == tiny_lm.n_head - 1  # head boundaries


def test_matrix_view_follows_block_parameter_and_head(page, tiny_lm):
    at = page
    at.selectbox(key="weights_param").set_value("W_V").run()
    at.selectbox(key="weights_block").set_value(1).run()
    at.selectbox(key="weights_head").set_value(2).run()
    assert not at.exception
    (spec,) = chart_specs(at)
    c_attn = params(tiny_lm)["transformer.h.1.attn.c_attn.weight"]
    np.testing.assert_array_equal(decode(spec["data"][0]["z"]), c_attn[:, 128 + 32:128 + 48])
    assert "head 2" in spec["layout"]["xaxis"]["title"]["text"]
    at.selectbox(key="weights_param").set_value("W_out").run()
    (spec,) = chart_specs(at)
    np.testing.assert_array_equal(decode(spec["data"][0]["z"]), params(tiny_lm)["transformer.h.1.mlp.c_proj.weight"])
    assert at.selectbox(key="weights_head").disabled
    assert spec["layout"]["yaxis"]["title"]["text"] == "d_mlp (input)"


def test_vectors_are_bar_charts_and_smoothing_asks_for_a_matrix(page, tiny_lm):
    at = page
    at.selectbox(key="weights_param").set_value("b_in").run()
    (spec,) = chart_specs(at)
    np.testing.assert_array_equal(decode(spec["data"][0]["y"]), params(tiny_lm)["transformer.h.0.mlp.c_fc.bias"])
    show_tab(at, "Smoothed")
    assert not chart_specs(at) and "needs a matrix" in at.info[0].value


def test_large_matrices_are_downsampled_and_say_so(page, tiny_lm, monkeypatch):
    monkeypatch.setattr(viz.common, "CELL_BUDGET", 10_000)
    st.cache_data.clear()
    try:
        page.selectbox(key="weights_param").set_value("W_E").run()
        (spec,) = chart_specs(page)
    finally:
        st.cache_data.clear()
    z = decode(spec["data"][0]["z"])
    wte = params(tiny_lm)["transformer.wte.weight"]  # 512 x 64 = 32,768 cells -> 2x2 tiles
    assert z.shape == (256, 32) and "downsampled 2×" in title(spec)
    np.testing.assert_allclose(z[10, 5], wte[20:22, 10:12].mean(), rtol=1e-5)
    assert spec["data"][0]["dx"] == 2 and spec["data"][0]["x0"] == 0.5


def test_smoothed_views_match_a_direct_moving_average(page, tiny_lm):
    at = show_tab(page, "Smoothed")
    at.selectbox(key="weights_param").set_value("W_in").run()
    at.slider(key="weights_window").set_value(16).run()
    assert not at.exception
    moving, block = chart_specs(at)
    w = params(tiny_lm)["transformer.h.0.mlp.c_fc.weight"]  # (64, 256)
    z = decode(moving["data"][0]["z"])
    assert z.shape == (49, 241)
    np.testing.assert_allclose(z, moving_average(w, 16), rtol=1e-6)
    np.testing.assert_allclose(z[3, 100], w[3:19, 100:116].mean(), rtol=1e-5, atol=1e-7)
    zb = decode(block["data"][0]["z"])
    assert zb.shape == (4, 16)
    np.testing.assert_allclose(zb[2, 7], w[32:48, 112:128].mean(), rtol=1e-5, atol=1e-7)
    assert "16×16" in title(moving) and "16×16" in title(block)


def test_distributions_overlay_every_block(page, tiny_lm):
    at = show_tab(page, "Across blocks")
    at.selectbox(key="weights_param").set_value("W_O").run()
    dist, kurt = chart_specs(at)
    names = [t["name"] for t in dist["data"]]
    assert names == ["block 0", "block 1", "normal fit (block 0)"]
    table = at.dataframe[0].value
    w1 = params(tiny_lm)["transformer.h.1.attn.c_proj.weight"].astype(np.float64)
    np.testing.assert_allclose(table["std"].iloc[1], w1.std(), rtol=1e-6)
    assert len(decode(kurt["data"][0]["y"])) == 2
    at.toggle(key="weights_log").set_value(True).run()
    assert chart_specs(at)[0]["layout"]["yaxis"]["type"] == "log"


def test_statistics_table_total_equals_the_models_count(page, tiny_lm):
    at = show_tab(page, "All parameters")
    table = at.dataframe[0].value
    assert table["count"].sum() == tiny_lm.n_params
    assert [m.value for m in at.metric] == [f"{tiny_lm.n_params:,}"] * 2
    csv = "weights_param_table_csv"
    assert [b.key for b in at.get("download_button") if b.key == csv] == [csv]
    assert not at.error


def test_spectrum_matches_numpy(page, tiny_lm):
    at = show_tab(page, "Spectrum")
    at.selectbox(key="weights_param").set_value("W_in").run()
    (spec,) = chart_specs(at)
    w = params(tiny_lm)["transformer.h.0.mlp.c_fc.weight"].astype(np.float64)
    np.testing.assert_allclose(decode(spec["data"][0]["y"]), np.linalg.svd(w, compute_uv=False), rtol=1e-4)
    assert spec["layout"]["yaxis"]["type"] == "log"
    assert at.metric[0].value == "64"


def test_window_follows_a_smaller_matrix_without_warnings(page):
    at = show_tab(page, "Smoothed")
    at.selectbox(key="weights_param").set_value("W_in").run()
    at.slider(key="weights_window").set_value(64).run()
    at.selectbox(key="weights_param").set_value("W_O").run()
    at.selectbox(key="weights_head").set_value(1).run()  # (16, 64): the window must shrink to fit
    assert not at.exception and not at.warning
    assert at.slider(key="weights_window").max == 16 and 1 <= at.slider(key="weights_window").value <= 16
    moving, _ = chart_specs(at)
    assert "head 1" in title(moving)
