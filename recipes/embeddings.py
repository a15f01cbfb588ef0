"""The Embeddings page's views: the prompt's vectors, the position table, word vectors, a map of
meaning, the whole vocabulary on one map, and tokens drifting apart in context.

A view takes what is slow to compute (the position views, a word map, the vocabulary's strings)
when the caller has it cached; the `*_data` functions compute it, for the caller to cache."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from core.embeddings import (
    PCAResult,
    WordVector,
    cosine_matrix,
    euclidean_matrix,
    example_groups,
    example_words,
    find_tokens,
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
    word_vectors,
)
from core.projection import VOCAB_MAP_PARAMS, EmbeddingMap, project, word_map_params
from core.tokens import display_tokens
from core.trace import Trace
from i18n import N_, _, ngettext
from viz.common import CELL_BUDGET, esc, figure_label, fit_to_column, short
from viz.embeddings import (
    cloud_map,
    components_figure,
    context_map,
    drift_figure,
    embedding_heatmap,
    matrix_heatmap,
    pair_matrix,
    points_map,
    vector_lines,
)

from . import Figure, Row, Text, View, md, translated_table

VIEWS = [N_("The prompt's embeddings"), N_("Positions"), N_("Word vectors"), N_("Meaning space"),
         N_("Whole vocabulary"), N_("In context")]
# An example prompt for GPT-2 (an English model), not a text of the page: it stays English.
BANK = ("I sat on the bank of the river and watched the water. "  # i18n: skip
        "Then I went to the bank to deposit my money.")
MAX_HEATMAP_TOKENS = 128  # 3 heatmaps of 768 x 128 keep the tab near 1.5 MB
N_NEIGHBOURS = 20
MAX_WORDS = 12  # words the Word vectors tab looks up at once


def default_words(lm) -> str:
    """The Word vectors tab's words until some are typed: the essay's, or words the loaded model learned."""
    return example_words(lm)


def default_groups(lm) -> str:
    """The Meaning space tab's word list until one is typed: the essay's, or words the loaded model learned."""
    return example_groups(lm)


def unlearned_note(lm, words: list[str]) -> Text:
    """Says that the model never learned these words (typed text, escaped), so their vectors mean nothing."""
    quoted = ", ".join(f"‘{md(w)}’" for w in words)  # typed words, quoted as typed in either language
    return Text(ngettext(
        "{model} never learned {words}: its training text used it rarely or not at all, so its vector holds no "
        "meaning of its own (it only moved with the other tokens the model never learned, which bunch together), and "
        "its similarities and neighbours say nothing about what it means. Words it knows: {examples}.",
        "{model} never learned {words}: its training text used them rarely or not at all, so their vectors hold no "
        "meaning of their own (they only moved with the other tokens the model never learned, which bunch together), "
        "and their similarities and neighbours say nothing about what they mean. Words it knows: {examples}.",
        len(words)).format(model=md(lm.label), words=quoted,
                                                 examples=md(example_words(lm))), "warning")


# ---- 1. the embedding module for the prompt ------------------------------------------------------
def prompt_embeddings(lm, t: Trace, start: int = 0) -> View:
    """wte, wpe and their sum for MAX_HEATMAP_TOKENS of the prompt's tokens from `start`: [d_model, pos] each."""
    part = slice(start, start + MAX_HEATMAP_TOKENS)
    toks = list(t.tokens[part])
    emb, pos = t.take("embed", part), t.take("pos_embed", part)
    label, d, m = figure_label(lm.label, t.prompt), lm.d_model, len(toks)
    where = (" · " + _("positions {first}–{last}").format(first=start, last=start + m - 1)
             if t.n_tokens > MAX_HEATMAP_TOKENS else "")
    fields = dict(d=d, m=m, where=where, label=label)
    return View([
        Figure("emb_token_heatmap", embedding_heatmap(emb, toks, _("Token embeddings (wte) · {d} × {m}{where} · "
                                                                   "{label}").format(**fields))),
        Figure("emb_pos_heatmap", embedding_heatmap(pos, toks, _("Position embeddings (wpe) · {d} × {m}{where} · "
                                                                 "{label}").format(**fields))),
        Figure("emb_sum_heatmap", embedding_heatmap(emb + pos, toks,
                                                    _("Their sum, what block 0 reads · {d} × {m}{where} · "
                                                      "{label}").format(**fields))),
        Text(_("One column per token of the prompt, one row per dimension; red is positive, blue negative (colours "
               "clipped at the 99.5th percentile of |value|). A token that repeats ('hello' ×16) has the same "
               "token-embedding column every time; only its position embedding changes.")),
    ])


