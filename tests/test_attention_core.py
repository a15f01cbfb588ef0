"""core.attention: per-head scores on hand-built patterns, induction, pre-softmax scores."""
from __future__ import annotations

import numpy as np
import pytest

from core.attention import HEAD_METRICS, attended_by, attends_to, head_scores, induction_scores, repeated_random_ids
from core.trace import trace, trace_ids
from tests.oracles import first_token_score, induction_score, mean_entropy, previous_token_score, self_score


def previous_token_pattern(n: int) -> np.ndarray:
    """Every query puts all its weight on the token before it (query 0 on itself)."""
    p = np.zeros((n, n), dtype=np.float16)
    p[0, 0] = 1
    p[np.arange(1, n), np.arange(n - 1)] = 1
    return p


def uniform_pattern(n: int) -> np.ndarray:
    p = np.tril(np.ones((n, n)))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float16)


def copying_pattern(length: int, offset: int = 1) -> np.ndarray:
    """An induction head on [bos] + r + r: the second copy looks at the token after the first occurrence."""
    n = offset + 2 * length
    p = previous_token_pattern(n).astype(np.float32)
    for j in range(length - 1):
        q = offset + length + j
        p[q] = 0
        p[q, offset + j + 1] = 1
    return p


@pytest.fixture(scope="module")
def prompt_trace(tiny_lm):
    return trace(tiny_lm, "hello hello hello bye bye. The cat sat on the mat.")


def test_previous_token_score_is_one_for_a_previous_token_head():
    p = previous_token_pattern(20)
    assert previous_token_score(p) == pytest.approx(1.0)
    assert self_score(p) == pytest.approx(0.0)
    assert first_token_score(p) == pytest.approx(1 / 19)  # only query 1's previous token is token 0
    assert mean_entropy(p) == pytest.approx(0.0)


def test_scores_of_a_uniform_head():
    n = 16
    p = uniform_pattern(n)
    q = np.arange(1, n)
    assert first_token_score(p) == pytest.approx(np.mean(1 / (q + 1)), abs=1e-3)
    assert self_score(p) == pytest.approx(np.mean(1 / (q + 1)), abs=1e-3)
    assert mean_entropy(p) == pytest.approx(np.mean(np.log2(np.arange(1, n + 1))), abs=1e-2)


def test_scores_broadcast_over_layer_and_head():
    stack = np.stack([np.stack([previous_token_pattern(8), uniform_pattern(8)])] * 3)  # [3, 2, 8, 8]
    s = previous_token_score(stack)
    assert s.shape == (3, 2)
    assert np.allclose(s[:, 0], 1.0) and np.all(s[:, 1] < 0.5)


def test_induction_score_high_for_a_copying_head_low_otherwise():
    length = 30
    assert induction_score(copying_pattern(length), length) == pytest.approx(1.0)
    n = 1 + 2 * length
    assert induction_score(previous_token_pattern(n), length) == pytest.approx(0.0)
    assert induction_score(uniform_pattern(n), length) < 0.05


def test_head_scores_match_the_trace(prompt_trace):
    t = prompt_trace
    scores = head_scores(t)
    assert set(scores) | {"induction"} == set(HEAD_METRICS)
    for name, s in scores.items():
        assert s.shape == (t.n_layer, t.n_head), name
    L, h = 1, 2
    p = t.attention[L, h].astype(np.float64)
    n = t.n_tokens
    assert scores["previous"][L, h] == pytest.approx(np.mean([p[q, q - 1] for q in range(1, n)]), rel=1e-5)
    assert scores["first"][L, h] == pytest.approx(p[1:, 0].mean(), rel=1e-5)
    assert scores["self"][L, h] == pytest.approx(np.mean(np.diag(p)[1:]), rel=1e-5)
    nats = -(p * np.log(np.where(p > 0, p, 1))).sum(-1).mean()
    assert scores["entropy"][L, h] == pytest.approx(nats / np.log(2), rel=1e-5)


def test_induction_scores_run_once_on_a_repeated_sequence(tiny_lm):
    ids = repeated_random_ids(tiny_lm, 40)
    assert len(ids) == 81 and ids[1:41] == ids[41:]
    assert ids[0] == tiny_lm.tokenizer.bos_token_id
    s = induction_scores(tiny_lm, length=40)
    assert s.shape == (tiny_lm.n_layer, tiny_lm.n_head)
    assert np.all((s >= 0) & (s <= 1))
    t = trace_ids(tiny_lm, ids)
    assert s[1, 3] == pytest.approx(induction_score(t.attention[1, 3], 40), rel=1e-6)


def test_the_induction_probe_draws_from_the_tokens_a_checkpoint_lists(tmp_path, tiny_model_dir, tiny_lm):
    """A checkpoint trained on a narrow text lists its tokens (trained_tokens.json); the probe draws
    from those. Without the file, or with one that cannot be used, it draws from every token."""
    import json
    import shutil

    from core import load_model

    assert tiny_lm.trained_token_ids is None and len(set(repeated_random_ids(tiny_lm, 120)[1:])) > 60
    d = shutil.copytree(tiny_model_dir, tmp_path / "narrow")
    known = [7, 300, 301, 400, 401]
    for content, expect in [({"token_ids": known}, set(known)), ({"token_ids": [7, 10**9]}, None),
                            ("not json", None), ({"ids": known}, None)]:
        (d / "trained_tokens.json").write_text(content if isinstance(content, str) else json.dumps(content))
        lm = load_model(str(d), device="cpu")
        drawn = set(repeated_random_ids(lm, 120)[1:])
        if expect is None:
            assert lm.trained_token_ids is None and len(drawn) > 60
        else:
            assert drawn == expect


def test_pre_softmax_scores_softmax_back_to_the_pattern(tiny_lm, prompt_trace):
    t = prompt_trace
    for L, h in [(0, 0), (1, 3)]:
        s = t.attn_scores(L, h)
        n = t.n_tokens
        assert s.shape == (n, n) and s.dtype == np.float32
        assert np.all(np.isneginf(s[np.triu_indices(n, 1)]))
        e = np.exp(s - s.max(axis=1, keepdims=True))
        np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), t.attention[L, h], atol=2e-3)


def test_slices_for_the_views(prompt_trace):
    t = prompt_trace
    a = t.attention
    pos = 5
    # a row or column is read as exp(q·k·scale - lse), without forming the pattern: float32 noise
    np.testing.assert_allclose(attends_to(t, pos), a[:, :, pos, : pos + 1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(attended_by(t, pos), a[:, :, pos:, pos], rtol=1e-5, atol=1e-7)
