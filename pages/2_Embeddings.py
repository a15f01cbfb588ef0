"""Token and position embeddings: the prompt's vectors, the position table, word vectors,
maps of meaning, the whole vocabulary on one map, and tokens drifting apart in context."""
import time

import numpy as np
import pandas as pd
import streamlit as st

from core.embeddings import (EXAMPLE_WORD_GROUPS, cosine_matrix, euclidean_matrix, find_tokens, nearest_tokens, occurrence_similarity,
                             parse_groups, pca, pool_square, position_embeddings, repeated_tokens, split_words,
                             token_embeddings, word_vectors)
from core.projection import VOCAB_MAP_PARAMS, embedding_map, matrix_digest, project, word_map_params
from core.tokens import display_tokens
from ui import controls
from ui.shell import HELLO_BYE, current_trace, md_escape, setup_page, show_figure, show_table
from viz.common import esc, figure_label, short
from viz.embeddings import (cloud_map, components_figure, context_map, drift_figure, embedding_heatmap,
                            matrix_heatmap, pair_matrix, points_map, vector_lines)

lm = setup_page(
    "Embeddings",
    "GPT-2's first step looks each token up in a table of vectors (768 numbers for GPT-2 small) and adds a "
    "vector for its position. Tokens used in similar ways get similar vectors, so on the maps below words "
    "with related meanings land close together.",
)
if lm is None:
    st.stop()
t = current_trace(lm)

BANK = "I sat on the bank of the river and watched the water. Then I went to the bank to deposit my money."
MAX_CELLS = 1_500_000  # per figure: what a browser draws smoothly
MAX_HEATMAP_TOKENS = 128  # 3 heatmaps of 768 x 128 keep the tab near 1.5 MB
ss = st.session_state


def use_prompt(text: str) -> None:
    ss["prompt"] = text


# ---- per-model computations, cached across sessions (the model is read-only) -----------------
@st.cache_resource(max_entries=4)
def digests(name: str, _lm) -> dict[str, str]:
    return {"tokens": matrix_digest(token_embeddings(_lm)), "positions": matrix_digest(position_embeddings(_lm))}


@st.cache_data(max_entries=4, show_spinner="Comparing every position with every other…")
def position_views(name: str, _lm):
    wpe = position_embeddings(_lm)
    sims, tile = pool_square(cosine_matrix(wpe), 512)
    return sims, tile, pca(wpe, 4)


@st.cache_data(max_entries=4, show_spinner="Spelling out every token…")
def vocab_strings(name: str, _lm) -> tuple[list[str], list[str]]:
    """Every token's display string, and its short escaped hover text for the map."""
    strings = display_tokens(_lm, range(_lm.d_vocab))
    return strings, [f"{esc(short(s, 24))} · {i}" for i, s in enumerate(strings)]


@st.cache_data(max_entries=64)
def looked_up(name: str, words: tuple[str, ...], leading_space: bool, _lm):
    return word_vectors(_lm, list(words), leading_space)


@st.cache_data(max_entries=64)
def neighbours(name: str, word: str, leading_space: bool, _lm) -> pd.DataFrame:
    (wv,) = word_vectors(_lm, [word], leading_space)
    ids, sims = nearest_tokens(token_embeddings(_lm), wv.vector, 20, exclude=wv.ids)
    return pd.DataFrame({"rank": np.arange(1, len(ids) + 1), "token": display_tokens(_lm, ids), "id": ids, "cosine": sims})


@st.cache_data(max_entries=16, show_spinner=False)
def word_map(name: str, pairs: tuple, leading_space: bool, method: str, dims: int, _lm):
    wvs = word_vectors(_lm, [w for _, w in pairs], leading_space)
    t0 = time.perf_counter()
    coords = project(np.stack([w.vector for w in wvs]), word_map_params(method, dims))
    return coords, sum(w.n_pieces > 1 for w in wvs), time.perf_counter() - t0


label = figure_label(lm.label, t.prompt) if t is not None else esc(lm.label)
model_tag = esc(lm.label)
TABS = ["The prompt's embeddings", "Positions", "Word vectors", "Meaning space", "Whole vocabulary", "In context"]
tabs = list(controls.tabs(TABS, key="emb_tab").values())  # every control is in the link (ui.controls)

