"""Ablation and activation patching against transformers' own model with hooks (the oracle), and
the promises: ablating nothing is the plain trace, patching everything is the clean run, and no
session ever sees an ablated model."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from core import ByteBoundedCache, trace, trace_ids
from core.interventions import ablate, answer_tokens, head_ablation_scan, last_logits, patch, run_blocks

PROMPT = "The best thing about AI is its ability to learn"


@pytest.fixture(scope="module")
def t(tiny_lm):
    return trace(tiny_lm, PROMPT, cache=ByteBoundedCache(2**26))


def _hooked_probs(lm, ids, hooks) -> np.ndarray:
    """transformers' forward with (module, kind, fn) hooks; returns the next-token probabilities."""
    handles = []
    try:
        for module, kind, fn in hooks:
            handles.append(module.register_forward_pre_hook(fn) if kind == "pre" else module.register_forward_hook(fn))
        with torch.inference_mode():
            logits = lm.model(torch.tensor([list(ids)])).logits[0, -1]
    finally:
        for h in handles:
            h.remove()
    return torch.softmax(logits.double(), -1).numpy()


def _head_hook(lm, head, value=None):
    hs = lm.d_model // lm.n_head

    def fn(module, args):
        z = args[0].clone()  # c_proj's input: the heads' z side by side, [batch, pos, d_model]
        z[..., head * hs:(head + 1) * hs] = 0.0 if value is None else torch.as_tensor(value)
        return (z,)
    return fn


def test_ablating_nothing_is_the_plain_trace(tiny_lm, t):
    a = ablate(tiny_lm, PROMPT)  # a prompt is traced first
    np.testing.assert_array_equal(a.next_probs, t.next_probs)
    np.testing.assert_array_equal(a.token_logprob, t.token_logprob)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_head_ablation_equals_a_hooked_transformers_forward(tiny_lm, t, mode):
    L, h = 1, 2
    value = t.layer_act(L, "z", (slice(None), h)).mean(0) if mode == "mean" else None
    expected = _hooked_probs(tiny_lm, t.token_ids, [(tiny_lm.model.transformer.h[L].attn.c_proj, "pre",
                                                     _head_hook(tiny_lm, h, value))])
    got = ablate(tiny_lm, t, heads=[(L, h)], mode=mode).next_probs
    # the tiny random model spreads its probability thin (~0.002 each): compare relatively
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert (np.abs(expected - t.next_probs) / t.next_probs).max() > 0.01  # the head mattered: the check can fail


def test_neuron_and_mlp_layer_ablation_equal_hooked_forwards(tiny_lm, t):
    block = tiny_lm.model.transformer.h[0]

    def kill_neuron(module, args, out):
        out = out.clone()
        out[..., 7] = 0.0
        return out

    expected = _hooked_probs(tiny_lm, t.token_ids, [(block.mlp.act, "post", kill_neuron)])
    np.testing.assert_allclose(ablate(tiny_lm, t, neurons=[(0, 7)]).next_probs, expected, rtol=1e-4, atol=1e-7)
    expected = _hooked_probs(tiny_lm, t.token_ids, [(block.mlp, "post", lambda m, a, out: torch.zeros_like(out))])
    got = ablate(tiny_lm, t, mlp_layers=[0])
    np.testing.assert_allclose(got.next_probs, expected, rtol=1e-4, atol=1e-7)
    assert (np.abs(expected - t.next_probs) / t.next_probs).max() > 0.01
    assert got.token_logprob.shape == (t.n_tokens,) and np.isnan(got.token_logprob[0])
    with pytest.raises(ValueError, match="no head 9"):
        ablate(tiny_lm, t, heads=[(0, 9)])


