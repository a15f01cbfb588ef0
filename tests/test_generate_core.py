"""core.sampling, core.beam and core.continuations on the tiny GPT-2, checked against transformers' own generate
and forward."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from core import load_model
from core.beam import beam_search, beam_search_steps
from core.continuations import first_divergence, repeated_ngram_mask
from core.kv_cache import PREFILL_CHUNK
from core.sampling import (
    Decoding,
    continue_runs,
    entropy_at_temperatures,
    generate_ids,
    generate_steps,
    greedy_and_samples,
    runs_from_pairs,
    temperature_sweep,
)
from recipes.generation import steps_table
from viz.common import format_prob

PROMPT = "The best thing about AI is its ability to"


@pytest.fixture(scope="module")
def ids(tiny_lm):
    return tiny_lm.encode(PROMPT)


@pytest.fixture(scope="module")
def eos_lm(tiny_model_dir, tiny_lm, ids):
    """A private copy of the tiny model whose end-of-text is a token greedy decoding emits
    (the random model almost never emits the real one), so stopping at EOS is exercised."""
    lm = load_model(str(tiny_model_dir), device="cpu")
    greedy = [s.token_id for s in generate_ids(tiny_lm, ids, 12, Decoding(method="greedy", stop_at_eos=False))]
    frequent = max(set(greedy), key=greedy.count)
    lm.model.generation_config.eos_token_id = [frequent]
    lm.model.generation_config.pad_token_id = frequent
    return lm


def reference(lm, ids, **kw) -> list[int]:
    with torch.inference_mode():
        out = lm.model.generate(torch.tensor([ids]), **kw)
    return out[0, len(ids):].tolist()


def test_greedy_equals_transformers_generate(tiny_lm, ids):
    steps = generate_ids(tiny_lm, ids, 30, Decoding(method="greedy", stop_at_eos=False))
    assert [s.token_id for s in steps] == reference(tiny_lm, ids, max_new_tokens=30, min_new_tokens=30, do_sample=False)
    assert all(s.rank == 0 and s.sample_prob == 1.0 and s.n_allowed == 1 for s in steps)


def test_greedy_stops_at_end_of_text_like_generate(eos_lm, ids):
    steps = generate_ids(eos_lm, ids, 20, Decoding(method="greedy"))
    eos = eos_lm.model.generation_config.eos_token_id[0]
    ref = reference(eos_lm, ids, max_new_tokens=20, do_sample=False)
    mine = [s.token_id for s in steps]
    assert mine[-1] == eos and eos not in mine[:-1] and len(mine) < 20
    assert ref[: len(mine)] == mine and all(t == eos for t in ref[len(mine):])  # generate pads with EOS


def test_temperature_zero_is_greedy(tiny_lm, ids):
    greedy = generate_ids(tiny_lm, ids, 15, Decoding(method="greedy"))
    cold = generate_ids(tiny_lm, ids, 15, Decoding(method="sample", temperature=0.0, seed=7))
    assert [s.token_id for s in cold] == [s.token_id for s in greedy]


def test_recorded_tables_match_a_full_forward_without_cache(tiny_lm, ids):
    steps = generate_ids(tiny_lm, ids, 12, Decoding(temperature=1.0, seed=3, stop_at_eos=False))
    full = ids + [s.token_id for s in steps]
    with torch.inference_mode():
        logits = tiny_lm.model(torch.tensor([full])).logits[0].double()
    probs = torch.softmax(logits, -1).numpy()
    for s in steps:
        p = probs[len(ids) + s.index - 1]  # the distribution the step was picked from
        np.testing.assert_allclose(s.prob, p[s.token_id], rtol=1e-4)
        np.testing.assert_allclose(s.sample_prob, p[s.token_id], rtol=1e-4)  # T = 1, no filter: the same distribution
        np.testing.assert_allclose(s.entropy_bits, -(p * np.log2(p)).sum(), rtol=1e-4)
        assert list(s.top_ids) == list(np.argsort(-p, kind="stable")[:10])
        np.testing.assert_allclose(s.top_probs, np.sort(p)[::-1][:10], rtol=1e-4)
        assert s.rank == int((p > p[s.token_id] * (1 + 1e-6)).sum())


def test_seeded_sampling_is_reproducible_and_seeds_differ(tiny_lm, ids):
    def run(seed):
        return [s.token_id for s in generate_ids(tiny_lm, ids, 25, Decoding(temperature=0.8, seed=seed))]

    assert run(1) == run(1)
    assert len({tuple(run(seed)) for seed in range(4)}) == 4


@pytest.mark.parametrize("top_k", [1, 3, 10])
def test_top_k_never_leaves_the_k_likeliest(tiny_lm, ids, top_k):
    steps = generate_ids(tiny_lm, ids, 30, Decoding(temperature=1.5, top_k=top_k, seed=5, stop_at_eos=False))
    for s in steps:
        assert s.n_allowed == top_k and s.rank < top_k and s.token_id in s.top_ids[:top_k]
        # drawn from the k likeliest, renormalised: p_drawn >= p_model
        assert s.sample_prob >= s.prob * (1 - 1e-5)


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.7])
def test_top_p_draws_only_from_the_nucleus(tiny_lm, ids, top_p):
    steps = generate_ids(tiny_lm, ids, 30, Decoding(temperature=1.0, top_p=top_p, seed=11, stop_at_eos=False),
                         top=tiny_lm.d_vocab)  # the whole table, to rebuild the nucleus from it
    for s in steps:
        probs = np.array(s.top_probs)
        mass_before = np.cumsum(probs) - probs
        nucleus = max(1, int((mass_before < top_p).sum()))  # likeliest tokens until their mass reaches top_p
        assert abs(s.n_allowed - nucleus) <= 1  # float rounding at the boundary
        assert s.token_id in s.top_ids[: s.n_allowed] and s.rank < s.n_allowed
        np.testing.assert_allclose(s.sample_prob, s.prob / probs[: s.n_allowed].sum(), rtol=1e-3)


def test_generation_stops_at_the_context_window(tiny_lm):
    prompt = (list(range(1, 500)) * 3)[: tiny_lm.n_ctx - 3]
    steps = generate_ids(tiny_lm, prompt, 10, Decoding(method="greedy", stop_at_eos=False))
    assert len(steps) == 3
    assert generate_ids(tiny_lm, prompt + [1, 2, 3], 10, Decoding()) == []


def test_the_forward_lock_is_free_between_steps(tiny_lm, ids):
    gen = generate_steps(tiny_lm, ids, 5, Decoding(seed=0))
    next(gen)
    assert not tiny_lm.forward_lock.locked()
    gen.close()


@pytest.mark.parametrize("cut", [0, 1, 7, 29, 30])
def test_a_resumed_greedy_run_equals_transformers_generate(tiny_lm, ids, cut):
    greedy = Decoding(method="greedy", stop_at_eos=False)
    first = [s.token_id for s in generate_ids(tiny_lm, ids, 30, greedy)][:cut]
    rest = list(generate_steps(tiny_lm, ids, 30, greedy, resume=first))
    assert [s.index for s in rest] == list(range(cut, 30))
    expected = reference(tiny_lm, ids, max_new_tokens=30, min_new_tokens=30, do_sample=False)
    assert first + [s.token_id for s in rest] == expected


@pytest.mark.parametrize("decoding", [Decoding(temperature=0.8, seed=4, stop_at_eos=False),
                                      Decoding(temperature=1.5, top_k=5, seed=9, stop_at_eos=False),
                                      Decoding(temperature=1.0, top_p=0.6, seed=2, stop_at_eos=False)])
def test_a_resumed_sample_goes_on_as_if_never_stopped(tiny_lm, ids, decoding):
    whole = generate_ids(tiny_lm, ids, 25, decoding)
    for cut in (1, 10, 24):
        rest = list(generate_steps(tiny_lm, ids, 25, decoding, resume=[s.token_id for s in whole[:cut]]))
        assert [s.token_id for s in rest] == [s.token_id for s in whole[cut:]]  # the same seeded draws
        np.testing.assert_allclose([s.prob for s in rest], [s.prob for s in whole[cut:]], rtol=1e-4)


def test_nothing_more_after_end_of_text(eos_lm, ids):
    steps = generate_ids(eos_lm, ids, 20, Decoding(method="greedy"))
    assert list(generate_steps(eos_lm, ids, 20, Decoding(method="greedy"), resume=[s.token_id for s in steps])) == []


def test_a_long_prompt_is_read_in_steps_that_report_progress(tiny_lm, ids):
    prompt = (ids * 40)[: 2 * PREFILL_CHUNK + 22]
    read = []
    steps = generate_ids_reading(tiny_lm, prompt, read)
    assert read == [(PREFILL_CHUNK, len(prompt)), (2 * PREFILL_CHUNK, len(prompt))]
    assert steps == reference(tiny_lm, prompt, max_new_tokens=20, min_new_tokens=20, do_sample=False)
    read.clear()
    *_, last = beam_search_steps(tiny_lm, prompt, 8, 3, on_prompt=lambda r, n: read.append((r, n)))
    assert len(read) == 2  # the prompt once, not once per beam
    with torch.inference_mode():
        out = tiny_lm.model.generate(torch.tensor([prompt]), max_new_tokens=8, num_beams=3, do_sample=False,
                                     num_return_sequences=3, return_dict_in_generate=True, output_scores=True)
    np.testing.assert_allclose([h.score for h in last.result().hypotheses], out.sequences_scores.numpy(), rtol=1e-5)


def generate_ids_reading(lm, prompt, read) -> list[int]:
    greedy = Decoding(method="greedy", stop_at_eos=False)
    return [s.token_id for s in generate_steps(lm, prompt, 20, greedy, on_prompt=lambda r, n: read.append((r, n)))]


def test_runs_side_by_side_resume_run_by_run(tiny_lm, ids):
    decodings = greedy_and_samples(0.8, [0, 1, 2])
    expected = [[s.token_id for s in generate_ids(tiny_lm, ids, 12, d)] for d in decodings]
    assert expected[0] == reference(tiny_lm, ids, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    pairs = list(continue_runs(tiny_lm, ids, 12, decodings))
    assert runs_from_pairs(pairs, 4) == expected
    for cut in (5, 12, 30):  # inside the first run, at its end, inside the third
        done = runs_from_pairs(pairs[:cut], 4)
        assert runs_from_pairs(pairs[:cut] + list(continue_runs(tiny_lm, ids, 12, decodings, done)), 4) == expected


def test_runs_side_by_side_read_a_long_prompt_once(tiny_lm, ids):
    prompt = (ids * 40)[: 2 * PREFILL_CHUNK + 5]
    decodings = greedy_and_samples(1.0, [3, 4])
    read = []
    runs = runs_from_pairs(list(continue_runs(tiny_lm, prompt, 6, decodings, on_prompt=lambda r, n: read.append(r))), 3)
    assert read == [PREFILL_CHUNK, 2 * PREFILL_CHUNK]  # once for the three runs
    assert runs == [[s.token_id for s in generate_ids(tiny_lm, prompt, 6, d)] for d in decodings]


def test_generation_raises_no_deprecation_warning(tiny_lm, ids):
    """transformers attributes a renamed keyword's FutureWarning to its own wrapper, so a module filter
    on our packages would miss it: record every warning instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate_ids(tiny_lm, ids, 3, Decoding(seed=1))
        beam_search(tiny_lm, ids, 3, 2)
    assert [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))] == []