# ---- 2. the learned position table ----------------------------------------------------------------
def position_data(lm) -> tuple[np.ndarray, int, PCAResult]:
    """Cosine similarity between positions, mean-pooled in tiles to at most 512 a side, the tile's
    side, and wpe's first four principal components."""
    wpe = position_embeddings(lm)
    sims, tile = pool_square(cosine_matrix(wpe), 512)
    return sims, tile, pca(wpe, 4)


def positions(lm, data: tuple[np.ndarray, int, PCAResult] | None = None) -> View:
    """The whole wpe [n_ctx, d_model] (every k-th dimension past the cell budget), its cosine similarities, its PCs."""
    wpe = position_embeddings(lm)
    sims, tile, pc = data if data is not None else position_data(lm)
    model = esc(lm.label)
    every = int(np.ceil(wpe.size / CELL_BUDGET))  # gpt2-xl: 1,024 x 1,600 is over the budget
    thin = " · " + _("one dimension in {every}").format(every=every) if every > 1 else ""
    note = " · " + _("mean of {tile}×{tile} tiles").format(tile=tile) if tile > 1 else ""
    position = _("position")
    return View([
        Figure("emb_wpe", matrix_heatmap(wpe.T[::every], _("All {n:,} position embeddings (wpe) · {d} × {n:,}{thin} · "
                                                           "{model}").format(n=lm.n_ctx, d=lm.d_model, thin=thin,
                                                                             model=model),
                                         position, "d_model", height=520, dy=every, value=_("embedding value"))),
        Figure("emb_wpe_cosine", matrix_heatmap(sims, _("Cosine similarity between positions{note} · {model}").format(
            note=note, model=model), position, position, zrange=(-1, 1), dx=tile, dy=tile, x0=(tile - 1) / 2,
            y0=(tile - 1) / 2, height=620, value=_("cosine similarity"))),
        Figure("emb_wpe_pca", components_figure(
            pc.coords, pc.explained,
            _("First principal components of wpe against position · {model}").format(model=model))),
        Text(_("GPT-2 learned its position vectors. Nearby positions get similar vectors (the bright band along the "
               "diagonal) and the main directions vary like slow waves along the position, a learned cousin of the "
               "sinusoids of the original Transformer. A random model shows noise.")),
    ])


# ---- 3. word vectors --------------------------------------------------------------------------------
def word_table(lm, words: list[str], leading_space: bool, wvs: list[WordVector] | None = None) -> View:
    """Each word's tokens and vector, its raw vector, and the words' cosine similarities and distances."""
    if not words:
        return View([Text(_("Type a few words, separated by commas."), "info")])
    wvs = wvs if wvs is not None else word_vectors(lm, words, leading_space)
    model = esc(lm.label)
    view = View([translated_table("emb_words_table", pd.DataFrame({
        "word": [w.word for w in wvs], "tokens": [" + ".join(w.pieces) for w in wvs],
        "ids": [", ".join(map(str, w.ids)) for w in wvs], "vector": [w.note for w in wvs]}), "word-lookup")])
    split = [w for w in wvs if w.n_pieces > 1]
    if split:
        view.add(Text(ngettext(
            "{n} of these words is not one token in {model}'s vocabulary, so its vector here is the mean of its "
            "pieces' vectors: a stand-in that GPT-2 itself never computes.",
            "{n} of these words are not one token in {model}'s vocabulary, so each vector here is the mean of its "
            "pieces' vectors: a stand-in that GPT-2 itself never computes.", len(split)).format(
                n=len(split), model=md(lm.label))))
    unlearned = unlearned_words(lm, wvs)
    if unlearned:
        view.add(unlearned_note(lm, unlearned))
    vectors = np.stack([w.vector for w in wvs])
    return view.add(
        Figure("emb_word_lines", vector_lines(
            vectors, words, _("Raw embedding vectors · {d} numbers each · {model}").format(d=lm.d_model, model=model))),
        Row([Figure("emb_word_cosine", fit_to_column(pair_matrix(
                 cosine_matrix(vectors), words, _("Cosine similarity · {model}").format(model=model), similarity=True),
                 0.5)),
             Figure("emb_word_distance", fit_to_column(pair_matrix(
                 euclidean_matrix(vectors), words, _("Euclidean distance · {model}").format(model=model),
                 similarity=False), 0.5))]),
    )


def typed_words(text: str) -> list[str]:
    """The words typed for the Word vectors tab: split on commas and newlines (so "New York" stays
    one), blanks and repeats dropped, at most MAX_WORDS."""
    return split_words(text, limit=MAX_WORDS)