# ---- 1. the embedding module for the prompt ------------------------------------------------------
with tabs[0]:
    if tabs[0].open:
        st.button("Show the essay's example: hello ×16, bye ×6", key="emb_hello", on_click=use_prompt,
                  args=(HELLO_BYE,), icon=":material/waving_hand:")
        if t is not None:
            n = t.n_tokens
            start = 0
            if n > MAX_HEATMAP_TOKENS:
                start = controls.slider(st, f"First position shown ({MAX_HEATMAP_TOKENS} at a time)", 0,
                                        n - MAX_HEATMAP_TOKENS, key="emb_start", default=0)
            part = slice(start, start + MAX_HEATMAP_TOKENS)
            toks = list(t.tokens[part])
            emb, pos = t.take("embed", part), t.take("pos_embed", part)
            d, m = lm.d_model, len(toks)
            where = f" · positions {start}–{start + m - 1}" if n > MAX_HEATMAP_TOKENS else ""
            show_figure(embedding_heatmap(emb, toks, f"Token embeddings (wte) · {d} × {m}{where} · {label}"),
                        key="emb_token_heatmap")
            show_figure(embedding_heatmap(pos, toks, f"Position embeddings (wpe) · {d} × {m}{where} · {label}"),
                        key="emb_pos_heatmap")
            show_figure(embedding_heatmap(emb + pos, toks, f"Their sum, what block 0 reads · {d} × {m}{where} · {label}"),
                        key="emb_sum_heatmap")
            st.caption("One column per token of the prompt, one row per dimension; red is positive, blue negative "
                       "(colours clipped at the 99.5th percentile of |value|). A token that repeats ('hello' ×16) "
                       "has the same token-embedding column every time; only its position embedding changes.")

# ---- 2. the learned position table ------------------------------------------------------------------
with tabs[1]:
    if tabs[1].open:
        wpe = position_embeddings(lm)
        sims, tile, pc = position_views(lm.name, lm)
        every = int(np.ceil(wpe.size / MAX_CELLS))  # gpt2-xl: 1,024 x 1,600 is over the budget
        thin = f" · one dimension in {every}" if every > 1 else ""
        show_figure(matrix_heatmap(wpe.T[::every], f"All {lm.n_ctx:,} position embeddings (wpe) · {lm.d_model} × "
                                   f"{lm.n_ctx:,}{thin} · {model_tag}", "position", "d_model", height=520, dy=every,
                                   value="embedding value"),
                    key="emb_wpe")
        note = f" · mean of {tile}×{tile} tiles" if tile > 1 else ""
        show_figure(matrix_heatmap(sims, f"Cosine similarity between positions{note} · {model_tag}", "position",
                                   "position", zrange=(-1, 1), dx=tile, dy=tile, x0=(tile - 1) / 2, y0=(tile - 1) / 2,
                                   height=620, value="cosine similarity"), key="emb_wpe_cosine")
        show_figure(components_figure(pc.coords, pc.explained, f"First principal components of wpe against position · {model_tag}"),
                    key="emb_wpe_pca")
        st.caption("GPT-2 learned its position vectors. Nearby positions get similar vectors (the bright band "
                   "along the diagonal) and the main directions vary like slow waves along the position, "
                   "a learned cousin of the sinusoids of the original Transformer. A random model shows noise.")

