"""Per-model computations of the Attention, Embeddings and Weights pages, cached across sessions (the model
is read-only, so its name keys the cache; the model itself is passed unhashed as `_lm`); and the
vocabulary map, computed on request with a progress bar and kept on disk.

What is computed lives in core and recipes; this module only decides what to keep, and for how long.

Spinner texts are in the page's language, so `spinning` draws them around each cached call
(`show_spinner=False` on the cache: its text would be fixed at import). A cached result that
holds words (a table's texts) is kept per language: `lang` is in its key."""
from __future__ import annotations

import functools

import streamlit as st

import recipes.weights
from core.attention import induction_scores
from core.embeddings import position_embeddings, token_embeddings, word_vectors
from core.projection import VOCAB_MAP_PARAMS, EmbeddingMap, embedding_map, matrix_digest
from core.trace import PromptError
from core.weights import get_matrix, spectrum
from i18n import N_, _, language
from recipes import embeddings as emb
from recipes.weights import block_distributions, stats_table


def spinning(text: str):
    """Decorator: show `text` (marked with N_, translated in the calling page's language) while
    the cached call under it runs."""
    def wrap(cached):
        @functools.wraps(cached)
        def call(*args):
            with st.spinner(_(text)):
                return cached(*args)
        return call
    return wrap


# ---- Embeddings ---------------------------------------------------------------------------------
@st.cache_resource(max_entries=4)
def digests(name: str, _lm) -> dict[str, str]:
    return {"tokens": matrix_digest(token_embeddings(_lm)), "positions": matrix_digest(position_embeddings(_lm))}


@spinning(N_("Comparing every position with every other…"))
@st.cache_data(max_entries=4, show_spinner=False)
def position_views(name: str, _lm):
    return emb.position_data(_lm)


@spinning(N_("Spelling out every token…"))
@st.cache_data(max_entries=4, show_spinner=False)
def vocab_strings(name: str, _lm) -> tuple[list[str], list[str]]:
    return emb.vocab_strings(_lm)


@st.cache_data(max_entries=64)
def looked_up(name: str, words: tuple[str, ...], leading_space: bool, _lm):
    return word_vectors(_lm, list(words), leading_space)


@st.cache_data(max_entries=64)
def _neighbours(name: str, word: str, leading_space: bool, lang: str, _lm):
    return emb.neighbours_data(_lm, word, leading_space)


def neighbours(name: str, word: str, leading_space: bool, lm):
    """The nearest tokens' table (kept per language, in case its headers are made translated)."""
    return _neighbours(name, word, leading_space, language(), lm)


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
    slow = len(X) > 20_000
    if table == "tokens":
        notice = (_("The map of all {n:,} tokens is computed once per model and kept on disk; it takes about a minute "
                    "on a CPU.") if slow else
                  _("The map of all {n:,} tokens is computed once per model and kept on disk; it takes a few seconds "
                    "on a CPU."))
        label = _("Compute the map of all {n:,} tokens")
    else:
        notice = (_("The map of all {n:,} positions is computed once per model and kept on disk; it takes about a "
                    "minute on a CPU.") if slow else
                  _("The map of all {n:,} positions is computed once per model and kept on disk; it takes a few "
                    "seconds on a CPU."))
        label = _("Compute the map of all {n:,} positions")
    with ask.container():
        st.info(notice.format(n=len(X)))
        clicked = st.button(label.format(n=len(X)), key=f"emb_vocab_compute_{table}", icon=":material/play_arrow:")
    if not clicked:
        return None
    bar = st.progress(0.0, text=_("Starting…"))
    emap = embedding_map(X, lm.name, table, VOCAB_MAP_PARAMS, digest=digest,
                         progress=lambda f, s: bar.progress(min(max(f, 0.0), 1.0), text=s))
    bar.empty()
    ask.empty()
    return emap


# ---- Weights ----------------------------------------------------------------------------------------
@spinning(N_("Preparing the matrix…"))
@st.cache_data(max_entries=32, show_spinner=False)
def weights_grid(name: str, block, kind: str, head, mode: str, window: int, _lm):
    return recipes.weights.grid_data(get_matrix(_lm, block, kind, head)[0], mode, window)


@spinning(N_("Computing the singular values…"))
@st.cache_data(max_entries=16, show_spinner=False)
def singular(name: str, block, kind: str, head, _lm):
    return spectrum(get_matrix(_lm, block, kind, head)[0])


@spinning(N_("Counting values in every block…"))
@st.cache_data(max_entries=16, show_spinner=False)
def distributions(name: str, kind: str, _lm):
    return block_distributions(_lm, kind)


@st.cache_data(max_entries=4, show_spinner=False)
def _parameter_table(name: str, lang: str, _lm):
    return stats_table(_lm)


def parameter_table(name: str, lm):
    """Every parameter's statistics (kept per language: the table names each parameter's kind)."""
    with st.spinner(_("Measuring every parameter…")):
        return _parameter_table(name, language(), lm)


# ---- Attention --------------------------------------------------------------------------------------
@spinning(N_("Measuring induction heads on random tokens repeated twice…"))
@st.cache_resource(show_spinner=False, max_entries=4)
def _induction_atlas(model_name: str, _lm):
    return induction_scores(_lm)


def induction_atlas(model_name: str, lm):
    """[layer, head] induction scores; one extra forward per model, shared by every session. None when
    the model's context is too short for the probe (the page then says so, in place of the atlas)."""
    try:
        return _induction_atlas(model_name, lm)
    except PromptError as e:
        st.info(str(e))
        return None