def neighbours_data(lm, word: str, leading_space: bool) -> pd.DataFrame:
    """The N_NEIGHBOURS tokens nearest to the word's vector (cosine), leaving out its own tokens, among
    the tokens the model learned (where it lists them: the others sit together near their random start)."""
    (wv,) = word_vectors(lm, [word], leading_space)
    ids, sims = nearest_tokens(token_embeddings(lm), wv.vector, N_NEIGHBOURS, exclude=wv.ids, among=learned_mask(lm))
    return pd.DataFrame({"rank": np.arange(1, len(ids) + 1), "token": display_tokens(lm, ids), "id": ids,
                         "cosine": sims})


def neighbours(lm, word: str, leading_space: bool, table: pd.DataFrame | None = None) -> View:
    table = table if table is not None else neighbours_data(lm, word, leading_space)
    unlearned = unlearned_words(lm, word_vectors(lm, [word], leading_space))
    view = View([unlearned_note(lm, unlearned)] if unlearned else [])
    view.add(translated_table("emb_neighbours_table", table, f"nearest-tokens-{word}", formats={"cosine": "{:.4f}"}))
    if lm.trained_token_ids is None:
        return view.add(Text(_("The {k} tokens of all {n:,} whose embeddings point most nearly the same way (cosine "
                               "similarity), leaving out the word's own tokens.").format(k=N_NEIGHBOURS, n=lm.d_vocab)))
    return view.add(Text(_("The {k} tokens whose embeddings point most nearly the same way (cosine similarity), "
                           "leaving out the word's own tokens, among the {n:,} tokens {model} learned in training. "
                           "The other {rest:,} of its {vocab:,} are left out: its text used them rarely or never, so "
                           "their vectors hold no meaning and bunch together, and they would fill any such list."
                           ).format(k=N_NEIGHBOURS, n=len(lm.trained_token_ids), model=md(lm.label),
                                    rest=lm.d_vocab - len(lm.trained_token_ids), vocab=lm.d_vocab)))


# ---- 4. meaning space for a word list -----------------------------------------------------------------
def typed_groups(text: str) -> tuple[tuple[str, str], ...]:
    """(group, word) pairs from the lines typed for the Meaning space tab (`animals: cat, dog, horse`)."""
    return tuple(parse_groups(text))


def word_map_data(lm, pairs: tuple, leading_space: bool, method: str, dims: int) -> tuple[np.ndarray, int, float]:
    """The words of (group, word) pairs projected to `dims` dimensions: (coords [word, dims], how
    many words take several tokens, seconds the projection took)."""
    wvs = word_vectors(lm, [w for _g, w in pairs], leading_space)
    t0 = time.perf_counter()
    coords = project(np.stack([w.vector for w in wvs]), word_map_params(method, dims))
    return coords, sum(w.n_pieces > 1 for w in wvs), time.perf_counter() - t0


def meaning_space(lm, pairs: tuple, leading_space: bool, method: str, dims: int, data=None) -> View:
    if len(pairs) < 3:
        return View([Text(_("Give at least three words."), "info")])
    coords, n_split, secs = data if data is not None else word_map_data(lm, pairs, leading_space, method, dims)
    return View([
        Figure("emb_word_map", points_map(coords, [w for _g, w in pairs], [g for g, _w in pairs],
                                          _("{n} words, {method} in {dims}-D · {model}").format(
                                              n=len(pairs), method=method.upper(), dims=dims, model=esc(lm.label)))),
        Text((_("{n} words in {groups} groups; projected in {secs:.1f} s. {n_split} words take several tokens and are "
                "placed at the mean of their pieces. The axes of such maps mean nothing on their own; only who sits "
                "near whom does.") if n_split else
              _("{n} words in {groups} groups; projected in {secs:.1f} s. The axes of such maps mean nothing on their "
                "own; only who sits near whom does.")).format(n=len(pairs), groups=len({g for g, _w in pairs}),
                                                              secs=secs, n_split=n_split)),
    ])


# ---- 5. the whole vocabulary on one map -----------------------------------------------------------------
def table_label(lm, table: str) -> str:
    return (_("token embeddings ({n:,})").format(n=lm.d_vocab) if table == "tokens"
            else _("position embeddings ({n:,})").format(n=lm.n_ctx))


def vocab_strings(lm) -> tuple[list[str], list[str]]:
    """Every token's display string, and its short escaped hover text for the map."""
    strings = display_tokens(lm, range(lm.d_vocab))
    return strings, [f"{esc(short(s, 24))} · {i}" for i, s in enumerate(strings)]


