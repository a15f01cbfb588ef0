"""core.sampling's sampling distribution and draws, checked against independent references:
transformers' own logits warpers (temperature, top-k, top-p, applied in `generate`'s order) for
the distribution, and a chi-square goodness-of-fit test for the tokens actually drawn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from core.sampling import Decoding, choose, sampling_distribution

VOCAB = 1000
ALPHA = 1e-3  # false-alarm rate of the goodness-of-fit tests: a correct sampler fails 1 seed in 1,000; seeds are fixed
DRAWS = 20_000
MIN_EXPECTED = 5  # chi-square needs about 5 expected draws per bin: rarer tokens share one bin


def random_logits(seed: int, scale: float, n: int = VOCAB) -> torch.Tensor:
    """[n] float32 logits; a larger scale makes a more peaked distribution."""
    return torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale


def transformers_probs(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """[vocab] the distribution `generate(do_sample=True, temperature, top_k, top_p)` draws from."""
    scores = logits[None].clone()
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    for warp in warpers:
        scores = warp(None, scores)
    return torch.softmax(scores, dim=-1)[0].double().numpy()


def ours(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """[vocab] core.sampling.sampling_distribution spread over the whole vocabulary (0 where filtered out)."""
    cand, q = sampling_distribution(logits, temperature, top_k, top_p)
    full = np.zeros(logits.shape[-1])
    full[np.arange(len(full)) if cand is None else cand.numpy()] = q.double().numpy()
    return full


CASES = [(seed, scale) for seed in range(3) for scale in (0.5, 2.0, 6.0)]  # flat to peaked


@pytest.mark.parametrize("top_p", [1e-6, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("seed,scale", CASES)
def test_top_p_keeps_what_transformers_keeps(seed, scale, top_p):
    logits = random_logits(seed, scale)
    expected, mine = transformers_probs(logits, 1.0, top_p=top_p), ours(logits, 1.0, top_p=top_p)
    np.testing.assert_array_equal(mine > 0, expected > 0)  # the same nucleus, token for token
    np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-9)
    assert (mine > 0).sum() >= 1
    if top_p <= 1e-6:
        assert np.flatnonzero(mine).tolist() == [int(logits.argmax())]  # a tiny top-p still keeps the likeliest
    if top_p == 1.0:
        assert (mine > 0).all()  # off


@pytest.mark.parametrize("top_k", [1, 5, 50, VOCAB - 1, VOCAB, VOCAB + 10])
@pytest.mark.parametrize("seed,scale", CASES[:4])
def test_top_k_keeps_what_transformers_keeps(seed, scale, top_k):
    logits = random_logits(seed, scale)
    expected, mine = transformers_probs(logits, 1.0, top_k=top_k), ours(logits, 1.0, top_k=top_k)
    np.testing.assert_array_equal(mine > 0, expected > 0)
    np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-9)
    assert (mine > 0).sum() == min(top_k, VOCAB)


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.3, 0, 1.0), (0.7, 0, 1.0), (1.0, 0, 1.0), (1.8, 0, 1.0),
                                                      (0.6, 40, 0.8), (1.5, 20, 0.5), (2.5, 200, 0.95)])
@pytest.mark.parametrize("seed,scale", CASES[::2])
def test_temperature_then_top_k_then_top_p_as_transformers_does(seed, scale, temperature, top_k, top_p):
    logits = random_logits(seed, scale)
    expected, mine = transformers_probs(logits, temperature, top_k, top_p), ours(logits, temperature, top_k, top_p)
    np.testing.assert_array_equal(mine > 0, expected > 0)
    np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-9)


# ---- the tokens drawn -----------------------------------------------------------------------------
def merged_bins(counts: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observed, expected) with every bin expecting fewer than MIN_EXPECTED draws merged into one,
    which joins the smallest other bin if it is still too small; bins expecting nothing are left out."""
    order = np.argsort(-expected, kind="stable")
    counts, expected = counts[order], expected[order]
    counts, expected = counts[expected > 0], expected[expected > 0]
    big = expected >= MIN_EXPECTED
    obs, exp = list(counts[big]), list(expected[big])
    if (~big).any():
        obs.append(counts[~big].sum())
        exp.append(expected[~big].sum())
        if exp[-1] < MIN_EXPECTED and len(exp) > 1:
            obs[-2:] = [obs[-2] + obs[-1]]
            exp[-2:] = [exp[-2] + exp[-1]]
    return np.array(obs, dtype=np.float64), np.array(exp, dtype=np.float64)


def p_value(counts: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square goodness of fit of token counts [vocab] to probs [vocab] (scaled to the same total)."""
    obs, exp = merged_bins(counts, probs / probs.sum() * counts.sum())
    return float(chisquare(obs, exp).pvalue)


DRAWN = [Decoding(temperature=1.0, seed=0), Decoding(temperature=0.7, top_k=25, seed=1),
         Decoding(temperature=1.4, top_p=0.8, seed=2), Decoding(temperature=1.2, top_k=30, top_p=0.9, seed=3)]


@pytest.mark.parametrize("decoding", DRAWN, ids=lambda d: d.describe())
def test_sampled_tokens_follow_the_sampling_distribution(decoding):
    """DRAWS tokens through the app's own pick (core.sampling.choose, what generate_steps calls each
    step), one seeded random stream; their frequencies fit transformers' distribution at ALPHA."""
    logits = random_logits(7, 2.0, n=60)
    expected = transformers_probs(logits, decoding.temperature, decoding.top_k, decoding.top_p)
    rng = torch.Generator().manual_seed(decoding.seed)
    steps = [choose(logits, decoding, rng, top=1) for _ in range(DRAWS)]
    drawn = np.array([s.token_id for s in steps])
    counts = np.bincount(drawn, minlength=len(logits))
    assert counts[expected == 0].sum() == 0  # never a token the filters removed
    np.testing.assert_allclose([s.sample_prob for s in steps[:200]], expected[drawn[:200]], rtol=1e-5)
    assert p_value(counts, expected) > ALPHA
    # The test can fail: the same draws are rejected against a slightly different distribution (a
    # temperature 15% off, on the same tokens) and against the off-by-one-rank reading of the CDF.
    other = transformers_probs(logits, decoding.temperature * 1.15) * (expected > 0)
    assert p_value(counts, other) < ALPHA
    order = np.argsort(-expected, kind="stable")
    shifted = np.zeros_like(expected)
    shifted[order] = np.roll(expected[order][: (expected > 0).sum()], 1).tolist() + [0.0] * int((expected == 0).sum())
    assert p_value(counts, shifted + (expected > 0) * 1e-12) < ALPHA


def test_draws_from_a_sampler_with_a_bug_are_rejected():
    """The check above catches real bugs: tokens drawn as if the temperature were ignored (T = 1
    where 0.7 was asked) fail the goodness-of-fit test at ALPHA, and tokens drawn as if top-k were
    ignored land outside the filtered set."""
    logits = random_logits(7, 2.0, n=60)
    asked = transformers_probs(logits, 0.7, top_k=25)
    rng = torch.Generator().manual_seed(0)
    at_one = np.array([choose(logits, Decoding(temperature=1.0, top_k=25), rng, top=1).token_id for _ in range(DRAWS)])
    assert p_value(np.bincount(at_one, minlength=len(logits)), asked) < ALPHA
    unfiltered = np.array([choose(logits, Decoding(temperature=0.7), rng, top=1).token_id for _ in range(2_000)])
    assert (asked[unfiltered] == 0).any()
