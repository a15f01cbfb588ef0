"""The whole-vocabulary map's search box suggests a word the loaded model learned (issue 25, item 13's
leftovers): the bundled mini GPT-2 never learned "cat", so "e.g. cat" sent a person to a token in the
map's grey blob of never-learned tokens."""
from __future__ import annotations

import dataclasses
import json

import pytest

from core import projection
from tests import apptest


@pytest.fixture
def bundled_env(bundled_env, monkeypatch, tmp_path):
    """conftest's bundled model, with a fresh map cache and PCA standing in for UMAP."""
    monkeypatch.setenv("GPT2VIZ_CACHE_DIR", str(tmp_path))
    real = projection.project  # PCA for UMAP: the map's layout is not what this test looks at (UMAP: a minute)
    monkeypatch.setattr(projection, "project",
                        lambda X, params, progress=None: real(X, dataclasses.replace(params, method="pca"), progress))
    return bundled_env


def test_the_search_box_suggests_a_word_the_bundled_model_learned(bundled_env):
    from core.model import load_model

    learned = set(json.loads((bundled_env / "trained_tokens.json").read_text())["token_ids"])
    lm = load_model(str(bundled_env), device="cpu")
    at = apptest.open_page(apptest.EMBEDDINGS)
    at = apptest.show_view(at, apptest.EMBEDDINGS, "Whole vocabulary")
    at.button(key="emb_vocab_compute_tokens").click().run()
    assert not at.exception, at.exception
    placeholder = at.text_input(key="emb_vocab_search").placeholder
    assert placeholder.startswith("e.g. ")
    word = placeholder.removeprefix("e.g. ")
    ids = lm.encode(" " + word)
    assert word != "cat" and len(ids) == 1 and ids[0] in learned, placeholder
