"""The embeddings page as Streamlit runs it (AppTest on app.py, then the page), tiny model.

Figure data is read back from the chart JSON and checked against the model's own tables.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity
from streamlit.testing.v1 import AppTest

from core.embeddings import pca, position_embeddings, token_embeddings
from core.model import load_model
from core.trace import trace
from tests import apptest
from tests.apptest import show_view
from tests.plotly_json import decode
from ui.shell import HELLO_BYE

TIMEOUT = 180
PAGE = "pages/2_Embeddings.py"


def charts(at: AppTest) -> dict[str, dict]:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def chart(at: AppTest, start: str) -> dict:
    found = [spec for title, spec in charts(at).items() if title.startswith(start)]
    assert len(found) == 1, list(charts(at))
    return found[0]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_CACHE_DIR", str(tmp_path))
    return tmp_path


def open_page(prompt: str | None = None) -> AppTest:
    return apptest.open_page(PAGE, typed=prompt)


def show_tab(at: AppTest, name: str) -> AppTest:
    return show_view(at, PAGE, name)


def test_prompt_heatmaps_are_wte_wpe_and_their_sum(tiny_env, tiny_lm, cache):
    at = open_page("The best thing about AI is its ability to")
    assert at.title[0].value == "Embeddings"
    ids = tiny_lm.encode("The best thing about AI is its ability to")
    wte, wpe = token_embeddings(tiny_lm)[ids], position_embeddings(tiny_lm)[: len(ids)]
    tok = chart(at, "Token embeddings (wte)")["data"][0]
    np.testing.assert_array_equal(decode(tok["z"]), wte.T)
    np.testing.assert_array_equal(decode(chart(at, "Position embeddings (wpe)")["data"][0]["z"]), wpe.T)
    np.testing.assert_allclose(decode(chart(at, "Their sum")["data"][0]["z"]), (wte + wpe).T, atol=1e-6)
    assert tok["zmid"] == 0
    assert f"64 × {len(ids)}" in next(iter(charts(at)))


def test_hello_bye_in_one_click_keeps_sixteen_columns(tiny_env, tiny_lm, cache):
    at = open_page()
    at.button(key="emb_hello").click().run()
    assert not at.exception and at.session_state["prompt"] == HELLO_BYE
    spec = chart(at, "Token embeddings (wte)")
    z = decode(spec["data"][0]["z"])
    assert z.shape == (64, 22)
    assert spec["layout"]["xaxis"]["ticktext"].count("␣hello") == 15  # plus "hello" at position 0
    np.testing.assert_array_equal(z[:, 1], z[:, 15])  # same token, same embedding
    pos = decode(chart(at, "Position embeddings (wpe)")["data"][0]["z"])
    assert not np.array_equal(pos[:, 1], pos[:, 15])  # different positions


def test_position_tab(tiny_env, tiny_lm, cache):
    at = show_tab(open_page(), "Positions")
    wpe = position_embeddings(tiny_lm)
    np.testing.assert_array_equal(decode(chart(at, "All 1,024 position embeddings")["data"][0]["z"]), wpe.T)
    sims = decode(chart(at, "Cosine similarity between positions")["data"][0]["z"])
    full = cosine_similarity(wpe)
    assert sims.shape == (512, 512)
    assert sims[3, 7] == pytest.approx(full[6:8, 14:16].mean(), abs=1e-5)
    lines = chart(at, "First principal components")["data"]
    assert len(lines) == 4
    np.testing.assert_allclose(decode(lines[0]["y"]), pca(wpe, 4).coords[:, 0], atol=1e-4)


def test_word_vectors_similarities_and_neighbours(tiny_env, tiny_lm, cache):
    at = show_tab(open_page(), "Word vectors")
    at.text_input(key="emb_words").input("cat, dog, elephant, <b>x</b>").run()
    assert not at.exception
    wte = token_embeddings(tiny_lm)
    vecs = np.stack([wte[tiny_lm.encode(" " + w)].mean(0) for w in ["cat", "dog", "elephant", "<b>x</b>"]])
    lines = chart(at, "Raw embedding vectors")
    for i in range(4):
        np.testing.assert_allclose(decode(lines["data"][i]["y"]), vecs[i], rtol=1e-6)
    assert "&lt;b&gt;x&lt;/b&gt;" in json.dumps(lines) and "<b>x</b>" not in json.dumps(lines)
    np.testing.assert_allclose(decode(chart(at, "Cosine similarity")["data"][0]["z"]), cosine_similarity(vecs),
                               atol=1e-5)
    table = at.dataframe[0].value
    assert table["vector"].iloc[0] == "one token" and table["vector"].iloc[2].startswith("8 tokens: mean of")
    assert any("not one token" in c.value for c in at.caption)
    at.selectbox(key="emb_nn_word").set_value("dog").run()
    nn = at.dataframe[1].value
    sims = cosine_similarity(wte, vecs[1:2])[:, 0]
    sims[tiny_lm.encode(" dog")] = -np.inf
    np.testing.assert_array_equal(nn["id"].to_numpy(), np.argsort(-sims, kind="stable")[:20])
    np.testing.assert_allclose(nn["cosine"].to_numpy(), np.sort(sims)[::-1][:20], atol=1e-5)


def test_meaning_space_pca_and_umap(tiny_env, cache):
    at = show_tab(open_page(), "Meaning space")
    spec = chart(at, "60 words, UMAP in 2-D")
    groups = ["animals", "fruits", "colours", "numbers", "countries", "verbs"]
    assert [trace["name"] for trace in spec["data"]] == groups
    at.radio(key="emb_method").set_value("pca").run()
    at.radio(key="emb_dims").set_value(3).run()
    assert not at.exception
    spec = chart(at, "60 words, PCA in 3-D")
    assert spec["data"][0]["type"] == "scatter3d" and len(spec["data"][0]["text"]) == 10


def test_vocabulary_map_is_computed_on_request_then_cached(tiny_env, tiny_lm, cache):
    at = show_tab(open_page("hello world"), "Whole vocabulary")
    assert not at.get("plotly_chart") and not list(cache.glob("*.npz"))
    assert any("computed once per model" in i.value for i in at.info)
    at.button(key="emb_vocab_compute_tokens").click().run()
    assert not at.exception
    assert not any("computed once per model" in i.value for i in at.info)  # the notice goes with the map drawn
    (saved,) = cache.glob("*.npz")
    with np.load(saved) as z:
        coords = z["coords"]
    spec = chart(at, "All 512 token embeddings, UMAP")
    base, prompt = spec["data"][0], spec["data"][1]
    assert base["type"] == "scattergl" and len(base["text"]) == tiny_lm.d_vocab
    np.testing.assert_array_equal(decode(base["x"]), coords[:, 0])
    ids = tiny_lm.encode("hello world")
    np.testing.assert_array_equal(decode(prompt["x"]), coords[ids, 0])

    again = show_tab(open_page("hello world"), "Whole vocabulary")  # a fresh session: from disk, no button
    assert any("loaded from the cache" in c.value for c in again.caption)
    again.text_input(key="emb_vocab_search").input("hello").run()
    assert not again.exception
    star = chart(again, "All 512 token embeddings")["data"][-1]
    assert star["name"] == "search result"
    assert again.dataframe[0].value["token"].iloc[0] == "␣hello"

    saved.write_bytes(saved.read_bytes()[:100])  # truncated: the page offers to recompute, no crash
    broken = show_tab(open_page(), "Whole vocabulary")
    assert not broken.get("plotly_chart") and broken.button(key="emb_vocab_compute_tokens")


def test_position_map(tiny_env, cache):
    at = show_tab(open_page(), "Whole vocabulary")
    at.radio(key="emb_vocab_table").set_value("positions").run()
    at.button(key="emb_vocab_compute_positions").click().run()
    assert not at.exception
    spec = chart(at, "All 1,024 position embeddings, UMAP")
    assert len(decode(spec["data"][0]["x"])) == 1024


def test_contextual_embeddings_follow_the_layer(tiny_env, tiny_lm, cache):
    at = show_tab(open_page(), "In context")
    at.button(key="emb_bank").click().run()
    at.slider(key="emb_layer").set_value(2).run()
    assert not at.exception
    t = trace(tiny_lm, at.session_state["prompt"])
    coords = pca(t.resid[2, 1:], 2).coords
    spec = chart(at, "The prompt's tokens at layer 2")
    np.testing.assert_allclose(decode(spec["data"][0]["x"]), coords[:, 0], atol=1e-4)
    drift = chart(at, "How alike two occurrences")["data"]
    assert len(drift) >= 1 and len(decode(drift[0]["y"])) == tiny_lm.n_layer + 1


# ---- a model that lists the tokens it learned (issue 25, item 13) -----------------------------------


def listed_tokens(directory) -> list[int]:
    """The checkpoint's list of learned tokens, read from its file (the oracle; not through core.model)."""
    return json.loads((directory / "trained_tokens.json").read_text())["token_ids"]


