"""viz.attention: each figure holds exactly the slice of the trace it claims, within budget."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.attention import attended_by, attends_to
from core.trace import trace
from tests.plotly_json import decode
from viz.attention import (
    CELL_BUDGET,
    atlas_figure,
    causal_nan,
    figure_cells,
    focus_figure,
    head_across_layers_figure,
    head_figure,
    layer_heads_figure,
    layer_means_figure,
    max_pool,
    scores_figure,
)

MODEL = "tiny <b>gpt2</b>"


def json_z(fig, i: int = 0) -> np.ndarray:
    return decode(json.loads(fig.to_json())["data"][i]["z"])


@pytest.fixture(scope="module")
def t(tiny_lm):
    return trace(tiny_lm, "<b>hello</b> hello hello bye bye & the cat sat on the mat")


def test_head_figure_is_the_heads_pattern_with_an_empty_upper_triangle(t):
    L, h = 1, 2
    fig = head_figure(t.attention[L, h], t.tokens, model=MODEL, layer=L, head=h)
    z = json_z(fig)
    expected = t.attention[L, h].astype(np.float32)
    n = t.n_tokens
    lower = np.tril_indices(n)
    np.testing.assert_array_equal(z[lower], expected[lower])
    assert np.all(np.isnan(z[np.triu_indices(n, 1)]))
    spec = fig.to_json()
    assert "layer 1, head 2" in fig.layout.title.text and "tiny &lt;b&gt;gpt2&lt;/b&gt;" in fig.layout.title.text
    assert "<b>hello" not in spec  # token text is escaped everywhere: ticks, hover, title
    assert list(fig.data[0].x) == list(range(n))  # positions, so repeated tokens keep their columns
    assert fig.data[0].customdata[3, 1][0] == esc_tok(t.tokens[3])


def esc_tok(s: str) -> str:
    from viz.common import esc
    return esc(s)


def test_scores_figure_shows_finite_scores_and_empty_mask(tiny_lm, t):
    s = t.attn_scores(0, 1)
    z = json_z(scores_figure(s, t.tokens, model=MODEL, layer=0, head=1))
    lower = np.tril_indices(t.n_tokens)
    np.testing.assert_array_equal(z[lower], s[lower])
    assert np.all(np.isnan(z[np.triu_indices(t.n_tokens, 1)]))


def test_layer_heads_figure_has_every_head_of_the_layer(t):
    L = 1
    fig = layer_heads_figure(t.attention[L], t.tokens, model=MODEL, layer=L)
    assert len(fig.data) == t.n_head
    for h in range(t.n_head):
        np.testing.assert_array_equal(json_z(fig, h), causal_nan(t.attention[L, h]))
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1  # one shared scale
    assert "layer 1" in fig.layout.title.text


def test_head_across_layers_and_layer_means(t):
    h = 3
    fig = head_across_layers_figure(t.attention[:, h], t.tokens, model=MODEL, head=h)
    assert len(fig.data) == t.n_layer and "head 3" in fig.layout.title.text
    for L in range(t.n_layer):
        np.testing.assert_array_equal(json_z(fig, L), causal_nan(t.attention[L, h]))
    means = t.attention.astype(np.float32).mean(axis=1)
    fig = layer_means_figure(means, t.tokens, model=MODEL)
    for L in range(t.n_layer):
        np.testing.assert_allclose(json_z(fig, L), causal_nan(t.attention[L].astype(np.float32).mean(axis=0)),
                                   atol=1e-6)


def test_max_pool_keeps_block_maxima_and_the_empty_triangle():
    rng = np.random.default_rng(0)
    a = causal_nan(rng.random((10, 10)))
    pooled, b = max_pool(a, 4)
    assert b == 3 and pooled.shape == (4, 4)
    assert pooled[1, 0] == np.nanmax(a[3:6, 0:3])
    assert pooled[3, 3] == a[9, 9]  # the padded edge block
    assert np.isnan(pooled[0, 2]) and not np.isnan(pooled[1, 1])
    same, b1 = max_pool(a, 10)
    assert b1 == 1 and np.array_equal(same, a, equal_nan=True)


def test_atlas_figure_holds_the_scores_and_a_clickable_marker_per_cell():
    scores = np.arange(12, dtype=float).reshape(3, 4) / 12
    fig = atlas_figure(scores, model=MODEL, metric="Previous token", description="d", selected=(1, 2))
    np.testing.assert_allclose(json_z(fig), scores, atol=1e-7)
    marker = fig.data[1]
    assert len(marker.x) == 12 and set(zip(marker.y, marker.x)) == {(L, h) for L in range(3) for h in range(4)}
    np.testing.assert_allclose(marker.customdata, scores[marker.y, marker.x], atol=1e-7)  # hover = the cell's score
    assert fig.layout.shapes[0].x0 == 1.5 and fig.layout.shapes[0].y0 == 0.5


def test_focus_figures_are_the_trace_rows_and_columns(t):
    pos = 6
    to = attends_to(t, pos)  # [layer, head, key]
    fig = focus_figure(to.mean(axis=1, dtype=np.float32), t.tokens, np.arange(pos + 1), pos,
                       model=MODEL, direction="to", head=None)
    np.testing.assert_allclose(json_z(fig), t.attention[:, :, pos, : pos + 1].astype(np.float32).mean(axis=1),
                               atol=1e-6)
    assert "mean over heads" in fig.layout.title.text
    frm = attended_by(t, pos)
    fig = focus_figure(frm[:, 2], t.tokens, np.arange(pos, t.n_tokens), pos, model=MODEL, direction="from", head=2)
    np.testing.assert_allclose(json_z(fig), t.attention[:, 2, pos:, pos].astype(np.float32), rtol=1e-5, atol=1e-7)
    assert list(fig.data[0].x) == list(range(pos, t.n_tokens)) and "head 2" in fig.layout.title.text


def test_1024_token_figures_stay_within_the_cell_budget():
    n, n_head, n_layer = 1024, 12, 12
    rng = np.random.default_rng(0)
    pattern = rng.random((n, n), dtype=np.float32)
    heads = np.broadcast_to(pattern, (n_head, n, n))
    tokens = [f"t{i}" for i in range(n)]
    figs = [
        head_figure(pattern, tokens, model=MODEL, layer=0, head=0),
        scores_figure(pattern - 0.5, tokens, model=MODEL, layer=0, head=0),
        layer_heads_figure(heads, tokens, model=MODEL, layer=0),
        head_across_layers_figure(np.broadcast_to(pattern, (n_layer, n, n)), tokens, model=MODEL, head=0),
        atlas_figure(rng.random((n_layer, n_head)), model=MODEL, metric="Previous token", description=""),
        focus_figure(rng.random((n_layer, n)), tokens, np.arange(n), n - 1, model=MODEL, direction="to", head=None),
    ]
    for fig in figs:
        assert figure_cells(fig) <= CELL_BUDGET
        assert len(fig.to_json()) < 8_000_000
    assert figure_cells(figs[0]) == 512 * 512  # one head: pooled to what its plot shows (the test below)
    assert figure_cells(figs[1]) == n * n  # its scores: full resolution
    assert figure_cells(figs[2]) == n_head * 147 * 147  # a grid: pooled to what a ~150 px panel shows
    assert np.isnan(json_z(figs[2], 0)[0, 1]) and json_z(figs[2], 0)[1, 0] == pattern[7:14, :7].max()
    for grid in (figs[2], figs[3]):  # a panel's last x label never touches the next panel's "0" ("10000" before)
        spec = json.loads(grid.to_json())["layout"]
        xs = [spec[k] for k in spec if k.startswith("xaxis")]
        assert len(xs) == 12 and all(max(x["tickvals"]) <= 0.8 * n for x in xs)


def test_colour_scales_show_what_the_sink_would_hide():
    """Most weight on key 0 (the attention sink): linear runs 0..1, stretch to the largest
    weight elsewhere, log draws log10 of the weight; the values under the cells stay weights
    except on the log scale."""
    n = 6
    p = np.tril(np.full((n, n), 0.02))
    p[:, 0] = 0.9
    p[3, 2] = 0.07
    p[0, 0] = 1.0
    lin = head_figure(p, [f"t{i}" for i in range(n)], model=MODEL, layer=0, head=0)
    stretch = head_figure(p, [f"t{i}" for i in range(n)], model=MODEL, layer=0, head=0, colour="stretch")
    log = head_figure(p, [f"t{i}" for i in range(n)], model=MODEL, layer=0, head=0, colour="log")
    assert (lin.data[0].zmin, lin.data[0].zmax) == (0.0, 1.0)
    assert stretch.data[0].zmax == pytest.approx(0.07)
    np.testing.assert_array_equal(json_z(stretch), causal_nan(p))
    np.testing.assert_allclose(json_z(log)[3, 2], np.log10(0.07), rtol=1e-6)
    assert (log.data[0].zmin, log.data[0].zmax) == (-4, 0.0) and np.isnan(json_z(log)[0, 1])
    grid = layer_heads_figure(np.stack([p, p]), [f"t{i}" for i in range(n)], model=MODEL, layer=0, colour="stretch")
    assert grid.layout.coloraxis.cmax == pytest.approx(0.07)


def _random_pattern(n: int, seed: int = 0) -> np.ndarray:
    """A causal attention pattern (rows sum to 1 over keys 0..query), float32."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, n)).astype(np.float32)
    logits[np.triu_indices(n, 1)] = -np.inf
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def test_a_long_head_is_max_pooled_to_what_the_screen_shows_and_keeps_every_strong_weight():
    """At 1,024 tokens a cell of the ~720 px plot would be under a pixel: the head is sent as 512 x 512
    blocks of 2 x 2 tokens, each the largest weight of its block (numpy from the pattern), the masked
    blocks empty, the colour scale still set by every weight, and a lone strong weight at an odd
    position still there; shorter heads stay cell for cell."""
    n = 1024
    p = _random_pattern(n)
    p[777, 301] = 0.9  # one sharp weight, in the second row and column of its block
    tokens = [f"t{i}" for i in range(n)]
    fig = head_figure(p, tokens, model=MODEL, layer=3, head=4, colour="stretch")
    z = json_z(fig)
    assert z.shape == (512, 512)
    masked = np.where(np.triu(np.ones((n, n), bool), 1), -np.inf, p)
    expected = masked.reshape(512, 2, 512, 2).max(axis=(1, 3))
    lower = np.isfinite(expected)
    np.testing.assert_array_equal(z[lower], expected[lower])
    assert np.all(np.isnan(z[~lower]))  # blocks wholly above the diagonal draw empty
    assert z[777 // 2, 301 // 2] == np.float32(0.9)
    assert list(fig.data[0].x[:3]) == [0, 2, 4]  # each cell at its first token's position
    assert fig.data[0].zmax == pytest.approx(float(p[:, 1:].max()))  # stretch: off the first token, every weight
    assert "2×2" in fig.layout.title.text and "blocks of 2" in fig.data[0].hovertemplate
    assert figure_cells(fig) == 512 * 512
    short = head_figure(_random_pattern(600), tokens[:600], model=MODEL, layer=3, head=4)
    assert json_z(short).shape == (600, 600) and "pooled" not in short.layout.title.text
    full = head_figure(p, tokens, model=MODEL, layer=3, head=4, max_side=None)
    assert json_z(full).shape == (n, n)
