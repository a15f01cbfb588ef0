"""The n-gram page: letter and word models that only count (n = 1 … 5), what they write, what they
predict after a context, and GPT-2's next-token table for the same context beside them.

The text is the bundled Genesis or the user's own; `corpus` says what was counted (or why nothing
could be), and the views take its text."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.next_token import top_k_table
from core.ngrams import ALPHABET, MAX_CHARS, MAX_N, bundled_text, counted, fit_text, units_of
from core.trace import Trace
from viz.common import esc, format_prob, short
from viz.ngrams import frequency_bars, next_unit_panels, pair_heatmap

from . import Figure, Row, Table, Text, View, md

SOURCES = {"genesis": "Genesis (King James Bible, bundled)", "yours": "Your own text"}
VIEWS = ["Samples", "Next letter and word", "Letter statistics"]
SAMPLE_LENGTH = {"letter": 280, "word": 60}
NAMES = {"letter": ("letter", "letters"), "word": ("word", "words")}
RULES = {
    "letter": "Letters: the text in lowercase a–z and spaces; every run of anything else (punctuation, digits, line "
              "breaks) is one space, and accents are dropped (é → e). ␣ is a space.",
    "word": "Words: the runs of the letters a–z, lowercased; anything else separates words, so *father's* is "
            "*father* and *s*.",
}
BREAK = " ‖ "
PASTE_HINT = (f"Paste a text into the box above (up to {MAX_CHARS:,} characters: a book is fine). The models count "
              "its letters and words. Or choose the bundled Genesis.")


def _count(k: int, unit: str) -> str:
    """“1 letter”, “2,450 words”."""
    one, many = NAMES[unit]
    return f"{k:,} {one if k == 1 else many}"


def shown(unit: str) -> str:
    return "␣" if unit == " " else unit


def _joined(units, unit: str) -> str:
    return "".join(shown(u) for u in units) if unit == "letter" else " ".join(units)


def corpus(source: str, pasted: str) -> View:
    """What will be counted. values: "text" (None when there is nothing usable: the page says why
    and stops) and "label" (the text's name in titles)."""
    if source == "genesis":
        text, label, cut = bundled_text(), "Genesis (KJV)", 0
    elif not pasted.strip():
        return View([Text(PASTE_HINT, "info")], {"text": None, "label": ""})
    else:
        (text, cut), label = fit_text(pasted), "your text"
    letters, words = counted(text, "letter"), counted(text, "word")
    view = View(values={"text": text, "label": label})
    if cut:
        view.add(Text(f"Your text is {len(pasted):,} characters; the models count the first {MAX_CHARS:,} and leave "
                      f"out the other {cut:,}.", "warning"))
    if letters.length == 0:
        view.values["text"] = None
        return view.add(Text("The letter and word models need English letters (a–z), and this text has none: Chinese, "
                             "for instance, is written without them. Paste a text in English (or another language "
                             "written in Latin letters), or choose the bundled Genesis. GPT-2 itself reads any text, "
                             "as bytes: see the other pages.", "warning"))
    return view.add(Text(f"{label[0].upper() + label[1:]}: {len(text):,} characters, read as {letters.length:,} letters "
                         f"and spaces and as {words.length:,} words ({len(words.vocab):,} different). "
                         f"{RULES['letter']} {RULES['word']}"))


# ---- samples --------------------------------------------------------------------------------------
def _how(n: int, unit: str) -> str:
    one = NAMES[unit][0]
    before = {1: "by how often it occurs, alone", 2: "after the one before it"}
    return f"**n = {n}**: each {one} drawn {before.get(n, f'after the {n - 1} before it')}"


def _samples_column(text: str, unit: str, seed: int) -> list:
    model, many = counted(text, unit), NAMES[unit][1]
    items, broken = [Text(f"{many.capitalize()}, n = 1 … {MAX_N}", "subheader")], False
    for n in range(1, MAX_N + 1):
        items.append(Text(_how(n, unit), "markdown"))
        runs = model.sample(n, SAMPLE_LENGTH[unit], seed)
        if not runs:
            items.append(Text(f"The text has only {_count(model.length, unit)}: no run of "
                              f"{n} to count.", "caption"))
            continue
        broken |= len(runs) > 1
        items.append(Text(BREAK.join(("" if unit == "letter" else " ").join(run) for run in runs), "code"))
    if broken:
        items.append(Text(f"‖ marks a dead end: the last {many} drawn occur only at the very end of the text, so "
                          "nothing ever followed them, and the sample starts again at a random place.", "caption"))
    return items


def samples(text: str, seed: int) -> View:
    return View([
        Text("Each line is written by a model that only counts: it draws the next letter (or word) with the "
             "probability it had in the text after the same n − 1 letters (words). Read down: with more context, "
             "random letters turn into words, and words into phrases; by n = 5 the models mostly copy long pieces of "
             "the text, because few contexts that long occur more than once. The same seed gives the same lines."),
        Row([_samples_column(text, "letter", seed), _samples_column(text, "word", seed)]),
    ])


# ---- next letter and next word --------------------------------------------------------------------
def _context_of(units: list[str], n: int) -> list[str] | None:
    """The last n − 1 units (None when there are fewer)."""
    if n == 1:
        return []
    return units[len(units) - (n - 1):] if len(units) >= n - 1 else None


def _tail(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1:]


def _quoted(units: list[str], unit: str) -> str:
    return f"“{_joined(units, unit)}”"


def _table_column(text: str, context_text: str, unit: str, n: int, k: int) -> list:
    model, one = counted(text, unit), NAMES[unit][0]
    units = units_of(context_text, unit)
    context = _context_of(units, n)
    items = [Text(f"Next {one}, n = {n}", "subheader")]
    if context is None and not units:
        what = "letters a–z" if unit == "letter" else "words of the letters a–z"
        return items + [Text(f"The context has no {what}, the only ones these models read (Chinese, say, has none). "
                             "Type a context in English, or pick n = 1, which needs no context.", "info")]
    if context is None:
        return items + [Text(f"The context has {_count(len(units), unit)}; the {n}-gram model "
                             f"reads the last {n - 1}. Type a longer context, or pick a smaller n.", "info")]
    found, counts = model.next_counts(context)
    if not counts.size:
        return items + [Text(f"{md(_quoted(context, unit))} never occurs in the text with anything after it, so the "
                             f"{n}-gram model has no continuation: a model that only counts knows nothing of what it "
                             "never saw. Pick a smaller n (a shorter context), or a longer text.", "info")]
    total = int(counts.sum())
    times = "once" if total == 1 else f"{total:,} times"
    after = (f"always followed by {md(_quoted([found[0]], unit))}" if len(found) == 1 else
             f"followed by {len(found):,} different {NAMES[unit][1]}")
    items.append(Text(f"No context: the text has {_count(total, unit)}, {len(found):,} different." if n == 1 else
                      f"{md(_quoted(context, unit))} occurs {times} in the text, {after}."))
    table = pd.DataFrame({"rank": np.arange(1, min(k, len(found)) + 1), one: [shown(u) for u in found[:k]],
                          "count": counts[:k], "probability": counts[:k] / total})
    return items + [Table(f"ngram_{unit}_table", table, f"next-{one}-{n}-gram-table",
                          formats={"probability": format_prob, "count": "{:,}"})]


def _gpt2_column(lm, t: Trace, k: int) -> list:
    table = top_k_table(lm, t, k)[["rank", "token", "probability"]]
    items = [Text("GPT-2's next token", "subheader"),
             Text(f"What {md(lm.label)} predicts after the whole context, not just its last letters or words. It "
                  "predicts tokens: mostly whole words with their space in front (␣).")]
    if t.n_dropped:
        items.append(Text(f"GPT-2 read only the {t.kept} {len(t.token_ids):,} tokens of this context.", "caption"))
    return items + [Table("ngram_gpt2_table", table, "gpt2-next-token-table", formats={"probability": format_prob})]


def _panels_figure(text: str, label: str, context_text: str, unit: str, k: int) -> Figure:
    """Bars of the next unit after the context's last n − 1 units, one panel per n."""
    model, one = counted(text, unit), NAMES[unit][0]
    units, panels = units_of(context_text, unit), []
    for n in range(1, MAX_N + 1):
        context = _context_of(units, n)
        found, counts = model.next_counts(context) if context is not None else ([], np.zeros(0))
        where = "no context" if n == 1 else "—" if context is None else short(_quoted(context, unit), 24)
        panels.append((f"n = {n}", where, [shown(u) for u in found[:k]], counts[:k] / max(1, counts.sum()),
                       "context too short" if context is None else "never seen"))
    title = f"Next {one} for n = 1 … {MAX_N} after “{esc(_tail(context_text, 40))}” · {esc(label)}"
    return Figure(f"ngram_next_{unit}s", next_unit_panels(panels, title))


def next_units(lm, t: Trace, text: str, label: str, n: int, k: int) -> View:
    """Next letter and next word after the context (t.prompt: the typed context or the sidebar prompt)
    for the order-n models, GPT-2's next token beside them, then every n as bars."""
    context_text = t.prompt
    last = "last letter (word)" if n == 2 else f"last {n - 1} letters (words)"
    how = (f"The {n}-gram models look only at its {last} and count what followed them in the "
           "text; the probability is count / total. No smoothing: what the text never has gets no probability."
           if n > 1 else "With n = 1 there is no context: the tables are how often each letter and word occurs.")
    return View([
        Text(f"Context: “{md(_tail(context_text, 160))}”. {how}"),
        Row([_table_column(text, context_text, "letter", n, k), _table_column(text, context_text, "word", n, k),
             _gpt2_column(lm, t, k)]),
        Text("Below, every n at once: the bars grow more certain with each letter of context, until the context is "
             "one the text never has (“never seen”)."),
        _panels_figure(text, label, context_text, "letter", min(k, 10)),
        _panels_figure(text, label, context_text, "word", min(k, 10)),
    ])


# ---- letter statistics ----------------------------------------------------------------------------
def letter_statistics(text: str, label: str) -> View:
    counts = counted(text, "letter").pair_counts()
    singles = np.bincount(counted(text, "letter").ids, minlength=len(ALPHABET))
    order = list(range(1, len(ALPHABET))) + [0]  # a … z, then space
    labels = [shown(ALPHABET[i]) for i in order]
    rows = counts.sum(axis=1, keepdims=True)
    probs = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    return View([
        Text("How often each letter occurs: the whole of the n = 1 letter model. Wolfram's essay starts here."),
        Figure("ngram_letter_freq", frequency_bars(labels, singles[order] / max(1, singles.sum()), singles[order],
                                                   f"How often each letter occurs · {esc(label)}")),
        Text("Which letter follows which: the n = 2 letter model. Each row is a letter, and its colours the "
             "probability of each next letter (a row sums to 100%): after q comes u, and ␣ (a word ends) follows "
             "most letters often. Hover a cell for the probability and the count."),
        Figure("ngram_pairs", pair_heatmap(labels, probs[np.ix_(order, order)], counts[np.ix_(order, order)],
                                           f"Next letter after each letter (2-grams) · {esc(label)}")),
    ])