@pytest.fixture
def bundled_env(bundled_env, cache):
    """conftest's bundled model, with this module's own map cache directory."""
    return bundled_env


def plain(markdown: str) -> str:
    """Markdown as it reads on the page: escapes and invisible word joiners gone."""
    return markdown.replace("\u2060", "").replace("\\", "")


def warnings_text(at: AppTest) -> str:
    return " ".join(plain(w.value) for w in at.warning)


def test_the_bundled_model_opens_on_words_it_knows_and_their_neighbours_are_learned_tokens(bundled_env):
    learned = set(listed_tokens(bundled_env))
    lm = load_model(str(bundled_env), device="cpu")
    at = show_tab(open_page(), "Word vectors")
    words = [w.strip() for w in at.text_input(key="emb_words").value.split(",")]
    assert words != ["cat", "dog", "chair"]
    assert all(len(lm.encode(" " + w)) == 1 and lm.encode(" " + w)[0] in learned for w in words)
    assert "never learned" not in warnings_text(at)
    nn = at.dataframe[1].value  # the neighbours of the first word
    assert set(nn["id"]) <= learned
    # against a brute-force cosine over the listed tokens only
    wte = token_embeddings(lm)
    ids = np.array(sorted(learned - set(lm.encode(" " + words[0]))))
    sims = cosine_similarity(wte[ids], wte[lm.encode(" " + words[0])])[:, 0]
    np.testing.assert_array_equal(nn["id"].to_numpy(), ids[np.argsort(-sims, kind="stable")[:20]])
    assert any("among the 2,972 tokens mini-gpt2-kjv learned" in plain(c.value) for c in at.caption)


