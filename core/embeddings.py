"""Token and position embeddings: words -> vectors, similarities, nearest tokens, PCA.

GPT-2's first step is two table look-ups: `wte` [vocab, d_model] gives each token id a
vector and `wpe` [n_ctx, d_model] each position; their sum enters block 0. This module
reads those tables (read-only views of the shared model's parameters) and does the
small linear algebra the embeddings page shows. It never imports streamlit.

Words and tokens. GPT-2 tokens usually carry their leading space: in "the cat sat",
"cat" is the token `␣cat`, not `cat`. So by default a word is looked up in its
in-sentence form, " word" (one space prepended unless the user typed one). A word the
vocabulary does not hold whole is split into several tokens; its vector is then the
mean of the pieces' vectors, and `WordVector.pieces` says so. The mean is a convenient
stand-in, not something GPT-2 itself computes.

Dimension names as in TransformerLens: vocab pos d_model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from i18n import _

from .model import LoadedModel
from .tokens import display_tokens


# ---- the tables ------------------------------------------------------------------------------
def _read_only(t) -> np.ndarray:
    a = t.detach().float().cpu().numpy()  # a view on CPU: never write into it
    a = a.view()
    a.flags.writeable = False
    return a


def token_embeddings(lm: LoadedModel) -> np.ndarray:
    """W_E, the token embedding table `wte`: [vocab, d_model] float32, read-only."""
    return _read_only(lm.arch.W_E)


def position_embeddings(lm: LoadedModel) -> np.ndarray:
    """W_pos, the learned position table `wpe`: [n_ctx, d_model] float32, read-only."""
    return _read_only(lm.arch.W_pos)


# ---- words -> vectors -------------------------------------------------------------------------
@dataclass(frozen=True)
class WordVector:
    """One word as GPT-2 sees it. `vector` is the token's embedding, or the mean over pieces."""

    word: str  # as the user typed it
    text: str  # the string that was tokenized (" word" in the in-sentence form)
    ids: tuple[int, ...]
    pieces: tuple[str, ...]  # display strings of the tokens (see core.tokens)
    vector: np.ndarray  # [d_model]

    @property
    def n_pieces(self) -> int:
        return len(self.ids)

    @property
    def note(self) -> str:
        if self.n_pieces == 1:
            return _("one token")
        return _("{n} tokens: mean of {pieces}").format(n=self.n_pieces, pieces=" + ".join(self.pieces))


def split_words(text: str, limit: int = 64) -> list[str]:
    """Words from free text, split on commas and newlines (so "New York" stays one entry).

    Blank entries and exact repeats are dropped; at most `limit` words are kept.
    """
    out: list[str] = []
    for part in re.split(r"[,\n;]", text):
        word = part.strip()
        if word and word not in out:
            out.append(word)
    return out[:limit]


# The example word lists, in the spirit of Wolfram's essay: a few groups of everyday words. The first
# is the essay's (GPT-2's); a model trained on a narrow text gets the first list whose words it
# learned (`example_words`), so its examples are words it knows: the second is the bundled model's,
# whose book (the King James Bible) never uses cat, dog or chair often enough to learn them.
EXAMPLE_WORD_GROUPS = """animals: cat, dog, horse, cow, lion, tiger, elephant, mouse, rabbit, sheep
fruits: apple, banana, orange, grape, cherry, pear, peach, lemon, mango, strawberry
colours: red, green, blue, yellow, purple, pink, brown, black, white, grey
numbers: one, two, three, four, five, six, seven, eight, nine, ten
countries: France, Germany, Italy, Spain, Japan, China, India, Brazil, Canada, Mexico
verbs: run, walk, eat, sleep, write, read, swim, sing, think, jump"""
BIBLE_WORD_GROUPS = """animals: sheep, goat, lamb, ox, lion, horse, eagle, serpent
materials: gold, silver, brass, iron, stone
family: father, mother, son, daughter, brother, sister, wife
body: hand, eye, head, heart, mouth, foot
numbers: one, two, three, four, five, six, seven, eight, nine, ten
verbs: eat, drink, go, come, walk, sit, sleep, speak"""
EXAMPLE_GROUP_LISTS = (EXAMPLE_WORD_GROUPS, BIBLE_WORD_GROUPS)
# Two words of a kind and one apart (the essay's cat, dog, chair), for the Word vectors tab.
EXAMPLE_WORD_LISTS = ("cat, dog, chair", "father, mother, gold")