BEAM_SETTINGS = [(2, 1.0, False), (3, 1.0, True), (4, 0.5, True), (3, 2.0, "never"), (5, -1.0, False),
                 (3, 0.0, "never")]


@pytest.mark.parametrize("which", ["tiny_lm", "eos_lm"])
@pytest.mark.parametrize("num_beams,length_penalty,early_stopping", BEAM_SETTINGS)
def test_beam_search_matches_transformers(request, ids, which, num_beams, length_penalty, early_stopping):
    lm = request.getfixturevalue(which)
    result = beam_search(lm, ids, 10, num_beams, length_penalty, early_stopping)
    with torch.inference_mode():
        out = lm.model.generate(torch.tensor([ids]), max_new_tokens=10, num_beams=num_beams, do_sample=False,
                                length_penalty=length_penalty, early_stopping=early_stopping,
                                num_return_sequences=num_beams, return_dict_in_generate=True, output_scores=True)
    assert len(result.hypotheses) == num_beams
    pad = lm.model.generation_config.pad_token_id
    for hyp, seq in zip(result.hypotheses, out.sequences[:, len(ids):].tolist()):
        assert seq[: len(hyp.ids)] == list(hyp.ids)
        assert all(t == pad for t in seq[len(hyp.ids):])  # shorter hypotheses are padded by generate
    np.testing.assert_allclose([h.score for h in result.hypotheses], out.sequences_scores.numpy(), rtol=1e-5)
    # The best one is exactly what generate returns by default.
    best = reference(lm, ids, max_new_tokens=10, num_beams=num_beams, do_sample=False, length_penalty=length_penalty,
                     early_stopping=early_stopping)
    assert best[: len(result.hypotheses[0].ids)] == list(result.hypotheses[0].ids)
    for hyp in result.hypotheses:
        assert math.isclose(hyp.logprob, hyp.score * len(hyp.ids) ** length_penalty, rel_tol=1e-6)


