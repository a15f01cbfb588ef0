"""core.embeddings against independent computations (sklearn, scipy, the model's own parameters)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA
from sklearn.metrics.pairwise import cosine_similarity

from core.embeddings import (
    EXAMPLE_WORD_GROUPS,
    cosine_matrix,
    euclidean_matrix,
    example_groups,
    example_words,
    find_tokens,
    in_sentence_form,
    learned_mask,
    nearest_tokens,
    occurrence_similarity,
    parse_groups,
    pca,
    pool_square,
    position_embeddings,
    repeated_tokens,
    split_words,
    token_embeddings,
    unlearned_words,
    word_vector,
    word_vectors,
)
from core.model import load_model
from core.trace import trace
from tests.conftest import ROOT


def test_tables_are_the_models_own_read_only(tiny_lm):
    wte, wpe = token_embeddings(tiny_lm), position_embeddings(tiny_lm)
    np.testing.assert_array_equal(wte, tiny_lm.model.transformer.wte.weight.detach().numpy())
    np.testing.assert_array_equal(wpe, tiny_lm.model.transformer.wpe.weight.detach().numpy())
    assert wte.shape == (tiny_lm.d_vocab, tiny_lm.d_model) and wpe.shape == (tiny_lm.n_ctx, tiny_lm.d_model)
    with pytest.raises(ValueError):
        wte[0, 0] = 1.0  # the shared model must never be written through a view


def test_words_take_their_in_sentence_form_by_default(tiny_lm):
    assert in_sentence_form("cat") == " cat" and in_sentence_form(" cat") == " cat"
    assert in_sentence_form("cat", leading_space=False) == "cat"
    wv = word_vector(tiny_lm, "cat")
    assert wv.text == " cat" and wv.ids == tuple(tiny_lm.encode(" cat")) and wv.n_pieces == 1
    assert wv.pieces == ("␣cat",) and wv.note == "one token"
    np.testing.assert_array_equal(wv.vector, token_embeddings(tiny_lm)[wv.ids[0]])
    bare = word_vector(tiny_lm, "cat", leading_space=False)
    assert bare.ids == tuple(tiny_lm.encode("cat")) and bare.ids != wv.ids


def test_multi_token_words_are_the_mean_of_their_pieces_and_say_so(tiny_lm):
    wv = word_vector(tiny_lm, "elephant")  # the tiny vocabulary has no such token
    ids = tiny_lm.encode(" elephant")
    assert len(ids) > 1 and wv.ids == tuple(ids)
    np.testing.assert_allclose(wv.vector, token_embeddings(tiny_lm)[ids].mean(0), rtol=1e-6)
    assert wv.note.startswith(f"{len(ids)} tokens: mean of ")
    assert [w.word for w in word_vectors(tiny_lm, ["cat", "  ", "dog"])] == ["cat", "dog"]


def test_word_lists_are_parsed_by_commas_and_groups():
    assert split_words("cat, dog,,New York\n cat ; fish") == ["cat", "dog", "New York", "fish"]
    pairs = parse_groups("animals: cat, dog\nfruits: apple\n\nlonely, words")
    assert pairs == [("animals", "cat"), ("animals", "dog"), ("fruits", "apple"), ("words", "lonely"),
                     ("words", "words")]
    assert len(parse_groups("g: " + ", ".join(f"w{i}" for i in range(999)))) == 400


def test_similarity_matrices_match_sklearn_and_scipy():
    X = np.random.default_rng(0).normal(size=(7, 33)).astype(np.float32)
    np.testing.assert_allclose(cosine_matrix(X), cosine_similarity(X), atol=1e-6)
    np.testing.assert_allclose(euclidean_matrix(X), cdist(X, X), rtol=1e-5, atol=1e-5)
    assert np.all(np.diag(euclidean_matrix(X)) == 0)


def brute_force_neighbours(W, v, k, exclude=()):
    sims = cosine_similarity(W.astype(np.float64), v[None].astype(np.float64))[:, 0]
    sims[list(exclude)] = -np.inf
    order = np.argsort(-sims, kind="stable")[:k]
    return order, sims[order]


@pytest.mark.parametrize("exclude", [(), (3, 17)])
def test_nearest_tokens_match_brute_force_cosine(exclude):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(2000, 48)).astype(np.float32)
    v = W[3] + 0.1 * rng.normal(size=48).astype(np.float32)
    ids, sims = nearest_tokens(W, v, 20, exclude=exclude)
    want_ids, want_sims = brute_force_neighbours(W, v, 20, exclude)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)
    assert (ids[0] == 3) == (3 not in exclude)


def test_nearest_tokens_over_the_whole_vocabulary(tiny_lm):
    W = token_embeddings(tiny_lm)
    wv = word_vector(tiny_lm, "elephant")
    ids, sims = nearest_tokens(W, wv.vector, 20, exclude=wv.ids)
    want_ids, want_sims = brute_force_neighbours(W, wv.vector, 20, wv.ids)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)
    assert not set(ids) & set(wv.ids)


def test_pca_matches_sklearn_up_to_sign_and_is_deterministic():
    X = np.random.default_rng(2).normal(size=(60, 10)) * np.arange(1, 11)
    res = pca(X, 3)
    ref = PCA(3).fit(X)
    assert res.coords.shape == (60, 3) and res.components.shape == (3, 10)
    np.testing.assert_allclose(np.abs(res.coords), np.abs(ref.transform(X)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res.explained, ref.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_array_equal(res.coords, pca(X, 3).coords)
    assert pca(X[:2], 3).coords.shape == (2, 2)  # two points have at most two directions


def test_repeated_tokens_and_their_drift(tiny_lm):
    t = trace(tiny_lm, "hello hello bye hello")
    reps = repeated_tokens(t.token_ids)
    (tid, where), = reps.items()
    assert len(where) == 2 and all(t.token_ids[p] == tid for p in where)
    curve = occurrence_similarity(t.resid, where)
    assert curve.shape == (tiny_lm.n_layer + 1,)
    a, b = t.resid[0, where[0]], t.resid[0, where[1]]
    assert curve[0] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-5)


def test_pool_square_means_tiles():
    m = np.arange(36, dtype=float).reshape(6, 6)
    pooled, k = pool_square(m, 3)
    assert k == 2 and pooled.shape == (3, 3)
    assert pooled[0, 0] == pytest.approx(m[:2, :2].mean())
    same, k1 = pool_square(m, 10)
    assert k1 == 1 and np.array_equal(same, m)
    odd, k = pool_square(np.ones((5, 5)), 2)
    assert odd.shape == (2, 2) and np.all(odd == 1)


def test_find_tokens_prefers_exact_then_in_sentence_then_contains():
    toks = ["cat", "␣cat", "␣category", "dog", "Cat", "concat"]
    assert find_tokens(toks, "cat") == [1, 0, 4, 5, 2]
    assert find_tokens(toks, "  ") == [] and find_tokens(toks, "zebra") == []


# ---- a model that lists the tokens it learned (the bundled mini GPT-2) ----------------------------
BUNDLED = ROOT / "bundled" / "mini-gpt2-kjv"


def listed_tokens(directory) -> set[int]:
    """The checkpoint's own list of learned tokens, read from its file (not through core.model)."""
    return set(json.loads((directory / "trained_tokens.json").read_text())["token_ids"])