def test_the_scan_equals_ablating_each_head_alone(tiny_lm, t):
    target = int(t.top_ids[-1, 0])
    scan = head_ablation_scan(tiny_lm, t, target)
    assert scan["heads"].shape == (tiny_lm.n_layer, tiny_lm.n_head) and scan["mlp"].shape == (tiny_lm.n_layer,)
    base = np.log(t.next_probs[target])
    for L, h in [(0, 0), (1, 3)]:
        alone = np.log(ablate(tiny_lm, t, heads=[(L, h)]).next_probs[target]) - base
        assert scan["heads"][L, h] == pytest.approx(alone, abs=1e-4)
    assert scan["mlp"][1] == pytest.approx(np.log(ablate(tiny_lm, t, mlp_layers=[1]).next_probs[target]) - base,
                                           abs=1e-4)


def test_patching_the_residual_equals_a_hooked_forward_and_everything_restores_the_clean_run(tiny_lm):
    cache = ByteBoundedCache(2**26)
    ids = tiny_lm.encode("The cat sat on the mat")
    clean = trace_ids(tiny_lm, ids, cache=cache)
    corrupt = trace_ids(tiny_lm, ids[:1] + tiny_lm.encode(" dog")[:1] + ids[2:], cache=cache)  # one token differs
    a, b = answer_tokens(clean, corrupt)
    res = patch(tiny_lm, clean, corrupt, "resid")
    grid = res["grid"]
    assert grid.shape == (tiny_lm.n_layer, clean.n_tokens)
    # oracle: transformers with block L's input at position p replaced by the clean run's
    L, p = 1, 2

    def swap(module, args):
        x = args[0].clone()
        x[0, p] = clean.tensor("resid", (L, p))
        return (x,) + tuple(args[1:])

    probs = _hooked_probs(tiny_lm, corrupt.token_ids, [(tiny_lm.model.transformer.h[L], "pre", swap)])
    ld = np.log(probs[a]) - np.log(probs[b])  # a difference of logits equals one of log-probs
    expected = (ld - res["logit_diff_corrupted"]) / (res["logit_diff_clean"] - res["logit_diff_corrupted"])
    assert grid[L, p] == pytest.approx(expected, abs=1e-4)
    # every position at layer 0 gives the clean run back; nothing patched gives the corrupted run
    with torch.inference_mode():
        all_clean = last_logits(tiny_lm, run_blocks(tiny_lm, clean.tensor("resid", (0,))[None], 0))[0]
        nothing = last_logits(tiny_lm, run_blocks(tiny_lm, corrupt.tensor("resid", (0,))[None], 0))[0]
    span = res["logit_diff_clean"] - res["logit_diff_corrupted"]
    assert float(all_clean[a] - all_clean[b] - res["logit_diff_corrupted"]) / span == pytest.approx(1.0, abs=1e-4)
    assert float(nothing[a] - nothing[b] - res["logit_diff_corrupted"]) / span == pytest.approx(0.0, abs=1e-4)
    heads = patch(tiny_lm, clean, corrupt, "head")["grid"]
    assert heads.shape == (tiny_lm.n_layer, tiny_lm.n_head) and np.isfinite(heads).all()


def test_patching_prompts_of_different_lengths_says_so(tiny_lm):
    with pytest.raises(ValueError, match="tokens; patching needs the same number"):
        patch(tiny_lm, trace(tiny_lm, "The cat sat"), trace(tiny_lm, "The cat sat on the mat"))


def test_an_ablation_never_touches_what_another_session_sees(tiny_lm, t):
    """One thread ablates again and again while another traces the same prompt."""
    fresh: list = []
    stop = threading.Event()

    def ablating():
        while not stop.is_set():
            ablate(tiny_lm, t, heads=[(0, 1), (1, 2)], mlp_layers=[0], mode="zero")

    worker = threading.Thread(target=ablating)
    worker.start()
    try:
        for _ in range(5):
            fresh.append(trace(tiny_lm, PROMPT, cache=ByteBoundedCache(0)))
    finally:
        stop.set()
        worker.join()
    for other in fresh:
        np.testing.assert_array_equal(other.next_probs, t.next_probs)
        np.testing.assert_array_equal(other.resid, t.resid)
