"""viz.weights figures carry the parameter data they are given, in the orientation given."""
from __future__ import annotations

import json

import numpy as np

from core.weights import get_matrix, normal_pdf, spectrum, view_grid
from recipes.weights import block_distributions
from tests.plotly_json import decode
from viz.common import CELL_BUDGET
from viz.weights import distribution_figure, kurtosis_figure, matrix_figure, spectrum_figure, vector_figure


def test_matrix_figure_holds_the_matrix_rows_as_inputs(tiny_lm):
    w, rows, cols = get_matrix(tiny_lm, 1, "W_in")  # (d_model 64, d_mlp 256)
    fig = matrix_figure(w, rows, cols, "W_in")
    spec = json.loads(fig.to_json())
    heat = spec["data"][0]
    np.testing.assert_array_equal(decode(heat["z"]), w)
    assert heat["zmid"] == 0 and heat["zmin"] == -heat["zmax"] and heat["colorscale"]
    assert spec["layout"]["yaxis"]["title"]["text"] == "d_model (input)"
    assert spec["layout"]["xaxis"]["title"]["text"] == "d_mlp (output)"
    assert spec["layout"]["yaxis"]["autorange"] == "reversed"  # row 0 on top, as a matrix is written


def test_matrix_figure_places_downsampled_cells_on_original_indices():
    a = np.random.default_rng(0).normal(size=(300, 200)).astype(np.float32)
    g = view_grid(a, "raw", max_cells=10_000)
    fig = matrix_figure(g.z, "rows", "cols", "t", offset=g.offset, step=g.step)
    heat = fig.data[0]
    assert heat.x0 == 1.0 and heat.dx == 3.0 and heat.z.shape == (100, 67)


def test_matrix_figure_marks_head_boundaries_and_escapes_labels():
    fig = matrix_figure(np.ones((64, 64), np.float32), "<b>rows</b>", "cols", "t", head_size=16, head_axis=1)
    xs = sorted(s.x0 for s in fig.layout.shapes)
    assert xs == [15.5, 31.5, 47.5]
    assert "<b>" not in fig.layout.yaxis.title.text and "&lt;b&gt;" in fig.layout.yaxis.title.text


def test_vector_figure(tiny_lm):
    b, _, dim = get_matrix(tiny_lm, 0, "b_Q")
    fig = vector_figure(b, dim, "b_Q", head_size=16)
    np.testing.assert_array_equal(decode(json.loads(fig.to_json())["data"][0]["y"]), b)
    assert len(fig.layout.shapes) == 3


def test_distribution_figure_overlays_every_block_and_the_normal(tiny_lm):
    edges, table = block_distributions(tiny_lm, "W_Q", bins=60)
    row = table.iloc[1]
    centres = (edges[:-1] + edges[1:]) / 2
    normal = normal_pdf(centres, row["mean"], row["std"])
    fig = distribution_figure(edges, table, "W_Q", highlight=1, normal=normal)
    assert [t.name for t in fig.data] == ["block 0", "block 1", "normal fit (block 1)"]
    np.testing.assert_allclose(fig.data[1].y, table["density"][1], rtol=1e-6)
    np.testing.assert_allclose(fig.data[2].y, normal, rtol=1e-6)
    assert fig.data[1].line.width > fig.data[0].line.width
    log = distribution_figure(edges, table, "W_Q", highlight=1, normal=normal, log_y=True)
    assert log.layout.yaxis.type == "log" and not np.any(np.asarray(log.data[0].y) == 0)
    k = kurtosis_figure(table, "kurtosis")
    np.testing.assert_allclose(k.data[0].y, table["kurtosis"], rtol=1e-6)


def test_spectrum_figure(tiny_lm):
    sp = spectrum(get_matrix(tiny_lm, 0, "W_O")[0])
    fig = spectrum_figure(sp.singular_values, "W_O", effective_rank=sp.effective_rank, rank_1pct=sp.rank_1pct)
    np.testing.assert_allclose(fig.data[0].y, sp.singular_values, rtol=1e-6)
    assert fig.layout.yaxis.type == "log" and list(fig.data[0].x[:2]) == [1, 2]
    assert any(f"{sp.effective_rank:.1f}" in a.text for a in fig.layout.annotations)


def test_figures_stay_within_the_json_budget():
    big = np.random.default_rng(1).normal(size=(768, 3072)).astype(np.float32)
    g = view_grid(big, max_cells=CELL_BUDGET)
    assert g.downsample == 2
    fig = matrix_figure(g.z, "d_model", "d_mlp", "W_in", offset=g.offset, step=g.step)
    assert len(fig.to_json()) < 1.5e6 * 4 * 1.4  # float32 as base64, not decimal text
