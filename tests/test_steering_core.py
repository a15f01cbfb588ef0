"""core.steering against transformers' own forward with a forward pre-hook on block L that adds the
same vector (the oracle), on the tiny model and the bundled one; generation with cached keys
and values against transformers' own greedy decoding; and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import PromptError, load_model, trace
from core.steering import (
    MAX_COEFFICIENT,
    SteeringError,
    checked_coefficient,
    contrast_vector,
    generate,
    mean_difference,
    steered_logits,
    token_direction,
)
from tests.conftest import ROOT

PROMPT = "The cat sat on the mat. The dog ate the bone."


def hooked_logits(lm, ids: list[int], vector: torch.Tensor, layer: int, coefficient: float) -> torch.Tensor:
    """transformers' forward with coefficient × vector added to block `layer`'s input: a [d_model]
    vector at every position, a [k, d_model] one at the first k."""
    def add(module, args):
        x = args[0].clone()
        if vector.dim() == 1:
            x += coefficient * vector
        else:
            k = min(len(vector), x.shape[1])
            x[:, :k] += coefficient * vector[:k]
        return (x,) + tuple(args[1:])

    hook = lm.model.transformer.h[layer].register_forward_pre_hook(add)
    try:
        with torch.inference_mode():
            return lm.model(torch.tensor([ids])).logits[0]
    finally:
        hook.remove()


@pytest.fixture(scope="module")
def bundled():
    return load_model(str(ROOT / "bundled" / "mini-gpt2-kjv"), device="cpu")


def _vectors(lm, layer: int) -> dict[str, torch.Tensor]:
    t = trace(lm, PROMPT)
    from core.attribution import position_parts

    head_writes = position_parts(lm, t, 5)["heads"][max(layer - 1, 0), 1]  # what one head wrote at position 5
    return {
        "contrast pair": contrast_vector(lm, " love", " hate you", layer),
        "mean difference": mean_difference(lm, ["The cat sat.", "A dog ran"], ["It rained all day"], layer),
        "token direction": token_direction(lm, int(t.top_ids[-1, 0])),
        "what a head writes": head_writes.clone(),
    }


@pytest.mark.parametrize("model", ["tiny", "bundled"])
def test_steered_logits_equal_a_pre_hook_on_transformers(model, tiny_lm, bundled):
    lm = tiny_lm if model == "tiny" else bundled
    layer = 1
    ids = lm.encode(PROMPT)
    for name, vector in _vectors(lm, layer).items():
        for c in (3.0, -1.5):
            got = steered_logits(lm, ids, vector, layer, c)
            want = hooked_logits(lm, ids, vector, layer, c)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5 * want.abs().max().item(),
                                       err_msg=name)
            assert not torch.allclose(got, hooked_logits(lm, ids, vector, layer, 0.0), atol=1e-4), name


def test_coefficient_zero_is_exactly_the_plain_run(tiny_lm):
    ids = tiny_lm.encode(PROMPT)
    v = contrast_vector(tiny_lm, " love", " hate", 1)
    plain = steered_logits(tiny_lm, ids, v, 1, 0.0)
    np.testing.assert_array_equal(plain[-1].numpy(), steered_logits(tiny_lm, ids, v * 0, 1, 7.0)[-1].numpy())
    np.testing.assert_allclose(plain[-1].numpy(), trace(tiny_lm, PROMPT).next_logits, rtol=1e-5, atol=1e-5)
    a = list(generate(tiny_lm, ids, 12, vector=v, layer=1, coefficient=0.0, temperature=0.9, seed=3))
    b = list(generate(tiny_lm, ids, 12, temperature=0.9, seed=3))
    assert [x.token_id for x in a] == [x.token_id for x in b]
    np.testing.assert_array_equal(np.stack([x.probs for x in a]), np.stack([x.probs for x in b]))


def test_generation_with_cached_keys_equals_transformers(tiny_lm):
    ids = tiny_lm.encode(PROMPT)
    mine = [x.token_id for x in generate(tiny_lm, ids, 15, temperature=0)]
    with torch.inference_mode():
        theirs = tiny_lm.model.generate(torch.tensor([ids]), max_new_tokens=15, do_sample=False, min_new_tokens=15,
                                        pad_token_id=0)[0, len(ids):].tolist()
    assert mine == theirs
    v = contrast_vector(tiny_lm, " love", " hate", 1)
    steered = list(generate(tiny_lm, ids, 6, vector=v, layer=1, coefficient=4.0, temperature=0))
    seq = list(ids)
    for x in steered:  # each step's distribution: a whole forward of the sequence so far, hooked
        want = torch.softmax(hooked_logits(tiny_lm, seq, v, 1, 4.0)[-1], -1)
        np.testing.assert_allclose(x.probs, want.numpy(), rtol=1e-4, atol=1e-6)
        seq.append(x.token_id)


def test_bad_input_gets_messages_or_clamped_values(tiny_lm):
    with pytest.raises(PromptError, match="empty"):
        contrast_vector(tiny_lm, "", " hate", 1)
    with pytest.raises(PromptError, match="at most"):
        contrast_vector(tiny_lm, "word " * 2000, " hate", 1)
    with pytest.raises(SteeringError, match="not a number"):
        checked_coefficient(float("nan"))
    assert checked_coefficient(1e6) == MAX_COEFFICIENT and checked_coefficient(-1e9) == -MAX_COEFFICIENT
    with pytest.raises(SteeringError, match="no block"):
        contrast_vector(tiny_lm, "a", "b", 99)
    huge = torch.full((tiny_lm.d_model,), 3e38)
    with pytest.raises(SteeringError, match="not finite"):
        steered_logits(tiny_lm, tiny_lm.encode(PROMPT), huge, 1, 10.0)


def test_a_contrast_pair_really_steers_the_bundled_model_and_a_random_vector_does_not(bundled):
    """ActAdd on the bundled model with a pair from its own text (“Jesus said unto them” against
    “Moses said unto them”, before block 2, coefficient 6), on held-out chapters (Genesis 8, …,
    where Jesus never appears): the word's probability at the next token rises on >= 80% of 50
    prompts, and it appears in 20 sampled continuations at least twice as often (and at least 5
    times). A random vector of the same norm per position does neither."""
    import re

    lm = bundled
    text = (ROOT / "tests" / "data" / "kjv_held_out.txt").read_text()
    verses = [re.sub(r"^\d+ ", "", line) for line in text.splitlines() if re.match(r"^\d+ ", line)]
    bos = lm.tokenizer.bos_token_id
    prompts = [[bos] + lm.encode(" ".join(v.split()[:6])) for v in verses[:50]]
    word = lm.encode(" Jesus")[0]
    layer, c = 2, 6.0
    v = contrast_vector(lm, " Jesus said unto them, Jesus", " Moses said unto them, Moses", layer)
    noise = torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
    random = noise / noise.norm(dim=-1, keepdim=True) * v.norm(dim=-1, keepdim=True)

    def rises(vector) -> float:
        p = [torch.softmax(steered_logits(lm, ids, vector, layer, coef)[-1], -1)[word] for ids in prompts
             for coef in (0.0, c)]
        return float(np.mean([after > before for before, after in zip(p[::2], p[1::2])]))

    def count(vector, coef: float) -> int:
        return sum([x.token_id for x in generate(lm, ids, 30, vector=vector, layer=layer, coefficient=coef,
                                                 temperature=1.0, seed=s)].count(word)
                   for s, ids in enumerate(prompts[:20]))

    plain = count(v, 0.0)
    assert rises(v) >= 0.8
    assert count(v, c) >= max(2 * plain, 5)
    assert rises(random) < 0.8
    assert count(random, c) < max(2 * plain, 5)


def test_a_steered_trace_is_the_steered_run_with_its_own_cache_key(tiny_lm):
    from core.steering import steered_trace

    ids = tiny_lm.encode(PROMPT)
    v = contrast_vector(tiny_lm, " love", " hate", 1)
    t = steered_trace(tiny_lm, ids, v, 1, 3.0)
    np.testing.assert_allclose(t.next_logits, hooked_logits(tiny_lm, ids, v, 1, 3.0)[-1].numpy(), rtol=1e-5, atol=1e-5)
    plain = trace(tiny_lm, PROMPT)
    assert t.key != plain.key
    # a layer recomputed from the stored (steered) residual gives back the next stored residual
    L = 1
    np.testing.assert_allclose(t.layer_act(L, "resid_mid") + t.layer_act(L, "mlp_out"), t.resid[L + 1], atol=1e-5)
    assert not np.allclose(t.layer_act(L, "mlp_out"), plain.layer_act(L, "mlp_out"), atol=1e-4)