def parse_groups(text: str, limit: int = 400) -> list[tuple[str, str]]:
    """(group, word) pairs from lines like `animals: cat, dog, horse`.

    Lines without a colon belong to the group "words". At most `limit` words.
    """
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in text.splitlines():
        group, sep, rest = line.partition(":")
        if not sep:
            group, rest = "words", line
        group = group.strip() or "words"
        for word in split_words(rest, limit):
            if word not in seen:
                seen.add(word)
                pairs.append((group, word))
    return pairs[:limit]


def in_sentence_form(word: str, leading_space: bool = True) -> str:
    """" word" (how a word appears mid-sentence), unless it already starts with whitespace."""
    if leading_space and word and not word[0].isspace():
        return " " + word
    return word


def word_vector(lm: LoadedModel, word: str, leading_space: bool = True, wte: np.ndarray | None = None) -> WordVector:
    """The embedding of `word` (mean over its pieces if it takes several tokens).

    Raises ValueError for a word with no tokens (an empty string).
    """
    text = in_sentence_form(word, leading_space)
    ids = lm.encode(text)
    if not ids:
        raise ValueError(f"{word!r} has no tokens.")
    table = token_embeddings(lm) if wte is None else wte
    vector = table[ids].mean(axis=0)  # [d_model]
    return WordVector(word=word, text=text, ids=tuple(ids), pieces=tuple(display_tokens(lm, ids)), vector=vector)


def word_vectors(lm: LoadedModel, words: list[str], leading_space: bool = True) -> list[WordVector]:
    wte = token_embeddings(lm)
    return [word_vector(lm, w, leading_space, wte) for w in words if w.strip()]


# ---- what the model learned -------------------------------------------------------------------
# A checkpoint trained on a narrow text lists the tokens it learned (LoadedModel.trained_token_ids);
# the others never came up in its training, or too rarely: their embeddings stay near their random
# start and sit together, so their neighbours mean nothing. A model without the list learned them all.
def learned_mask(lm: LoadedModel) -> np.ndarray | None:
    """[vocab] bool: the tokens the model learned; None when it does not list them (all learned)."""
    if lm.trained_token_ids is None:
        return None
    mask = np.zeros(lm.d_vocab, dtype=bool)
    mask[np.asarray(lm.trained_token_ids, dtype=np.int64)] = True
    return mask


def unlearned_words(lm: LoadedModel, wvs: list[WordVector]) -> list[str]:
    """The words (as typed) with a token the model never learned; [] for a model that learned every token."""
    mask = learned_mask(lm)
    return [] if mask is None else [w.word for w in wvs if not mask[list(w.ids)].all()]


def knows_words(lm: LoadedModel, words: list[str], leading_space: bool = True) -> bool:
    """Whether each word is one token the model learned (in its in-sentence form by default)."""
    mask = learned_mask(lm)
    for word in words:
        ids = lm.encode(in_sentence_form(word, leading_space))
        if len(ids) != 1 or (mask is not None and not mask[ids[0]]):
            return False
    return True


def example_words(lm: LoadedModel) -> str:
    """The first of EXAMPLE_WORD_LISTS whose words the model knows as single learned tokens (the
    essay's cat, dog, chair for GPT-2), else the essay's."""
    return next((w for w in EXAMPLE_WORD_LISTS if knows_words(lm, split_words(w))), EXAMPLE_WORD_LISTS[0])


def example_groups(lm: LoadedModel) -> str:
    """The first of EXAMPLE_GROUP_LISTS whose words the model learned, else the essay's."""
    mask = learned_mask(lm)
    if mask is None:
        return EXAMPLE_WORD_GROUPS
    for groups in EXAMPLE_GROUP_LISTS:
        ids = [i for _g, w in parse_groups(groups) for i in lm.encode(in_sentence_form(w))]
        if mask[ids].all():
            return groups
    return EXAMPLE_WORD_GROUPS


# ---- similarities -------------------------------------------------------------------------------
def _unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def cosine_matrix(X: np.ndarray) -> np.ndarray:
    """[n, n] cosine similarity between the rows of X [n, d]."""
    U = _unit_rows(X)
    return np.clip(U @ U.T, -1.0, 1.0)