# ---- 3. word vectors ----------------------------------------------------------------------------------------
with tabs[2]:
    if tabs[2].open:
        c1, c2 = st.columns([3, 1])
        words = split_words(controls.text_input(c1, "Words, separated by commas", key="emb_words",
                                                default="cat, dog, chair"), limit=12)
        leading = controls.toggle(c2, "In-sentence form (“ word”)", key="emb_leading", default=True,
                            help="GPT-2 writes a word in mid-sentence with its leading space, as one token: ␣cat. "
                                 "Off: the word as typed, as at the very start of a text.")
        if not words:
            st.info("Type a few words, separated by commas.")
        else:
            wvs = looked_up(lm.name, tuple(words), leading, lm)
            show_table(pd.DataFrame({"word": [w.word for w in wvs], "tokens": [" + ".join(w.pieces) for w in wvs],
                                     "ids": [", ".join(map(str, w.ids)) for w in wvs], "vector": [w.note for w in wvs]}),
                       "emb_words_table", name="word-lookup", hide_index=True, width="stretch")
            split = [w for w in wvs if w.n_pieces > 1]
            if split:
                st.caption(f"{len(split)} of these words {'is' if len(split) == 1 else 'are'} not one token in "
                           f"{md_escape(lm.label)}'s vocabulary, so {'its' if len(split) == 1 else 'each'} vector "
                           "here is the mean of its pieces' vectors: a stand-in that GPT-2 itself never computes.")
            vectors = np.stack([w.vector for w in wvs])
            show_figure(vector_lines(vectors, words, f"Raw embedding vectors · {lm.d_model} numbers each · {model_tag}"),
                        key="emb_word_lines")
            left, right = st.columns(2)
            with left:
                show_figure(pair_matrix(cosine_matrix(vectors), words, f"Cosine similarity · {model_tag}", similarity=True),
                            key="emb_word_cosine")
            with right:
                show_figure(pair_matrix(euclidean_matrix(vectors), words, f"Euclidean distance · {model_tag}",
                                        similarity=False), key="emb_word_distance")
            pick = controls.selectbox(st, "Nearest tokens to", words, key="emb_nn_word")
            show_table(neighbours(lm.name, pick, leading, lm), "emb_neighbours_table", name=f"nearest-tokens-{pick}",
                       hide_index=True, width="stretch", column_config={"cosine": st.column_config.NumberColumn(format="%.4f")})
            st.caption(f"The 20 tokens of all {lm.d_vocab:,} whose embeddings point most nearly the same way "
                       "(cosine similarity), leaving out the word's own tokens.")

# ---- 4. meaning space for a word list -----------------------------------------------------------------------
with tabs[3]:
    if tabs[3].open:
        text = controls.text_area(st, "Words by group, one group per line: “group: word, word, …”", key="emb_groups",
                                  default=EXAMPLE_WORD_GROUPS, height=180)
        c1, c2, c3 = st.columns(3)
        method = controls.radio(c1, "Projection", ["umap", "pca"], horizontal=True, key="emb_method",
                          format_func=lambda m: m.upper(), help="UMAP keeps neighbours together; PCA keeps the "
                          "directions of largest spread (linear, exact, instant).")
        dims = controls.radio(c2, "Dimensions", [2, 3], horizontal=True, key="emb_dims")
        leading_map = controls.toggle(c3, "In-sentence form (“ word”)", key="emb_map_leading", default=True)
        pairs = tuple(parse_groups(text))
        if len(pairs) < 3:
            st.info("Give at least three words.")
        else:
            with st.spinner("Projecting (the first UMAP in a fresh app compiles its code: about 20 s)…"):
                coords, n_split, secs = word_map(lm.name, pairs, leading_map, method, dims, lm)
            show_figure(points_map(coords, [w for _, w in pairs], [g for g, _ in pairs],
                                   f"{len(pairs)} words, {method.upper()} in {dims}-D · {model_tag}"), key="emb_word_map")
            st.caption(f"{len(pairs)} words in {len({g for g, _ in pairs})} groups; projected in {secs:.1f} s. "
                       + (f"{n_split} words take several tokens and are placed at the mean of their pieces. " if n_split else "")
                       + "The axes of such maps mean nothing on their own; only who sits near whom does.")