@pytest.mark.parametrize("which", ["tiny_lm", "eos_lm"])
@pytest.mark.parametrize("num_beams,length_penalty,early_stopping",
                         [(3, 1.0, True), (4, 0.5, False), (3, 2.0, "never")])
def test_beam_search_stopped_and_resumed_matches_transformers(request, ids, which, num_beams, length_penalty,
                                                              early_stopping):
    lm = request.getfixturevalue(which)
    states = list(beam_search_steps(lm, ids, 10, num_beams, length_penalty, early_stopping))
    assert [s.step for s in states] == list(range(1, len(states) + 1)) and len(states) <= 10
    assert states[-1].done and not any(s.done for s in states[:-1])
    with torch.inference_mode():
        out = lm.model.generate(torch.tensor([ids]), max_new_tokens=10, num_beams=num_beams, do_sample=False,
                                length_penalty=length_penalty, early_stopping=early_stopping,
                                num_return_sequences=num_beams, return_dict_in_generate=True, output_scores=True)
    for cut in sorted({1, len(states) // 2, len(states) - 1} - {0}):
        *_, last = beam_search_steps(lm, ids, 10, num_beams, length_penalty, early_stopping, resume=states[cut - 1])
        result = last.result()
        np.testing.assert_allclose([h.score for h in result.hypotheses], out.sequences_scores.numpy(), rtol=1e-5)
        for hyp, seq in zip(result.hypotheses, out.sequences[:, len(ids):].tolist()):
            assert seq[: len(hyp.ids)] == list(hyp.ids)
        # what a stopped search shows is the start of the finished one
        assert states[cut - 1].result().running == result.running[:cut]
    assert list(beam_search_steps(lm, ids, 10, num_beams, length_penalty, early_stopping, resume=states[-1])) == []


def test_beam_search_with_eos_finishes_some_beams_early(eos_lm, ids):
    result = beam_search(eos_lm, ids, 10, 4, 0.5, True)
    assert any(len(h.ids) < 10 for h in result.hypotheses)
    assert len(result.running) >= 1 and all(1 <= len(b) <= 4 for b in result.running)


def test_repeated_ngram_mask_marks_loops():
    ids = [1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 3, 4, 5, 6]
    np.testing.assert_array_equal(repeated_ngram_mask(ids, 4), [False] * 6 + [True] * 8)
    assert not repeated_ngram_mask([1, 2, 3, 1, 2, 4], 3).any()
    # the first "7 7" is the original
    np.testing.assert_array_equal(repeated_ngram_mask([7, 7, 7, 7], 2), [False, True, True, True])
    assert repeated_ngram_mask([1, 2], 4).tolist() == [False, False]


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([5], [6, 7]) == 0


def test_temperature_sweep_flattens_the_distribution():
    logits = np.array([3.0, 2.0, 1.0, 0.0, -1.0], dtype=np.float32)
    ids, probs = temperature_sweep(logits, [0.0, 0.5, 1.0, 2.0], k=3)
    assert ids.tolist() == [0, 1, 2]
    np.testing.assert_allclose(probs[0], [1, 0, 0])
    np.testing.assert_allclose(probs[2], np.exp(logits[:3]) / np.exp(logits).sum(), rtol=1e-6)
    assert probs[1, 0] > probs[2, 0] > probs[3, 0]  # the top token loses mass as T rises
    bits = entropy_at_temperatures(logits, [0.0, 0.5, 1.0, 2.0, 1000.0])
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(bits[2], -(p * np.log2(p)).sum(), rtol=1e-6)
    assert bits[0] == 0 and list(bits) == sorted(bits) and abs(bits[-1] - np.log2(5)) < 1e-3


def test_steps_table_reads_like_the_essay(tiny_lm, ids):
    steps = generate_ids(tiny_lm, ids, 6, Decoding(seed=2))
    table = steps_table(tiny_lm, steps, repeated_ngram_mask([s.token_id for s in steps]))
    assert list(table["step"]) == [1, 2, 3, 4, 5, 6]
    assert list(table["id"]) == [s.token_id for s in steps]
    assert {"chosen", "p (model)", "p (drawn)", "entropy (bits)", "repeat", "#1", "#5"} <= set(table.columns)
    # the alternatives' probabilities are written the one way the app writes a probability
    assert table["#1"][0].endswith("  " + format_prob(steps[0].top_probs[0]))