def euclidean_matrix(X: np.ndarray) -> np.ndarray:
    """[n, n] Euclidean distance between the rows of X [n, d] (exact, no Gram-matrix shortcut)."""
    X = np.asarray(X, dtype=np.float64)
    return np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)).astype(np.float32)


def nearest_tokens(wte: np.ndarray, vector: np.ndarray, k: int = 20, exclude=(),
                   among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of wte [vocab, d_model] with the highest cosine similarity to vector [d_model].

    Returns (ids [k], cosines [k]), best first; ids in `exclude` are skipped, and so are rows
    outside `among` ([vocab] bool, e.g. the tokens the model learned) when it is given.
    """
    sims = _unit_rows(wte) @ _unit_rows(vector[None, :])[0]  # [vocab]
    if among is not None:
        sims[~np.asarray(among, dtype=bool)] = -np.inf
    if len(exclude):
        sims[np.asarray(list(exclude), dtype=np.int64)] = -np.inf
    k = min(k, int(np.isfinite(sims).sum()))
    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    top = top[np.lexsort((top, -sims[top]))]  # by similarity, then id, so ties are stable
    return top.astype(np.int64), sims[top].astype(np.float32)


# ---- PCA --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PCAResult:
    coords: np.ndarray  # [n, k] the rows of X in the first k principal directions
    components: np.ndarray  # [k, d] unit directions, strongest first
    explained: np.ndarray  # [k] fraction of the total variance along each
    mean: np.ndarray  # [d]


def pca(X: np.ndarray, k: int = 2) -> PCAResult:
    """Exact PCA of X [n, d] by SVD. Signs are fixed (largest loading positive), so it is deterministic."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    Xc = X - mean
    _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    k = min(k, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    total = float((s**2).sum())
    explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return PCAResult(coords=(Xc @ comps.T).astype(np.float32), components=comps.astype(np.float32),
                     explained=explained.astype(np.float32), mean=mean.astype(np.float32))


# ---- contextual embeddings --------------------------------------------------------------------------
def repeated_tokens(ids) -> dict[int, list[int]]:
    """{token id: positions} for every token that occurs more than once."""
    where: dict[int, list[int]] = {}
    for pos, i in enumerate(np.asarray(ids).tolist()):
        where.setdefault(int(i), []).append(pos)
    return {i: p for i, p in where.items() if len(p) > 1}


def occurrence_similarity(resid: np.ndarray, positions: list[int]) -> np.ndarray:
    """[layer + 1] cosine between a token's first two occurrences at each depth of resid [layer+1, pos, d_model].

    Layer 0 (the embedding) is where the two copies differ only by their position vectors;
    a falling curve is the two occurrences taking on their contexts' meanings.
    """
    a, b = positions[0], positions[1]
    A, B = _unit_rows(resid[:, a]), _unit_rows(resid[:, b])
    return (A * B).sum(-1).astype(np.float32)


# ---- helpers for big views ----------------------------------------------------------------------------
def pool_square(m: np.ndarray, max_side: int = 512) -> tuple[np.ndarray, int]:
    """Mean over k x k tiles of m [n, n] so that no side exceeds max_side (the last tiles may be
    smaller: each is the mean of the cells it has); returns (pooled, k)."""
    from .weights import block_average

    k = max(1, int(np.ceil(m.shape[0] / max_side)))
    return (m.astype(np.float32), 1) if k == 1 else (block_average(m, k), k)


def find_tokens(tokens: list[str], query: str, limit: int = 20) -> list[int]:
    """Rows of `tokens` (display strings) matching `query`: exact matches first (with and
    without a leading `␣`), then tokens that contain it. Case-sensitive, then case-folded."""
    q = query.strip()
    if not q:
        return []
    exact_forms = {q, "␣" + q, q.replace(" ", "␣")}
    exact = [i for i, tok in enumerate(tokens) if tok in exact_forms]
    exact.sort(key=lambda i: (not tokens[i].startswith("␣"), len(tokens[i]), i))
    folded, taken = q.lower(), set(exact)
    contains = [i for i, tok in enumerate(tokens) if i not in taken and folded in tok.lower()]
    contains.sort(key=lambda i: (len(tokens[i]), i))
    return (exact + contains)[:limit]