# ---- 5. the whole vocabulary on one map ---------------------------------------------------------------------
with tabs[4]:
    if tabs[4].open:
        table = controls.radio(st, "Table", ["tokens", "positions"], horizontal=True, key="emb_vocab_table",
                         format_func=lambda k: f"token embeddings ({lm.d_vocab:,})" if k == "tokens"
                         else f"position embeddings ({lm.n_ctx:,})")
        X = token_embeddings(lm) if table == "tokens" else position_embeddings(lm)
        digest = digests(lm.name, lm)[table]
        emap = embedding_map(X, lm.name, table, VOCAB_MAP_PARAMS, digest=digest, compute=False)
        if emap is None:
            ask = st.empty()  # the notice and its button go once the map is there
            with ask.container():
                st.info(f"The map of all {len(X):,} {table} is computed once per model and kept on disk; it takes "
                        f"{'about a minute' if len(X) > 20_000 else 'a few seconds'} on a CPU.")
                clicked = st.button(f"Compute the map of all {len(X):,} {table}", key=f"emb_vocab_compute_{table}",
                                    icon=":material/play_arrow:")
            if clicked:
                bar = st.progress(0.0, text="Starting…")
                emap = embedding_map(X, lm.name, table, VOCAB_MAP_PARAMS, digest=digest,
                                     progress=lambda f, s: bar.progress(min(max(f, 0.0), 1.0), text=s))
                bar.empty()
                ask.empty()
        if emap is not None:
            how = "loaded from the cache" if emap.from_cache else "computed"
            st.caption(f"UMAP of {len(X):,} × {lm.d_model} ({VOCAB_MAP_PARAMS.pca_dims} PCA dimensions first, "
                       f"{VOCAB_MAP_PARAMS.n_neighbors} neighbours, cosine), {how} in {emap.seconds:.1f} s.")
            if table == "tokens":
                strings, hover = vocab_strings(lm.name, lm)
                query = controls.text_input(st, "Find a token", key="emb_vocab_search", placeholder="e.g. cat")
                found = find_tokens(strings, query) if query else []
                if query and not found:
                    st.info("No token contains that text.")
                highlight = []
                if t is not None:
                    seen = dict.fromkeys(int(i) for i in t.token_ids[:200])
                    highlight = [(i, strings[i]) for i in seen]
                fig = cloud_map(emap.coords, hover, f"All {len(X):,} token embeddings, UMAP · {model_tag}",
                                highlight=highlight, focus=found[0] if found else None)
                show_figure(fig, key="emb_vocab_map")
                if found:
                    show_table(pd.DataFrame({"token": [strings[i] for i in found], "id": found}), "emb_search_table",
                               name="vocabulary-search", hide_index=True, width="stretch",
                               height=min(220, 38 + 35 * len(found)))
                    st.caption("The map is zoomed to the first match (the star); double-click the map to zoom out.")
                st.caption("Grey: every token, hover for its text and id. Red: the prompt's tokens.")
            else:
                hover = [f"position {i}" for i in range(len(X))]
                show_figure(cloud_map(emap.coords, hover, f"All {len(X):,} position embeddings, UMAP · {model_tag}",
                                      colour_by_index=True, name="position"), key="emb_position_map")
                st.caption("Colour is the position: a smooth rainbow curve means neighbouring positions got similar vectors.")

# ---- 6. contextual embeddings ----------------------------------------------------------------------------------
with tabs[5]:
    if tabs[5].open:
        st.button("Try “bank” in two sentences", key="emb_bank", on_click=use_prompt, args=(BANK,),
                  icon=":material/account_balance:")
        if t is not None:
            layer = controls.slider(st, "Depth in the residual stream", 0, lm.n_layer, key="emb_layer",
                                    default=lm.n_layer // 2,
                              help=f"0 is the embedding itself (token + position); {lm.n_layer} is the final "
                                   "residual before the last LayerNorm.")
            skip_first = controls.toggle(st, "Leave out the first token", key="emb_skip_first", default=t.n_tokens > 3,
                                   help="GPT-2's residual at position 0 is far larger than the others and takes a "
                                        "principal component on its own.")
            positions = list(range(1 if skip_first and t.n_tokens > 3 else 0, t.n_tokens))
            if len(positions) < 3:
                st.info("This view needs a prompt of at least three tokens.")
            else:
                resid = t.take("resid", (layer,))[positions]  # [pos, d_model]
                res = pca(resid, 2)
                reps = dict(list(repeated_tokens(t.token_ids).items())[:8])
                show_figure(context_map(res.coords, list(t.tokens), reps,
                                        f"The prompt's tokens at layer {layer}, PCA ({res.explained.sum():.0%} of "
                                        f"variance) · {label}", positions=positions), key="emb_context_map")
                if reps:
                    curves = {f"{t.tokens[p[0]]} (positions {p[0]} and {p[1]})":
                              occurrence_similarity(t.take("resid", (slice(None), p[:2])), [0, 1]) for p in reps.values()}
                    show_figure(drift_figure(curves, f"How alike two occurrences of the same token stay, by depth · {label}"),
                                key="emb_drift")
                    st.caption("At layer 0 two copies of a token differ only by their position vectors. As they "
                               "pass through the blocks each takes on its own context, and their similarity falls.")
                else:
                    st.caption("No token occurs twice in this prompt; try the “bank” example above.")