def test_the_page_says_when_the_bundled_model_never_learned_a_word(bundled_env):
    at = show_tab(open_page(), "Word vectors")
    at.text_input(key="emb_words").input("cat, king").run()
    assert not at.exception
    said = warnings_text(at)
    assert "mini-gpt2-kjv never learned ‘cat’" in said and "king" not in said.split("Words it knows")[0]
    at.selectbox(key="emb_nn_word").set_value("cat").run()
    assert not at.exception
    assert sum("never learned ‘cat’" in plain(w.value) for w in at.warning) == 2  # the table's note and the neighbours'
    assert set(at.dataframe[1].value["id"]) <= set(listed_tokens(bundled_env))  # no ␣Seg, ␣mal, ␣eminent
    at.selectbox(key="emb_nn_word").set_value("king").run()
    assert sum("never learned" in w.value for w in at.warning) == 1  # only the table's, about cat


def test_the_bundled_models_meaning_space_opens_on_words_it_learned(bundled_env):
    learned = set(listed_tokens(bundled_env))
    lm = load_model(str(bundled_env), device="cpu")
    at = show_tab(open_page(), "Meaning space")
    at.radio(key="emb_method").set_value("pca").run()
    assert not at.exception
    words = [w.strip() for line in at.text_area(key="emb_groups").value.splitlines()
             for w in line.partition(":")[2].split(",")]
    assert len(words) >= 30 and all(lm.encode(" " + w)[0] in learned for w in words)
    assert "never learned" not in warnings_text(at)


def test_the_vocabulary_map_colours_tokens_a_model_never_learned(tiny_env, tiny_lm, cache, tmp_path, monkeypatch):
    """A tiny model with a fabricated list of learned tokens (the bundled model's map needs a minute of UMAP)."""
    import shutil

    narrow = shutil.copytree(tiny_env, tmp_path / "narrow")
    learned = list(range(20, 420))
    (narrow / "trained_tokens.json").write_text(json.dumps({"token_ids": learned}))
    monkeypatch.setenv("GPT2VIZ_MODEL", str(narrow))
    at = show_tab(open_page("hello world"), "Whole vocabulary")
    at.button(key="emb_vocab_compute_tokens").click().run()
    assert not at.exception
    (saved,) = cache.glob("*.npz")
    with np.load(saved) as z:
        coords = z["coords"]
    assert coords.shape == (tiny_lm.d_vocab, 2)  # the cached map is every token's, as before
    traces = chart(at, "All 512 token embeddings, UMAP")["data"]
    never, known = traces[0], traces[1]
    assert never["name"] == f"never learned ({tiny_lm.d_vocab - len(learned)})"
    assert known["name"] == f"learned in training ({len(learned)})"
    assert len(decode(never["x"])) == tiny_lm.d_vocab - len(learned) and len(decode(known["x"])) == len(learned)
    np.testing.assert_array_equal(decode(known["x"]), coords[learned, 0])
    unlearned = [i for i in range(tiny_lm.d_vocab) if i not in set(learned)]
    np.testing.assert_array_equal(decode(never["y"]), coords[unlearned, 1])
    assert never["marker"]["color"] != known["marker"]["color"]
    assert "never learned" in never["hovertemplate"] and "learned in training" in known["hovertemplate"]
    assert known["text"][0].endswith("· 20") and never["text"][0].endswith("· 0")
    assert any("Grey: the other 112" in plain(c.value) and "Blue: the 400 tokens narrow learned" in plain(c.value)
               for c in at.caption)