@pytest.fixture(scope="module")
def bundled_lm():
    if not (BUNDLED / "trained_tokens.json").exists():
        pytest.skip("bundled/mini-gpt2-kjv is not in this checkout")
    return load_model(str(BUNDLED), device="cpu")


def test_nearest_tokens_among_a_subset_match_brute_force_on_that_subset():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(3000, 32)).astype(np.float32)
    v = W[10] + 0.1 * rng.normal(size=32).astype(np.float32)
    among = rng.random(3000) < 0.2
    among[10] = True
    ids, sims = nearest_tokens(W, v, 20, exclude=(10,), among=among)
    rows = np.flatnonzero(among & (np.arange(3000) != 10))
    order, want = brute_force_neighbours(W[rows], v, 20, ())
    np.testing.assert_array_equal(ids, rows[order])
    np.testing.assert_allclose(sims, want, atol=1e-5)


def test_the_bundled_models_neighbours_are_tokens_it_learned(bundled_lm):
    """Issue 25, item 13: untrained embeddings sit together near their random start (cosine ~0.95 to
    each other), so without the mask the neighbours of any word are meaningless unseen tokens."""
    learned = listed_tokens(BUNDLED)
    W = token_embeddings(bundled_lm)
    mask = learned_mask(bundled_lm)
    assert mask.sum() == len(learned) == 2972 and set(np.flatnonzero(mask)) == learned
    for word in ("cat", "lord", "king", "water"):
        wv = word_vector(bundled_lm, word)
        ids, _ = nearest_tokens(W, wv.vector, 20, exclude=wv.ids, among=mask)
        assert set(ids.tolist()) <= learned, word
    everything, _ = nearest_tokens(W, word_vector(bundled_lm, "cat").vector, 20)
    assert not set(everything.tolist()) & learned  # what the page showed before: ␣Seg, ␣mal, ␣eminent …


def test_the_examples_are_words_the_model_learned(bundled_lm, tiny_lm):
    learned = listed_tokens(BUNDLED)
    for words in (split_words(example_words(bundled_lm)), [w for _g, w in parse_groups(example_groups(bundled_lm))]):
        ids = [bundled_lm.encode(" " + w) for w in words]
        assert all(len(i) == 1 and i[0] in learned for i in ids), words
    assert example_words(bundled_lm) != "cat, dog, chair" and bundled_lm.encode(" cat")[0] not in learned
    assert unlearned_words(bundled_lm, word_vectors(bundled_lm, ["cat", "king", "New York"])) == ["cat", "New York"]
    # a model that lists nothing learned every token: the essay's words, and nothing said about them
    assert learned_mask(tiny_lm) is None and example_groups(tiny_lm) == EXAMPLE_WORD_GROUPS
    assert unlearned_words(tiny_lm, word_vectors(tiny_lm, ["cat"])) == []
