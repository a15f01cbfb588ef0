"""What a Tour step's paragraph says differs when the loaded model is not GPT-2.

The steps' paragraphs (recipes.tour.STEPS) describe the essay's GPT-2 figures. On another model (the
bundled mini GPT-2, a random or local checkpoint) a sentence that holds for GPT-2 may not hold for
the figure below it: `step_note` says what differs, read off the model itself where it can be (the
words it learned, how near they sit, which tokens it ranks first), and `step_text` is the paragraph
the page shows, with that note under it."""
from __future__ import annotations

import numpy as np

from core.embeddings import EXAMPLE_WORD_GROUPS, cosine_matrix, learned_mask, parse_groups, split_words, word_vectors
from core.trace import Trace
from i18n import _

from . import embeddings, features, md
from .naming import is_gpt2
from .tour import HELLO_BYE, WORDS, Step, groups_of, words_of


def step_text(step: Step, lm, t: Trace | None = None) -> str:
    """The step's paragraph (Markdown), and below it what differs where the loaded model is not GPT-2
    (`step_note`)."""
    note = step_note(step, lm, t)
    return step.text if not note else f"{step.text}\n\n{note}"


def step_note(step: Step, lm, t: Trace | None = None) -> str | None:
    """Where a step's paragraph speaks of GPT-2 and the loaded model is another: what differs, read off
    the model itself where it can be (the words it learned, how near they sit, which tokens it ranks
    first), so the sentence holds for the figure below it. None for GPT-2, and for steps whose words
    hold for any model (the note under the paragraph says the numbers are the model's own)."""
    if is_gpt2(lm):
        return None
    if step.kind == "samples":
        return _samples_note(lm)
    if step.kind == "rank" and t is not None:
        return _rank_note(lm, t)
    if step.kind == "words":
        return _words_note(lm)
    if step.kind == "word_map":
        return _map_note(lm)
    if step.kind == "layer_heads":
        return _heads_note(lm)
    return None


def _samples_note(lm) -> str:
    if features.is_bundled(lm):
        return _("On {model}, a small model trained on one book, sampling need not read better: on a prompt far "
                 "from its book, such as this one, samples break into word fragments and stray commas, while the "
                 "greedy text falls back on the book's commonest phrases.").format(model=md(lm.label))
    return _("On {model}, sampling need not read better than the greedy text: how its samples read depends on what it "
             "learned, and a small or untrained model's samples read no better at any temperature.").format(
        model=md(lm.label))


def _rank_note(lm, t: Trace) -> str | None:
    learned = learned_mask(lm)
    if learned is None:
        return None
    n = int(learned.sum())
    likeliest = np.argsort(-np.asarray(t.next_probs))[:n]
    return _("{model} learned only {n:,} of its {vocab:,} tokens ({share:.0%} of its {n:,} likeliest here are among "
             "them), so past rank {n:,} or so the curve is mostly tokens it never learned, and it bends away from "
             "the line.").format(model=md(lm.label), n=n, vocab=lm.d_vocab, share=float(learned[likeliest].mean()))


def _words_note(lm) -> str:
    words, parts = split_words(words_of(lm), limit=12), []
    if words != split_words(WORDS):
        parts.append(_("{model} did not learn cat, dog and chair as words of its own (its training text hardly uses "
                       "them), so this step shows {words}, words it did learn.").format(
            model=md(lm.label), words=md(", ".join(words))))
    if len(words) == 3:
        cos = cosine_matrix(np.stack([w.vector for w in word_vectors(lm, words)]))
        ab, ac, bc = float(cos[0, 1]), float(cos[0, 2]), float(cos[1, 2])
        near = (_("On {model}, {a} and {b} are nearer each other (cosine {ab:.2f}) than either is to {c} ({ac:.2f} "
                  "and {bc:.2f}).") if ab > max(ac, bc) else
                _("On {model}, {a} and {b} are not nearer each other (cosine {ab:.2f}) than to {c} ({ac:.2f} and "
                  "{bc:.2f}): what sits near what depends on what it learned."))
        parts.append(near.format(model=md(lm.label), a=md(words[0]), b=md(words[1]), c=md(words[2]), ab=ab, ac=ac,
                                 bc=bc))
    return " ".join(parts)


def same_group_neighbours(coords: np.ndarray, groups: list[str]) -> tuple[int, float]:
    """How many points [word, dims] have a point of their own group as nearest neighbour, and how many
    would by chance (each word's group share of the others)."""
    d = np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1)  # [word, word]
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    k = sum(groups[i] == groups[j] for i, j in enumerate(nearest))
    n = len(groups)
    chance = sum((groups.count(g) - 1) / (n - 1) for g in groups)
    return int(k), float(chance)


def _map_note(lm) -> str:
    groups = groups_of(lm)
    pairs = tuple(parse_groups(groups))
    coords = embeddings.word_map_data(lm, pairs, True, "pca", 2)[0]
    k, chance = same_group_neighbours(np.asarray(coords)[:, :2], [g for g, _w in pairs])
    parts = [] if groups == EXAMPLE_WORD_GROUPS else [
        _("{model} did not learn most of the essay's words (its training text hardly uses them), so the map shows "
          "words of its own text that it did learn.").format(model=md(lm.label))]
    parts.append(_("On {model}, {k} of these {n} words have a word of their own group as nearest neighbour on this "
                   "map; by chance about {chance:.0f} would.").format(model=md(lm.label), k=k, n=len(pairs),
                                                                      chance=chance))
    return " ".join(parts)


def _heads_note(lm) -> str | None:
    learned = learned_mask(lm)
    if learned is None or learned[lm.encode(HELLO_BYE)].all():
        return None
    return _("{model} never learned “hello” or “bye” (its training text hardly uses them), so its heads may not single "
             "out the last “hello” or every “bye” as the essay's GPT-2 does: look for what they do by position "
             "instead (the token itself, the one before, the first).").format(model=md(lm.label))