def map_note(lm, emap: EmbeddingMap) -> View:
    fields = dict(n=len(emap.coords), d=lm.d_model, pca=VOCAB_MAP_PARAMS.pca_dims, k=VOCAB_MAP_PARAMS.n_neighbors,
                  secs=emap.seconds)
    if emap.from_cache:
        return View([Text(_("UMAP of {n:,} × {d} ({pca} PCA dimensions first, {k} neighbours, cosine), loaded from the "
                            "cache in {secs:.1f} s.").format(**fields))])
    return View([Text(_("UMAP of {n:,} × {d} ({pca} PCA dimensions first, {k} neighbours, cosine), computed in "
                        "{secs:.1f} s.").format(**fields))])


def token_map(lm, t: Trace | None, emap: EmbeddingMap, query: str, strings=None) -> View:
    """Every token on the map, the prompt's in red, zoomed to the first token matching `query`.
    `strings`: vocab_strings' result."""
    strings, hover = strings if strings is not None else vocab_strings(lm)
    found = find_tokens(strings, query) if query else []
    view = View([Text(_("No token contains that text."), "info")] if query and not found else [])
    highlight = [(i, strings[i]) for i in dict.fromkeys(int(i) for i in t.token_ids[:200])] if t is not None else []
    title = _("All {n:,} token embeddings, UMAP · {model}").format(n=len(emap.coords), model=esc(lm.label))
    learned = learned_mask(lm)
    view.add(Figure("emb_vocab_map", cloud_map(emap.coords, hover, title, highlight=highlight,
                                               focus=found[0] if found else None,
                                               learned=learned if learned is not None and
                                               len(learned) == len(emap.coords) else None)))
    if found:
        view.add(translated_table("emb_search_table", pd.DataFrame({"token": [strings[i] for i in found], "id": found}),
                                  "vocabulary-search", height=min(220, 38 + 35 * len(found))),
                 Text(_("The map is zoomed to the first match (the star); double-click the map to zoom out.")))
    if learned is None:
        return view.add(Text(_("Grey: every token, hover for its text and id. Red: the prompt's tokens.")))
    return view.add(Text(_("Blue: the {n:,} tokens {model} learned in training. Grey: the other {rest:,}, which its "
                           "text used rarely or never: their vectors hold no meaning of their own and bunch together "
                           "apart from the learned ones (the big grey blob), so where a grey token lands says nothing "
                           "about what it means. Hover for a token's text and id. Red: the prompt's tokens."
                           ).format(n=int(learned.sum()), model=md(lm.label), rest=int((~learned).sum()))))


def position_map(lm, emap: EmbeddingMap) -> View:
    n = len(emap.coords)
    position = _("position {i}")
    return View([Figure("emb_position_map", cloud_map(emap.coords, [position.format(i=i) for i in range(n)],
                                                      _("All {n:,} position embeddings, UMAP · {model}").format(
                                                          n=n, model=esc(lm.label)),
                                                      colour_by_index=True, name=_("position"))),
                 Text(_("Colour is the position: a smooth rainbow curve means neighbouring positions got similar "
                        "vectors."))])


# ---- 6. contextual embeddings ----------------------------------------------------------------------------
def in_context(lm, t: Trace, layer: int, skip_first: bool) -> View:
    """The prompt's residuals at `layer` on their first two PCs, and how alike repeated tokens stay by depth."""
    positions = list(range(1 if skip_first and t.n_tokens > 3 else 0, t.n_tokens))
    if len(positions) < 3:
        return View([Text(_("This view needs a prompt of at least three tokens."), "info")])
    label = figure_label(lm.label, t.prompt)
    res = pca(t.take("resid", (layer,))[positions], 2)  # [pos, d_model] -> [pos, 2]
    reps = dict(list(repeated_tokens(t.token_ids).items())[:8])
    view = View([Figure("emb_context_map", context_map(
        res.coords, list(t.tokens), reps, _("The prompt's tokens at layer {layer}, PCA ({share:.0%} of variance) · "
                                            "{label}").format(layer=layer, share=res.explained.sum(), label=label),
        positions=positions))])
    if not reps:
        return view.add(Text(_("No token occurs twice in this prompt; try the “bank” example above.")))
    curve = _("{token} (positions {first} and {second})")
    curves = {curve.format(token=t.tokens[p[0]], first=p[0], second=p[1]):
              occurrence_similarity(t.take("resid", (slice(None), p[:2])), [0, 1]) for p in reps.values()}
    return view.add(
        Figure("emb_drift", drift_figure(curves, _("How alike two occurrences of the same token stay, by depth · "
                                                   "{label}").format(label=label))),
        Text(_("At layer 0 two copies of a token differ only by their position vectors. As they pass through the "
               "blocks each takes on its own context, and their similarity falls.")))
