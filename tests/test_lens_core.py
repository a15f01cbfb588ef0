"""The logit lens, the per-position parts behind direct logit attribution, and what heads and
neurons write, against transformers' own forward (hooks, hidden states, logits) and numpy
from the checkpoint's weights, at short and 1,024-token prompts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import core.prediction as P
from core import ByteBoundedCache, trace, trace_ids
from core.attribution import position_parts
from core.prediction import (
    direct_logit_attribution,
    head_writes,
    logit_lens,
    neuron_attribution,
    neuron_top_tokens,
)

PROMPT = "The best thing about AI is its ability to learn from data, and the best thing about data is"


def _ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


@pytest.fixture(scope="module")
def weights(tiny_model_dir):
    return {k: v.astype(np.float64) for k, v in load_file(str(tiny_model_dir / "model.safetensors")).items()}


def hooked(lm, ids):
    """transformers' forward with hooks: each block's input (resid_pre), c_proj's input (z),
    the MLP's activation and output, ln_f's input; and the logits."""
    got: dict = {}
    blocks = lm.model.transformer.h

    def keep(key, value):
        got[key] = value[0].double().numpy().copy()

    hooks = [b.register_forward_pre_hook(lambda m, a, L=L: keep(("pre", L), a[0])) for L, b in enumerate(blocks)]
    hooks += [b.attn.c_proj.register_forward_pre_hook(lambda m, a, L=L: keep(("z", L), a[0]))
              for L, b in enumerate(blocks)]
    hooks += [b.mlp.act.register_forward_hook(lambda m, a, o, L=L: keep(("post", L), o)) for L, b in enumerate(blocks)]
    hooks += [b.mlp.register_forward_hook(lambda m, a, o, L=L: keep(("mlp", L), o)) for L, b in enumerate(blocks)]
    hooks.append(lm.model.transformer.ln_f.register_forward_pre_hook(lambda m, a: keep("final", a[0])))
    try:
        with torch.inference_mode():
            got["logits"] = lm.model(torch.tensor([list(ids)])).logits[0].double().numpy()
    finally:
        for h in hooks:
            h.remove()
    return got


@pytest.fixture(scope="module")
def t(tiny_lm):
    return trace(tiny_lm, PROMPT, cache=ByteBoundedCache(2**26))


@pytest.fixture(scope="module")
def long_t(tiny_lm):
    ids = np.random.default_rng(7).integers(0, tiny_lm.d_vocab, 1024).tolist()
    return trace_ids(tiny_lm, ids, cache=ByteBoundedCache(2**28))


@pytest.fixture(scope="module")
def long_hooked(tiny_lm, long_t):
    return hooked(tiny_lm, long_t.token_ids)


# ---- the logit lens ---------------------------------------------------------------------------
def test_every_row_of_the_lens_is_the_hooked_residual_read_through_ln_f(tiny_lm, weights, t, monkeypatch):
    """Each row: ln_f and W_U applied to transformers' own residual before that block (and to
    ln_f's input for the last row), in float64; formed a few positions at a time."""
    monkeypatch.setattr(P, "LENS_CHUNK_BYTES", 3 * 4 * tiny_lm.d_vocab)  # 3 positions per product
    got = hooked(tiny_lm, t.token_ids)
    lens = logit_lens(tiny_lm, t, k=5)
    target = logit_lens(tiny_lm, t, k=5, target=11)
    rows = [got[("pre", L)] for L in range(tiny_lm.n_layer)] + [got["final"]]
    nxt = t.token_ids[1:]
    for r, x in enumerate(rows):
        final = _ln(x, weights["transformer.ln_f.weight"], weights["transformer.ln_f.bias"])
        logits = final @ weights["transformer.wte.weight"].T
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        np.testing.assert_array_equal(lens.top_ids[r], np.argsort(-p, axis=-1)[:, :5], err_msg=f"row {r}")
        np.testing.assert_allclose(lens.top_probs[r], -np.sort(-p, axis=-1)[:, :5], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(lens.target_probs[r, :-1], p[np.arange(len(nxt)), nxt], rtol=1e-4)
        np.testing.assert_allclose(target.target_probs[r], p[:, 11], rtol=1e-4)
    assert np.isnan(lens.target_probs[:, -1]).all()  # nothing follows the last token


def test_at_1024_tokens_the_last_row_is_the_traces_own_top_k_everywhere(tiny_lm, long_t):
    lens = logit_lens(tiny_lm, long_t, k=5)
    np.testing.assert_array_equal(lens.top_ids[-1], long_t.top_ids[:, :5])
    np.testing.assert_allclose(lens.top_probs[-1], long_t.top_probs[:, :5], rtol=1e-5)
    window = P.cached_lens(tiny_lm, long_t, np.arange(500, 524), 5, None)  # what the page draws
    np.testing.assert_array_equal(window.top_ids, lens.top_ids[:, 500:524])
    np.testing.assert_allclose(window.target_probs, lens.target_probs[:, 500:524], rtol=1e-6)


# ---- the parts behind attribution --------------------------------------------------------------
@pytest.mark.parametrize("pos", [0, 517, 1023])
def test_each_heads_and_mlps_part_is_what_transformers_computed(tiny_lm, weights, long_t, long_hooked, pos):
    got = long_hooked
    parts = position_parts(tiny_lm, long_t, pos)
    H, d = tiny_lm.n_head, tiny_lm.d_model
    hs = d // H
    for L in range(tiny_lm.n_layer):
        W_O = weights[f"transformer.h.{L}.attn.c_proj.weight"]
        z = got[("z", L)][pos]
        heads = np.stack([z[h * hs:(h + 1) * hs] @ W_O[h * hs:(h + 1) * hs] for h in range(H)])
        np.testing.assert_allclose(parts["heads"][L].numpy(), heads, atol=1e-5)
        np.testing.assert_allclose(parts["mlp"][L].numpy(), got[("mlp", L)][pos], atol=1e-5)
        np.testing.assert_allclose(parts["mlp_post"][L].numpy(), got[("post", L)][pos], atol=1e-5)
    total = (parts["embed"] + parts["pos_embed"] + parts["heads"].sum((0, 1)) + parts["attn_bias"].sum(0)
             + parts["mlp"].sum(0))
    np.testing.assert_allclose(total.numpy(), got["final"][pos], atol=1e-5)  # the parts are the whole residual


@pytest.mark.parametrize("pos", [3, 1023])
def test_attribution_at_1024_tokens_adds_up_to_transformers_logit(tiny_lm, long_t, long_hooked, pos):
    logits = long_hooked["logits"][pos]
    top, second = np.argsort(-logits)[:2]
    a = direct_logit_attribution(tiny_lm, long_t, int(top), pos)
    assert a.logit == pytest.approx(logits[top], abs=1e-4)
    assert a.total == pytest.approx(a.logit, abs=1e-3)
    diff = direct_logit_attribution(tiny_lm, long_t, int(top), pos, minus_token=int(second))
    assert diff.logit == pytest.approx(logits[top] - logits[second], abs=1e-4)
    assert diff.total == pytest.approx(diff.logit, abs=1e-3)
    np.testing.assert_allclose(diff.heads, a.heads - direct_logit_attribution(tiny_lm, long_t, int(second), pos).heads,
                               atol=1e-5)


def test_another_token_at_the_same_position_computes_nothing_new(tiny_lm, long_t):
    direct_logit_attribution(tiny_lm, long_t, 5, 700)
    misses = long_t.cache.misses
    for token in (6, 7, 8):
        direct_logit_attribution(tiny_lm, long_t, token, 700)
    neuron_attribution(tiny_lm, long_t, 9, 700, 10)
    head_writes(tiny_lm, long_t, 1, 2, 700)
    assert long_t.cache.misses == misses
    assert (long_t.key, 1, "attn", None) not in long_t.cache  # no whole layer was recomputed


def test_neuron_parts_add_up_to_their_mlp_and_match_numpy(tiny_lm, weights, t):
    pos, token = 6, int(t.top_ids[6, 0])
    a = direct_logit_attribution(tiny_lm, t, token, pos)
    parts = neuron_attribution(tiny_lm, t, token, pos, k=10**6)  # every neuron of every layer
    got = hooked(tiny_lm, t.token_ids)
    final = got["final"][pos]
    scale = np.sqrt(((final - final.mean()) ** 2).mean() + 1e-5)
    direction = weights["transformer.ln_f.weight"] * weights["transformer.wte.weight"][token]
    for L in range(tiny_lm.n_layer):
        W_out = weights[f"transformer.h.{L}.mlp.c_proj.weight"]
        want = got[("post", L)][pos] * (((W_out - W_out.mean(-1, keepdims=True)) / scale) @ direction)
        at = parts.layers == L
        mine = parts.parts[at][np.argsort(parts.neurons[at])]
        np.testing.assert_allclose(mine, want, atol=1e-5)
        b = weights[f"transformer.h.{L}.mlp.c_proj.bias"]
        assert mine.sum() + ((b - b.mean()) / scale) @ direction == pytest.approx(a.mlp[L], abs=1e-4)


def test_what_a_head_and_a_neuron_write_are_direct_rankings(tiny_lm, weights, t):
    got = hooked(tiny_lm, t.token_ids)
    pos, L, h = 9, 1, 3
    hs = tiny_lm.d_model // tiny_lm.n_head
    W_O = weights[f"transformer.h.{L}.attn.c_proj.weight"]
    out = got[("z", L)][pos, h * hs:(h + 1) * hs] @ W_O[h * hs:(h + 1) * hs]
    final = got["final"][pos]
    scale = np.sqrt(((final - final.mean()) ** 2).mean() + 1e-5)
    logits = ((out - out.mean()) / scale * weights["transformer.ln_f.weight"]) @ weights["transformer.wte.weight"].T
    up, up_v, down, down_v = head_writes(tiny_lm, t, L, h, pos, k=6)
    np.testing.assert_array_equal(up, np.argsort(-logits)[:6])
    np.testing.assert_array_equal(down, np.argsort(logits)[:6])
    np.testing.assert_allclose(down_v, np.sort(logits)[:6], atol=1e-5)
    direct = weights["transformer.h.0.mlp.c_proj.weight"][200] @ weights["transformer.wte.weight"].T
    up, up_v, down, down_v = neuron_top_tokens(tiny_lm, 0, 200, k=6)
    np.testing.assert_array_equal(down, np.argsort(direct)[:6])
    np.testing.assert_allclose(down_v, np.sort(direct)[:6], atol=1e-6)


def test_a_trace_kept_as_tensors_gives_the_same_answers(tiny_lm, t):
    """On a GPU the trace keeps torch tensors on the device instead of numpy arrays: the same
    indexing must work on them (here as CPU tensors)."""
    import dataclasses

    from core.contributions import contribution_graph

    as_tensors = dataclasses.replace(t, _arrays={k: torch.from_numpy(np.array(v)) for k, v in t._arrays.items()},
                                     cache=ByteBoundedCache(2**26))
    window = np.arange(3, 9)
    a, b = logit_lens(tiny_lm, t, 5, window, target=4), logit_lens(tiny_lm, as_tensors, 5, window, target=4)
    np.testing.assert_array_equal(a.top_ids, b.top_ids)
    np.testing.assert_allclose(a.target_probs, b.target_probs, rtol=1e-6)
    token = int(t.top_ids[-1, 0])
    np.testing.assert_allclose(direct_logit_attribution(tiny_lm, as_tensors, token).heads,
                               direct_logit_attribution(tiny_lm, t, token).heads, atol=1e-6)
    np.testing.assert_allclose(P.token_probs_through_layers(tiny_lm, as_tensors, -1, [1, 2]),
                               P.token_probs_through_layers(tiny_lm, t, -1, [1, 2]), rtol=1e-6)
    assert contribution_graph(tiny_lm, as_tensors, -1, 0.01) == contribution_graph(tiny_lm, t, -1, 0.01)
