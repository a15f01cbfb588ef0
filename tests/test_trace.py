"""The Trace against independent computations: transformers' own forward (outputs and hooks),
and a numpy GPT-2 in float64 from the checkpoint file's raw weights.

The stored residual stream and the per-layer arrays recomputed from it must equal what a
full forward computes, at <= 1e-5 relative (float32 noise), short and at 1,024 tokens."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from core import ByteBoundedCache, PromptError, Trace, estimate_trace_bytes, trace, trace_ids

PROMPT = "The best thing about AI is its ability to learn. 你好 😀"
RTOL, ATOL = 1e-5, 1e-6  # relative, with a floor for values that are nearly 0


@pytest.fixture(scope="module")
def t(tiny_lm) -> Trace:
    return trace(tiny_lm, PROMPT, cache=ByteBoundedCache(64 * 2**20))


def test_the_fixture_has_learned_looking_layer_norms(tiny_model_dir):
    """GPT2Config starts LayerNorms at gain 1, bias 0; real GPT-2 (and our fixture) does not."""
    w = load_file(str(tiny_model_dir / "model.safetensors"))
    for name in ("transformer.h.0.ln_1", "transformer.h.1.ln_2", "transformer.ln_f"):
        assert np.abs(w[name + ".weight"] - 1).mean() > 0.1 and np.abs(w[name + ".bias"]).mean() > 0.05


def test_shapes_dtypes_and_names(tiny_lm, t):
    n, L, H, d = t.n_tokens, tiny_lm.n_layer, tiny_lm.n_head, tiny_lm.d_model
    d_mlp, hs = 4 * d, d // H
    assert t.token_ids.shape == (n,) and len(t.tokens) == n
    stored = {
        "embed": (n, d), "pos_embed": (n, d), "resid": (L + 1, n, d), "lse": (L, H, n), "head_previous": (L, H),
        "token_logprob": (n,), "entropy": (n,), "top_ids": (n, 10), "top_probs": (n, 10),
        "next_logits": (tiny_lm.d_vocab,), "next_probs": (tiny_lm.d_vocab,),
    }
    for key, shape in stored.items():
        assert t.take(key).shape == shape, key
    assert t.attention.shape == (L, H, n, n) and t.attention.dtype == np.float32
    assert t.mlp_post.shape == (L, n, d_mlp)
    per_layer = {"attn.hook_attn_scores": (H, n, n), "attn.hook_pattern": (H, n, n), "attn.hook_z": (n, H, hs),
                 "hook_attn_out": (n, d), "hook_resid_mid": (n, d), "mlp.hook_pre": (n, d_mlp),
                 "mlp.hook_post": (n, d_mlp), "hook_mlp_out": (n, d), "hook_resid_pre": (n, d),
                 "hook_resid_post": (n, d)}
    for name in t.names():
        assert isinstance(t[name], np.ndarray), name
        hook = name.split(".", 2)[-1]
        if name.startswith("blocks."):
            assert t[name].shape == per_layer[hook], name
    np.testing.assert_array_equal(t["blocks.1.attn.hook_pattern"], t.attention[1])
    np.testing.assert_array_equal(t["blocks.0.hook_resid_pre"], t.resid[0])
    np.testing.assert_array_equal(t["blocks.0.hook_resid_post"], t.resid[1])
    np.testing.assert_array_equal(t[f"blocks.{L - 1}.hook_resid_post"], t.resid[L])
    np.testing.assert_array_equal(t["blocks.1.mlp.hook_post"], t.mlp_post[1])
    with pytest.raises(KeyError, match="names"):
        t["blocks.9.attn.hook_pattern"]
    with pytest.raises(IndexError, match="layers 0–1"):
        t.pattern(2)


def test_arrays_are_read_only(t):
    for arr in (t.resid, t.pattern(0), t.pattern(1, 2), t.layer_act(0, "mlp_post"), t["blocks.0.attn.hook_z"]):
        with pytest.raises(ValueError):
            arr.flat[0] = 1


def test_attention_rows_sum_to_one_and_are_causal(t):
    a = t.attention.astype(np.float64)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-6)
    upper = np.triu(np.ones(a.shape[-2:], dtype=bool), k=1)
    assert (a[..., upper] == 0).all()
    assert (a[..., 0, 0] == 1).all()  # the first token can only look at itself
    assert np.isneginf(t.attn_scores(1)[..., upper]).all()


def _transformers_run(lm, ids: list[int]) -> dict:
    """transformers' own eager forward, with hooks for what it does not return."""
    got: dict = {}
    hooks = []
    for L, block in enumerate(lm.model.transformer.h):
        hooks += [
            block.attn.register_forward_hook(lambda m, i, o, L=L: got.__setitem__(("attn_out", L), o[0][0])),
            block.ln_2.register_forward_hook(lambda m, i, o, L=L: got.__setitem__(("resid_mid", L), i[0][0])),
            block.mlp.c_fc.register_forward_hook(lambda m, i, o, L=L: got.__setitem__(("mlp_pre", L), o[0])),
            block.mlp.act.register_forward_hook(lambda m, i, o, L=L: got.__setitem__(("mlp_post", L), o[0])),
            block.mlp.register_forward_hook(lambda m, i, o, L=L: got.__setitem__(("mlp_out", L), o[0])),
            block.attn.c_proj.register_forward_hook(lambda m, i, o, L=L: got.__setitem__(("z", L), i[0][0])),
        ]
    try:
        with torch.inference_mode():
            out = lm.model(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    got["out"] = out
    return got


def _assert_layers_match(lm, t: Trace, ref: dict) -> None:
    out = ref["out"]
    H, n = lm.n_head, t.n_tokens
    for L in range(lm.n_layer):
        np.testing.assert_allclose(t.resid[L], out.hidden_states[L][0].numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(t.pattern(L), out.attentions[L][0].numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(t.pattern(L, 1), out.attentions[L][0, 1].numpy(), rtol=RTOL, atol=ATOL)
        z = ref[("z", L)].numpy().reshape(n, H, -1)  # c_proj's input: heads side by side
        np.testing.assert_allclose(t["blocks.%d.attn.hook_z" % L], z, rtol=RTOL, atol=ATOL)
        for name in ("attn_out", "resid_mid", "mlp_pre", "mlp_post", "mlp_out"):
            np.testing.assert_allclose(t.layer_act(L, name), ref[(name, L)].numpy(), rtol=RTOL, atol=ATOL, err_msg=name)


def test_matches_transformers_forward(tiny_lm, t):
    ref = _transformers_run(tiny_lm, t.token_ids.tolist())
    out = ref["out"]
    logp = torch.log_softmax(out.logits[0].double(), -1).numpy()
    np.testing.assert_allclose(t.next_probs, np.exp(logp[-1]), atol=1e-6)
    np.testing.assert_allclose(t.next_logits, out.logits[0, -1].numpy(), rtol=RTOL, atol=1e-5)
    actual = logp[np.arange(t.n_tokens - 1), t.token_ids[1:]]  # log p of each actual token given its prefix
    np.testing.assert_allclose(t.token_logprob[1:], actual, atol=1e-4)
    assert np.isnan(t.token_logprob[0])
    entropy = -(np.exp(logp) * logp).sum(-1) / np.log(2)
    np.testing.assert_allclose(t.entropy, entropy, atol=1e-4)
    np.testing.assert_array_equal(t.top_ids, np.argsort(-logp, axis=-1, kind="stable")[:, :10])
    np.testing.assert_allclose(t.top_probs, np.exp(np.take_along_axis(logp, t.top_ids, -1)), atol=1e-6)
    _assert_layers_match(tiny_lm, t, ref)
    # TransformerLens's ln_final.hook_normalized is before ln_f's gain and bias; transformers'
    # last hidden state is after them.
    ln_f = tiny_lm.model.transformer.ln_f
    normalized = t["ln_final.hook_normalized"]
    np.testing.assert_allclose(normalized.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(normalized * ln_f.weight.numpy() + ln_f.bias.numpy(), out.hidden_states[-1][0].numpy(),
                               rtol=RTOL, atol=1e-5)
    np.testing.assert_allclose(normalized * t["ln_final.hook_scale"], t.resid[-1] - t.resid[-1].mean(-1, keepdims=True),
                               rtol=RTOL, atol=1e-5)


def test_a_1024_token_prompt_matches_transformers_at_every_layer(tiny_lm):
    """Full length: 8 query chunks of the pattern, 16 row blocks of the unembedding."""
    ids = np.random.default_rng(1).integers(0, tiny_lm.d_vocab, tiny_lm.n_ctx).tolist()
    t = trace_ids(tiny_lm, ids, cache=ByteBoundedCache(256 * 2**20))
    ref = _transformers_run(tiny_lm, ids)
    _assert_layers_match(tiny_lm, t, ref)
    np.testing.assert_allclose(t.next_probs, torch.softmax(ref["out"].logits[0, -1].double(), -1).numpy(), atol=1e-6)
    np.testing.assert_array_equal(t.top_ids[:, 0], ref["out"].logits[0].argmax(-1).numpy())


# ---- an independent GPT-2 in numpy, from the checkpoint file's raw weights -------------------
def _layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _numpy_gpt2(w: dict, ids: np.ndarray, n_head: int) -> list[dict]:
    """Every per-layer activation, float64, no torch: one dict per layer."""
    g = lambda name: w[name].astype(np.float64)  # noqa: E731
    T = len(ids)
    x = g("transformer.wte.weight")[ids] + g("transformer.wpe.weight")[:T]
    d = x.shape[1]
    hs = d // n_head
    layers = []
    L = 0
    while f"transformer.h.{L}.ln_1.weight" in w:
        p = f"transformer.h.{L}."
        h = _layer_norm(x, g(p + "ln_1.weight"), g(p + "ln_1.bias"))
        qkv = h @ g(p + "attn.c_attn.weight") + g(p + "attn.c_attn.bias")  # Conv1D: [in, out]
        q, k, v = (m.reshape(T, n_head, hs).transpose(1, 0, 2) for m in np.split(qkv, 3, axis=1))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hs)
        scores[:, np.triu(np.ones((T, T), dtype=bool), 1)] = -np.inf
        e = np.exp(scores - scores.max(-1, keepdims=True))
        pattern = e / e.sum(-1, keepdims=True)
        z = (pattern @ v).transpose(1, 0, 2)  # [pos, head, d_head]
        attn_out = z.reshape(T, d) @ g(p + "attn.c_proj.weight") + g(p + "attn.c_proj.bias")
        mid = x + attn_out
        pre = (_layer_norm(mid, g(p + "ln_2.weight"), g(p + "ln_2.bias")) @ g(p + "mlp.c_fc.weight")
               + g(p + "mlp.c_fc.bias"))
        post = _gelu_new(pre)
        mlp_out = post @ g(p + "mlp.c_proj.weight") + g(p + "mlp.c_proj.bias")
        layers.append(dict(resid_pre=x, attn_scores=scores, pattern=pattern, z=z, attn_out=attn_out, resid_mid=mid,
                           mlp_pre=pre, mlp_post=post, mlp_out=mlp_out))
        x = mid + mlp_out
        L += 1
    layers.append(dict(resid_pre=x))
    return layers


def test_every_array_recomputed_from_checkpoint_weights(tiny_model_dir, tiny_lm, t):
    ref = _numpy_gpt2(load_file(str(tiny_model_dir / "model.safetensors")), t.token_ids, tiny_lm.n_head)
    for L in range(tiny_lm.n_layer):
        np.testing.assert_allclose(t.resid[L], ref[L]["resid_pre"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(t.pattern(L), ref[L]["pattern"], rtol=RTOL, atol=ATOL)
        s = t.attn_scores(L)
        finite = np.isfinite(ref[L]["attn_scores"])
        assert (np.isfinite(s) == finite).all()
        np.testing.assert_allclose(s[finite], ref[L]["attn_scores"][finite], rtol=RTOL, atol=1e-5)
        for name in ("z", "attn_out", "resid_mid", "mlp_pre", "mlp_post", "mlp_out"):
            np.testing.assert_allclose(t.layer_act(L, name), ref[L][name], rtol=RTOL, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(t.resid[-1], ref[-1]["resid_pre"], rtol=RTOL, atol=1e-5)


def test_head_summaries_from_the_forward_equal_the_patterns(t):
    a = t.attention.astype(np.float64)
    n = t.n_tokens
    q = np.arange(1, n)
    np.testing.assert_allclose(t.take("head_previous"), a[..., q, q - 1].mean(-1), rtol=1e-5)
    np.testing.assert_allclose(t.take("head_first"), a[..., 1:, 0].mean(-1), rtol=1e-5)
    np.testing.assert_allclose(t.take("head_self"), a[..., q, q].mean(-1), rtol=1e-5)
    scores = np.where(np.isfinite(t.attn_scores(1)), t.attn_scores(1), -np.inf).astype(np.float64)
    np.testing.assert_allclose(t.take("lse", (1,)), np.log(np.exp(scores).sum(-1)), rtol=1e-5)


def test_portable_attention_equals_the_flash_kernel(tiny_lm, t):
    """GPUs run the chunked softmax path; on CPU it must give what the flash kernel gives."""
    chunked = trace(tiny_lm, PROMPT, flash=False, cache=ByteBoundedCache(0))
    for key in ("resid", "lse", "head_previous", "head_first", "head_self", "next_probs", "entropy"):
        np.testing.assert_allclose(chunked.take(key), t.take(key), rtol=RTOL, atol=ATOL, err_msg=key)
    np.testing.assert_array_equal(chunked.top_ids, t.top_ids)


def test_each_layer_is_computed_once_and_matches_its_next_residual(tiny_lm):
    cache = ByteBoundedCache(64 * 2**20)
    t = trace(tiny_lm, PROMPT, cache=cache)
    first = t.pattern(1)
    misses = cache.misses
    assert t.pattern(1) is not first and (t.pattern(1) == first).all()
    np.testing.assert_array_equal(t.pattern(1, 3), first[3])  # a head of a cached layer is its slice
    assert cache.misses == misses
    alone = trace(tiny_lm, PROMPT, cache=ByteBoundedCache(64 * 2**20))
    np.testing.assert_array_equal(alone.pattern(1, 3), first[3])  # a head on its own, bit for bit
    # the block's own maths: resid_mid + mlp_out is the next stored residual
    np.testing.assert_array_equal(t.layer_act(0, "resid_mid") + t.layer_act(0, "mlp_out"), t.resid[1])
    before = len(cache)
    t.pattern(0, 1, keep=False)
    assert len(cache) == before  # keep=False: computed for a pooled view, not cached


def test_over_long_prompt_keeps_first_or_last_window(tiny_lm):
    text = " ".join(f"w{i}" for i in range(2000))
    all_ids = tiny_lm.encode(text)
    assert len(all_ids) > tiny_lm.n_ctx
    first = trace(tiny_lm, text, keep="first")
    last = trace(tiny_lm, text, keep="last")
    assert first.n_tokens == last.n_tokens == tiny_lm.n_ctx
    assert first.n_dropped == last.n_dropped == len(all_ids) - tiny_lm.n_ctx
    assert first.token_ids.tolist() == all_ids[: tiny_lm.n_ctx]
    assert last.token_ids.tolist() == all_ids[-tiny_lm.n_ctx :]


@pytest.mark.parametrize("prompt", ["", "   \n\t  "])
def test_empty_prompt_is_a_prompt_error(tiny_lm, prompt):
    with pytest.raises(PromptError, match="empty"):
        trace(tiny_lm, prompt)


def test_trace_ids_refuses_more_than_the_context(tiny_lm):
    with pytest.raises(PromptError, match="1 to 1024"):
        trace_ids(tiny_lm, [1] * (tiny_lm.n_ctx + 1))


def test_byte_estimate_matches_the_trace(tiny_lm, t):
    est = estimate_trace_bytes(tiny_lm, t.n_tokens)
    assert abs(est - t.nbytes) / t.nbytes < 0.05


def test_whole_arrays_are_refused_when_too_large(t, monkeypatch):
    monkeypatch.setattr(importlib.import_module("core.trace"), "WHOLE_ARRAY_MAX_BYTES", 1000)
    with pytest.raises(MemoryError, match="one layer at a time"):
        t.attention


def test_device_resident_arrays_copy_only_the_slice(tiny_lm, t):
    """On a GPU the Trace keeps torch tensors and recomputes layers from them; what comes out
    is numpy of just the part asked for."""
    arrays = {k: torch.from_numpy(np.array(t.take(k))) for k in t._arrays}
    dev_trace = Trace(t.model_name, t.prompt, t.token_ids, t.tokens, 0, "first", t.n_layer, t.n_head, arrays,
                      lm=tiny_lm, cache=ByteBoundedCache(2**24))
    head = dev_trace.pattern(1, 2)
    assert isinstance(head, np.ndarray) and head.shape == (t.n_tokens, t.n_tokens)
    assert not head.flags.writeable
    np.testing.assert_array_equal(head, t.pattern(1, 2))
    np.testing.assert_array_equal(dev_trace["blocks.1.hook_resid_pre"], t.resid[1])
    np.testing.assert_array_equal(dev_trace.layer_act(1, "mlp_post"), t.layer_act(1, "mlp_post"))
    assert dev_trace.nbytes == t.nbytes
    from core.attention import head_across_layers, pattern_summaries, token_focus
    for a, b in zip(token_focus(dev_trace, 4), token_focus(t, 4)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(head_across_layers(dev_trace, 1, 8)[0], head_across_layers(t, 1, 8)[0])
    np.testing.assert_array_equal(pattern_summaries(dev_trace, 8)["means"], pattern_summaries(t, 8)["means"])
