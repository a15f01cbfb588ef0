"""core.prediction against independent computations: transformers' forward with hooks and numpy
from the checkpoint's weights. The logit lens ends where the trace ends; attribution parts add
up to the model's own logit."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from core import ByteBoundedCache, load_model, trace, trace_ids
from core.prediction import direct_logit_attribution, head_writes, logit_lens, neuron_top_tokens, top_neurons

PROMPT = "The best thing about AI is its ability to learn from data"


@pytest.fixture(scope="module")
def t(tiny_lm):
    return trace(tiny_lm, PROMPT, cache=ByteBoundedCache(2**26))


def _ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def test_the_lens_starts_at_the_embeddings_and_ends_at_the_prediction(tiny_lm, tiny_model_dir, t):
    lens = logit_lens(tiny_lm, t, k=5)
    assert lens.top_ids.shape == (tiny_lm.n_layer + 1, t.n_tokens, 5)
    np.testing.assert_array_equal(lens.top_ids[-1], t.top_ids[:, :5])  # last row: the trace's own top 5
    np.testing.assert_allclose(lens.top_probs[-1], t.top_probs[:, :5], rtol=1e-5)
    w = {k: v.astype(np.float64) for k, v in load_file(str(tiny_model_dir / "model.safetensors")).items()}
    x = w["transformer.wte.weight"][t.token_ids] + w["transformer.wpe.weight"][: t.n_tokens]
    logits = _ln(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"]) @ w["transformer.wte.weight"].T
    np.testing.assert_array_equal(lens.top_ids[0, :, 0], logits.argmax(-1))  # first row: ln_f(embed + pos) unembedded
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    nxt = t.token_ids[1:]
    np.testing.assert_allclose(lens.target_probs[0, :-1], p[np.arange(t.n_tokens - 1), nxt], rtol=1e-4)
    assert np.isnan(lens.target_probs[0, -1])  # nothing follows the last token
    window = logit_lens(tiny_lm, t, k=5, positions=[3, 4, 5], target=7)
    np.testing.assert_array_equal(window.top_ids, lens.top_ids[:, 3:6])
    np.testing.assert_allclose(window.target_probs[0], p[3:6, 7], rtol=1e-4)


def _hooked(lm, ids):
    """z of every layer (c_proj's input) and the final residual (ln_f's input), from transformers."""
    got = {}
    hooks = [b.attn.c_proj.register_forward_pre_hook(lambda m, a, L=L: got.__setitem__(L, a[0][0].numpy().copy()))
             for L, b in enumerate(lm.model.transformer.h)]
    hooks.append(lm.model.transformer.ln_f.register_forward_pre_hook(
        lambda m, a: got.__setitem__("final", a[0][0].numpy().copy())))
    try:
        with torch.inference_mode():
            logits = lm.model(torch.tensor([list(ids)])).logits[0].numpy()
    finally:
        for h in hooks:
            h.remove()
    return got, logits


@pytest.mark.parametrize("pos", [-1, 4])
def test_attribution_parts_add_up_to_the_logit_and_heads_match_hooks(tiny_lm, tiny_model_dir, t, pos):
    got, logits = _hooked(tiny_lm, t.token_ids)
    token = int(np.argmax(logits[pos]))
    a = direct_logit_attribution(tiny_lm, t, token, pos)
    assert a.logit == pytest.approx(float(logits[pos, token]), abs=1e-4)
    assert a.total == pytest.approx(a.logit, abs=1e-3)
    # independent: numpy from the weights, the frozen-scale ln_f read along W_U[token]
    w = {k: v.astype(np.float64) for k, v in load_file(str(tiny_model_dir / "model.safetensors")).items()}
    final = got["final"][pos].astype(np.float64)
    scale = np.sqrt(((final - final.mean()) ** 2).mean() + 1e-5)
    direction = w["transformer.ln_f.weight"] * w["transformer.wte.weight"][token]
    H, hs = tiny_lm.n_head, tiny_lm.d_model // tiny_lm.n_head
    for L in range(tiny_lm.n_layer):
        W_O = w[f"transformer.h.{L}.attn.c_proj.weight"]
        for h in range(H):
            out = got[L][pos, h * hs:(h + 1) * hs].astype(np.float64) @ W_O[h * hs:(h + 1) * hs]
            assert a.heads[L, h] == pytest.approx(((out - out.mean()) / scale) @ direction, abs=1e-4)
    diff = direct_logit_attribution(tiny_lm, t, token, pos, minus_token=3)
    assert diff.logit == pytest.approx(float(logits[pos, token] - logits[pos, 3]), abs=1e-4)
    assert diff.total == pytest.approx(diff.logit, abs=1e-3)


def test_attribution_adds_up_on_a_gpt2_small_shaped_model_at_a_long_prompt(tmp_path_factory):
    from core.synthetic import build_checkpoint

    lm = load_model(str(build_checkpoint(tmp_path_factory.mktemp("small"), small=True, n_layer=12)), device="cpu")
    ids = np.random.default_rng(0).integers(0, lm.d_vocab, 600).tolist()
    t = trace_ids(lm, ids, cache=ByteBoundedCache(2**29))
    for pos in (-1, 300):
        token = int(t.top_ids[pos, 0])
        a = direct_logit_attribution(lm, t, token, pos)
        assert a.total == pytest.approx(a.logit, abs=1e-3)
    assert a.heads.shape == (12, 12)


def test_neuron_and_head_top_tokens_are_the_direct_rankings(tiny_lm, tiny_model_dir, t):
    w = {k: v.astype(np.float64) for k, v in load_file(str(tiny_model_dir / "model.safetensors")).items()}
    direct = w["transformer.h.1.mlp.c_proj.weight"][17] @ w["transformer.wte.weight"].T
    up, up_v, down, down_v = neuron_top_tokens(tiny_lm, 1, 17, k=8)
    np.testing.assert_array_equal(up, np.argsort(-direct)[:8])
    np.testing.assert_array_equal(down, np.argsort(direct)[:8])
    np.testing.assert_allclose(up_v, np.sort(direct)[::-1][:8], rtol=1e-5)
    ids, acts = top_neurons(t, 0, pos=3, k=5)
    post = t.layer_act(0, "mlp_post")[3]
    np.testing.assert_array_equal(ids, np.argsort(-post)[:5])
    # a head's promoted tokens: the largest entries of its attribution over the vocabulary
    up, up_v, _, _ = head_writes(tiny_lm, t, 1, 2, -1, k=3)
    for tok, v in zip(up, up_v):
        assert direct_logit_attribution(tiny_lm, t, int(tok)).heads[1, 2] == pytest.approx(float(v), abs=1e-4)


def test_the_contribution_graph_starts_at_the_position_and_keeps_routes_above_the_bar(tiny_lm, t):
    """(That each share is the float64 oracle's, from parts that add up to transformers' own
    hidden states, is tests/test_lens_graph.py's.)"""
    from core.contributions import contribution_graph

    edges = contribution_graph(tiny_lm, t, -1, threshold=0.02)
    top = [e for e in edges if e.layer == tiny_lm.n_layer - 1]
    assert top and all(e.target == t.n_tokens - 1 for e in top)  # the graph starts at the chosen position
    assert all(0.02 <= e.weight <= 1 for e in edges)
    assert len(contribution_graph(tiny_lm, t, -1, threshold=0.3)) <= len(edges)  # a higher bar keeps fewer routes
