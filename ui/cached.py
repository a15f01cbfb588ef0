"""Per-model computations of the Embeddings and Weights pages, cached across sessions (the model
is read-only, so its name keys the cache; the model itself is passed unhashed as `_lm`); and the
vocabulary map, computed on request with a progress bar and kept on disk.

What is computed lives in core and recipes; this module only decides what to keep, and for how long."""
from __future__ import annotations

import streamlit as st

from core.embeddings import position_embeddings, token_embeddings, word_vectors
from core.projection import VOCAB_MAP_PARAMS, EmbeddingMap, embedding_map, matrix_digest
import recipes.weights
from core.weights import block_distributions, get_matrix, spectrum, stats_table
from recipes import embeddings as emb


# ---- Embeddings ---------------------------------------------------------------------------------
@st.cache_resource(max_entries=4)
def digests(name: str, _lm) -> dict[str, str]:
    return {"tokens": matrix_digest(token_embeddings(_lm)), "positions": matrix_digest(position_embeddings(_lm))}


@st.cache_data(max_entries=4, show_spinner="Comparing every position with every other…")
def position_views(name: str, _lm):
    return emb.position_data(_lm)


@st.cache_data(max_entries=4, show_spinner="Spelling out every token…")
def vocab_strings(name: str, _lm) -> tuple[list[str], list[str]]:
    return emb.vocab_strings(_lm)


@st.cache_data(max_entries=64)
def looked_up(name: str, words: tuple[str, ...], leading_space: bool, _lm):
    return word_vectors(_lm, list(words), leading_space)


@st.cache_data(max_entries=64)
def neighbours(name: str, word: str, leading_space: bool, _lm):
    return emb.neighbours_data(_lm, word, leading_space)


@st.cache_data(max_entries=16, show_spinner=False)
def word_map(name: str, pairs: tuple, leading_space: bool, method: str, dims: int, _lm):
    return emb.word_map_data(_lm, pairs, leading_space, method, dims)


def vocab_map(lm, table: str) -> EmbeddingMap | None:
    """The UMAP of every row of the token ("tokens") or position ("positions") table: from the
    disk cache, or computed when the button it offers is clicked; None until then."""
    X = token_embeddings(lm) if table == "tokens" else position_embeddings(lm)
    digest = digests(lm.name, lm)[table]
    emap = embedding_map(X, lm.name, table, VOCAB_MAP_PARAMS, digest=digest, compute=False)
    if emap is not None:
        return emap
    ask = st.empty()  # the notice and its button go once the map is there
    with ask.container():
        st.info(f"The map of all {len(X):,} {table} is computed once per model and kept on disk; it takes "
                f"{'about a minute' if len(X) > 20_000 else 'a few seconds'} on a CPU.")
        clicked = st.button(f"Compute the map of all {len(X):,} {table}", key=f"emb_vocab_compute_{table}",
                            icon=":material/play_arrow:")
    if not clicked:
        return None
    bar = st.progress(0.0, text="Starting…")
    emap = embedding_map(X, lm.name, table, VOCAB_MAP_PARAMS, digest=digest,
                         progress=lambda f, s: bar.progress(min(max(f, 0.0), 1.0), text=s))
    bar.empty()
    ask.empty()
    return emap


# ---- Weights ----------------------------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner="Preparing the matrix…")
def weights_grid(name: str, block, kind: str, head, mode: str, window: int, _lm):
    return recipes.weights.grid_data(get_matrix(_lm, block, kind, head)[0], mode, window)


@st.cache_data(max_entries=16, show_spinner="Computing the singular values…")
def singular(name: str, block, kind: str, head, _lm):
    return spectrum(get_matrix(_lm, block, kind, head)[0])


@st.cache_data(max_entries=16, show_spinner="Counting values in every block…")
def distributions(name: str, kind: str, _lm):
    return block_distributions(_lm, kind)


@st.cache_data(max_entries=4, show_spinner="Measuring every parameter…")
def parameter_table(name: str, _lm):
    return stats_table(_lm)
