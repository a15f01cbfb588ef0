"""The Trace against independent computations: transformers' own forward, and numpy from the
checkpoint file's raw weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from core import PromptError, Trace, estimate_trace_bytes, trace, trace_ids

PROMPT = "The best thing about AI is its ability to learn. 你好 😀"


@pytest.fixture(scope="module")
def t(tiny_lm) -> Trace:
    return trace(tiny_lm, PROMPT)


def test_shapes_dtypes_and_names(tiny_lm, t):
    n, L, H, d = t.n_tokens, tiny_lm.n_layer, tiny_lm.n_head, tiny_lm.d_model
    d_mlp = 4 * d
    assert t.token_ids.shape == (n,) and len(t.tokens) == n
    expected = {
        "embed": (n, d), "pos_embed": (n, d), "resid": (L + 1, n, d), "attention": (L, H, n, n),
        "mlp_post": (L, n, d_mlp), "ln_final": (n, d), "token_logprob": (n,), "entropy": (n,),
        "top_ids": (n, 10), "top_probs": (n, 10), "next_logits": (tiny_lm.d_vocab,), "next_probs": (tiny_lm.d_vocab,),
    }
    for key, shape in expected.items():
        assert t.take(key).shape == shape, key
    assert t.attention.dtype == np.float16 and t.resid.dtype == np.float32 and t.mlp_post.dtype == np.float32
    for name in t.names():
        assert isinstance(t[name], np.ndarray), name
    np.testing.assert_array_equal(t["blocks.1.attn.hook_pattern"], t.attention[1])
    np.testing.assert_array_equal(t["blocks.0.hook_resid_pre"], t.resid[0])
    np.testing.assert_array_equal(t[f"blocks.{L - 1}.hook_resid_post"], t.resid[L])
    np.testing.assert_array_equal(t["blocks.1.mlp.hook_post"], t.mlp_post[1])
    with pytest.raises(KeyError, match="names"):
        t["blocks.9.attn.hook_pattern"]


def test_arrays_are_read_only(t):
    with pytest.raises(ValueError):
        t.attention[0, 0, 0, 0] = 1
    with pytest.raises(ValueError):
        t.resid[0, 0, 0] = 1


def test_attention_rows_sum_to_one_and_are_causal(t):
    a = t.attention.astype(np.float64)
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=2e-3)
    upper = np.triu(np.ones(a.shape[-2:], dtype=bool), k=1)
    assert (a[..., upper] == 0).all()
    assert (a[..., 0, 0] == 1).all()  # the first token can only look at itself


def test_matches_transformers_forward(tiny_lm, t):
    ids = torch.tensor([t.token_ids.tolist()])
    with torch.inference_mode():
        out = tiny_lm.model(ids, output_attentions=True, output_hidden_states=True)
    logp = torch.log_softmax(out.logits[0].double(), -1).numpy()
    np.testing.assert_allclose(t.next_probs, np.exp(logp[-1]), atol=1e-6)
    np.testing.assert_allclose(t.next_logits, out.logits[0, -1].numpy(), atol=1e-4)
    # log p of each actual token given its prefix
    actual = logp[np.arange(t.n_tokens - 1), t.token_ids[1:]]
    np.testing.assert_allclose(t.token_logprob[1:], actual, atol=1e-4)
    assert np.isnan(t.token_logprob[0])
    entropy = -(np.exp(logp) * logp).sum(-1) / np.log(2)
    np.testing.assert_allclose(t.entropy, entropy, atol=1e-3)
    np.testing.assert_array_equal(t.top_ids[:, 0], logp.argmax(-1))
    np.testing.assert_allclose(t.top_probs, np.exp(np.take_along_axis(logp, t.top_ids, -1)), atol=1e-6)
    # hidden_states[L] is the residual before block L; the last one is already after ln_f
    for L in range(tiny_lm.n_layer):
        np.testing.assert_allclose(t.resid[L], out.hidden_states[L][0].numpy(), atol=1e-5)
        np.testing.assert_allclose(t.attention[L], out.attentions[L][0].numpy(), atol=1e-3)
    np.testing.assert_allclose(t.ln_final, out.hidden_states[-1][0].numpy(), atol=1e-5)


# ---- an independent GPT-2 in numpy, from the checkpoint file's raw weights -------------------
def _layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _numpy_gpt2(w: dict, ids: np.ndarray, n_head: int):
    """Patterns [layer, head, q, k] and MLP outputs [layer, pos, d_mlp], float64, no torch."""
    g = lambda name: w[name].astype(np.float64)  # noqa: E731
    T = len(ids)
    x = g("transformer.wte.weight")[ids] + g("transformer.wpe.weight")[:T]
    d = x.shape[1]
    hs = d // n_head
    patterns, posts = [], []
    L = 0
    while f"transformer.h.{L}.ln_1.weight" in w:
        p = f"transformer.h.{L}."
        h = _layer_norm(x, g(p + "ln_1.weight"), g(p + "ln_1.bias"))
        qkv = h @ g(p + "attn.c_attn.weight") + g(p + "attn.c_attn.bias")  # Conv1D: [in, out]
        q, k, v = (m.reshape(T, n_head, hs).transpose(1, 0, 2) for m in np.split(qkv, 3, axis=1))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hs)
        scores[:, np.triu(np.ones((T, T), dtype=bool), 1)] = -np.inf
        e = np.exp(scores - scores.max(-1, keepdims=True))
        pat = e / e.sum(-1, keepdims=True)
        z = (pat @ v).transpose(1, 0, 2).reshape(T, d)
        x = x + z @ g(p + "attn.c_proj.weight") + g(p + "attn.c_proj.bias")
        post = _gelu_new(_layer_norm(x, g(p + "ln_2.weight"), g(p + "ln_2.bias")) @ g(p + "mlp.c_fc.weight") + g(p + "mlp.c_fc.bias"))
        x = x + post @ g(p + "mlp.c_proj.weight") + g(p + "mlp.c_proj.bias")
        patterns.append(pat)
        posts.append(post)
        L += 1
    return np.stack(patterns), np.stack(posts)


def test_attention_and_mlp_recomputed_from_checkpoint_weights(tiny_model_dir, tiny_lm, t):
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    patterns, posts = _numpy_gpt2(weights, t.token_ids, tiny_lm.n_head)
    np.testing.assert_allclose(t.attention, patterns, atol=1e-3)  # float16 storage
    np.testing.assert_allclose(t.mlp_post, posts, atol=1e-4)


def test_long_prompt_uses_query_chunks_and_still_matches(tiny_lm):
    """300 tokens spans three query chunks of 128; the pattern must not depend on chunking."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, tiny_lm.d_vocab, 300).tolist()
    t = trace_ids(tiny_lm, ids)
    with torch.inference_mode():
        out = tiny_lm.model(torch.tensor([ids]), output_attentions=True)
    for L in range(tiny_lm.n_layer):
        np.testing.assert_allclose(t.attention[L], out.attentions[L][0].numpy(), atol=1e-3)
    np.testing.assert_allclose(t.next_probs, torch.softmax(out.logits[0, -1], -1).numpy(), atol=1e-6)


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
    assert abs(est - t.nbytes) / t.nbytes < 0.1


def test_device_resident_arrays_copy_only_the_slice(tiny_lm, t):
    """On a GPU the Trace keeps torch tensors; take() must return numpy of just the slice."""
    arrays = {k: torch.from_numpy(np.array(t.take(k))) for k in ("attention", "resid")}
    dev_trace = Trace(t.model_name, t.prompt, t.token_ids, t.tokens, 0, "first", t.n_layer, t.n_head, arrays)
    head = dev_trace.take("attention", (1, 2))
    assert isinstance(head, np.ndarray) and head.shape == (t.n_tokens, t.n_tokens)
    assert not head.flags.writeable
    np.testing.assert_array_equal(head, t.attention[1, 2])
    np.testing.assert_array_equal(dev_trace["blocks.1.hook_resid_pre"], t.resid[1])
    assert dev_trace.nbytes == t.attention.nbytes + t.resid.nbytes
