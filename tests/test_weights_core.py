"""core.weights (and the tables recipes.weights builds from it) against the tiny model's parameter tensors and
direct computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from core.weights import (
    KINDS,
    block_average,
    catalogue,
    fit_to_budget,
    get_matrix,
    moving_average,
    normal_pdf,
    spectrum,
    view_grid,
)
from recipes.weights import block_distributions, stats_table
from viz.common import CELL_BUDGET


def _param(lm, name: str) -> np.ndarray:
    return dict(lm.model.named_parameters())[name].detach().numpy()


def test_c_attn_split_into_q_k_v_and_heads(tiny_lm):
    d, nh = tiny_lm.d_model, tiny_lm.n_head
    assert (d, nh) == (64, 4)
    hs = d // nh
    c_attn = _param(tiny_lm, "transformer.h.1.attn.c_attn.weight")
    assert c_attn.shape == (d, 3 * d)  # Conv1D: (in, out)
    for part, kind in enumerate(["W_Q", "W_K", "W_V"]):
        w, rows, cols = get_matrix(tiny_lm, 1, kind)
        np.testing.assert_array_equal(w, c_attn[:, part * d:(part + 1) * d])
        assert rows.startswith("d_model") and "head" in cols
        for h in range(nh):
            wh, _, cols_h = get_matrix(tiny_lm, 1, kind, head=h)
            np.testing.assert_array_equal(wh, c_attn[:, part * d + h * hs: part * d + (h + 1) * hs])
            assert f"head {h}" in cols_h
    b = _param(tiny_lm, "transformer.h.1.attn.c_attn.bias")
    np.testing.assert_array_equal(get_matrix(tiny_lm, 1, "b_K", head=2)[0], b[d + 2 * hs: d + 3 * hs])


def test_query_weights_reproduce_the_models_queries(tiny_lm):
    """Rows are inputs: x @ W_Q + b_Q is what the model computes as queries."""
    x = torch.randn(3, tiny_lm.d_model)
    attn = tiny_lm.model.transformer.h[0].attn
    with torch.no_grad():
        q_model = attn.c_attn(x)[:, : tiny_lm.d_model].numpy()
    q = x.numpy() @ get_matrix(tiny_lm, 0, "W_Q")[0] + get_matrix(tiny_lm, 0, "b_Q")[0]
    np.testing.assert_allclose(q, q_model, rtol=1e-5, atol=1e-5)


def test_other_matrices_keep_conv1d_orientation(tiny_lm):
    cases = {
        ("W_O", 0): ("transformer.h.0.attn.c_proj.weight", (64, 64)),
        ("W_in", 1): ("transformer.h.1.mlp.c_fc.weight", (64, 256)),
        ("W_out", 1): ("transformer.h.1.mlp.c_proj.weight", (256, 64)),
        ("W_E", None): ("transformer.wte.weight", (512, 64)),
        ("W_pos", None): ("transformer.wpe.weight", (1024, 64)),
        ("ln2_w", 0): ("transformer.h.0.ln_2.weight", (64,)),
        ("lnf_b", None): ("transformer.ln_f.bias", (64,)),
    }
    for (kind, block), (name, shape) in cases.items():
        w, rows, cols = get_matrix(tiny_lm, block, kind)
        assert w.shape == shape and w.dtype == np.float32
        np.testing.assert_array_equal(w, _param(tiny_lm, name))
        assert (rows is None) == (len(shape) == 1)
    assert get_matrix(tiny_lm, 0, "W_in")[1:] == ("d_model (input)", "d_mlp (output)")
    w_o_head = get_matrix(tiny_lm, 0, "W_O", head=3)[0]
    np.testing.assert_array_equal(w_o_head, _param(tiny_lm, "transformer.h.0.attn.c_proj.weight")[48:64])


def test_get_matrix_is_read_only_and_checks_arguments(tiny_lm):
    w = get_matrix(tiny_lm, 0, "W_Q")[0]
    with pytest.raises(ValueError, match="read-only"):
        w[:] = 0
    assert np.abs(get_matrix(tiny_lm, 0, "W_Q")[0]).sum() > 0
    with pytest.raises(ValueError, match="pick a block"):
        get_matrix(tiny_lm, 7, "W_in")
    with pytest.raises(ValueError, match="per-head"):
        get_matrix(tiny_lm, 0, "W_in", head=0)
    assert {k.key for k in catalogue()} == set(KINDS)


def test_get_matrix_accepts_the_bare_torch_model(tiny_lm):
    np.testing.assert_array_equal(get_matrix(tiny_lm.model, 0, "W_V")[0], get_matrix(tiny_lm, 0, "W_V")[0])


@pytest.mark.parametrize("shape,window", [((40, 70), 8), ((64, 64), 64), ((30, 50), 1), ((20, 90), 33)])
def test_moving_average_matches_a_direct_computation(shape, window):
    a = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    got = moving_average(a, window)
    w = min(window, *shape)
    want = np.array([[a[i:i + w, j:j + w].mean() for j in range(shape[1] - w + 1)] for i in range(shape[0] - w + 1)])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_moving_average_on_a_real_block_matrix(tiny_lm):
    w = get_matrix(tiny_lm, 1, "W_out")[0]  # (256, 64)
    got = moving_average(w, 16)
    assert got.shape == (241, 49)
    np.testing.assert_allclose(got[100, 7], w[100:116, 7:23].mean(), rtol=1e-5, atol=1e-7)


def test_block_average_matches_tile_means_including_ragged_edges():
    a = np.random.default_rng(1).normal(size=(10, 7)).astype(np.float32)
    got = block_average(a, 4)
    assert got.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(got[i, j], a[4 * i:4 * i + 4, 4 * j:4 * j + 4].mean(), rtol=1e-5)
    np.testing.assert_array_equal(block_average(a, 1), a)


def test_fit_to_budget_downsamples_only_what_does_not_fit():
    a = np.ones((768, 3072), dtype=np.float32)
    shown, k = fit_to_budget(a, CELL_BUDGET)
    assert k == 2 and shown.shape == (384, 1536) and shown.size <= 1_500_000
    shown, k = fit_to_budget(np.ones((768, 768), dtype=np.float32), CELL_BUDGET)
    assert k == 1 and shown.shape == (768, 768)
    shown, k = fit_to_budget(np.ones((50257, 768), dtype=np.float32), CELL_BUDGET)
    assert shown.size <= 1_500_000 and k == 6


def test_distributions_match_the_values_of_every_block(tiny_lm):
    edges, table = block_distributions(tiny_lm, "W_in", bins=50)
    assert list(table["block"]) == [0, 1] and len(edges) == 51
    for b in (0, 1):
        v = _param(tiny_lm, f"transformer.h.{b}.mlp.c_fc.weight").ravel().astype(np.float64)
        row = table.iloc[b]
        assert row["n"] == v.size
        np.testing.assert_allclose([row["mean"], row["std"], row["kurtosis"]], [v.mean(), v.std(), sps.kurtosis(v)],
                                   rtol=1e-6)
        np.testing.assert_allclose((row["density"] * np.diff(edges)).sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(row["density"], np.histogram(v, bins=edges, density=True)[0], rtol=1e-5)
    assert edges[0] <= table["min"].min() and edges[-1] >= table["max"].max()


def test_distributions_of_a_constant_or_model_wide_parameter(tiny_lm):
    edges, table = block_distributions(tiny_lm, "b_O")  # untrained biases are all 0
    assert table["std"].eq(0).all() and table["kurtosis"].isna().all() and edges[0] < 0 < edges[-1]
    _, table = block_distributions(tiny_lm, "W_pos")
    assert list(table["block"]) == ["all"] and table["n"].iloc[0] == 1024 * 64
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(normal_pdf(x, 0.0, 1.0), np.exp(-x**2 / 2) / np.sqrt(2 * np.pi))


def test_stats_table_counts_every_parameter_once(tiny_lm):
    table = stats_table(tiny_lm)
    assert table["count"].sum() == tiny_lm.n_params == sum(p.numel() for p in tiny_lm.model.parameters())
    assert table["name"].is_unique and "lm_head.weight" not in set(table["name"])
    row = table.set_index("name").loc["transformer.h.1.mlp.c_fc.weight"]
    w = _param(tiny_lm, "transformer.h.1.mlp.c_fc.weight").astype(np.float64)
    assert row["shape"] == "64 × 256" and row["kind"] == "block 1: W_in"
    np.testing.assert_allclose([row["mean"], row["std"], row["min"], row["max"], row["frobenius"]],
                               [w.mean(), w.std(), w.min(), w.max(), np.linalg.norm(w)], rtol=1e-6)
    kinds = table.set_index("name")["kind"]
    assert kinds["transformer.h.0.attn.c_attn.weight"] == "block 0: W_Q | W_K | W_V"
    assert kinds["transformer.wte.weight"] == "W_E"


def test_spectrum_and_effective_rank():
    rng = np.random.default_rng(2)
    u, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    v, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    s = np.array([10.0, 10.0, 10.0] + [0.0] * 27)
    a = (u[:, :30] * s) @ v.T
    sp = spectrum(a)
    assert sp.singular_values.shape == (30,)
    np.testing.assert_allclose(sp.singular_values[:4], [10, 10, 10, 0], atol=1e-4)
    assert sp.effective_rank == pytest.approx(3.0, rel=1e-3)  # three equal directions
    assert sp.rank_1pct == 3 and sp.stable_rank == pytest.approx(3.0, rel=1e-3)
    flat = spectrum(np.eye(12))
    assert flat.effective_rank == pytest.approx(12.0) and flat.rank_1pct == 12


def test_spectrum_matches_numpy_on_a_model_matrix(tiny_lm):
    w = get_matrix(tiny_lm, 0, "W_in")[0]
    np.testing.assert_allclose(spectrum(w).singular_values, np.linalg.svd(w.astype(np.float64), compute_uv=False),
                               rtol=1e-4)


def test_view_grid_keeps_original_indices():
    a = np.random.default_rng(3).normal(size=(300, 200)).astype(np.float32)
    g = view_grid(a, "raw", max_cells=10_000)  # 300 x 200 = 60,000 cells -> k = 3
    assert g.downsample == 3 and g.z.shape == (100, 67) and (g.offset, g.step) == (1.0, 3.0)
    np.testing.assert_allclose(g.z[5, 6], a[15:18, 18:21].mean(), rtol=1e-5)
    g = view_grid(a, "moving", window=10, max_cells=CELL_BUDGET)
    assert g.downsample == 1 and g.z.shape == (291, 191) and (g.offset, g.step) == (4.5, 1.0)
    g = view_grid(a, "block", window=10, max_cells=CELL_BUDGET)
    assert g.z.shape == (30, 20) and (g.offset, g.step) == (4.5, 10.0)
    np.testing.assert_allclose(g.z[2, 3], a[20:30, 30:40].mean(), rtol=1e-5)
