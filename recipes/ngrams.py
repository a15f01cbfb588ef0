"""The n-gram page: letter and word models that only count (n = 1 … 5), what they write, what they
predict after a context, and GPT-2's next-token table for the same context beside them.

The text is the bundled Genesis or the user's own; `corpus` says what was counted (or why nothing
could be), and the views take its text."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.ngrams import ALPHABET, MAX_CHARS, MAX_N, bundled_text, counted, fit_text, units_of
from core.trace import Trace
from i18n import N_, _, ngettext
from viz.common import esc, format_prob, short
from viz.ngrams import frequency_bars, next_unit_panels, pair_heatmap

from . import Figure, Row, Text, View, md, translated_table
from .naming import model_name
from .next_token import top_k_table

# Option and tab labels: English values (in the link), marked here, shown through _ by the page.
SOURCES = {"genesis": N_("Genesis (King James Bible, bundled)"), "yours": N_("Your own text")}
VIEWS = [N_("Samples"), N_("Next letter and word"), N_("Letter statistics")]
SAMPLE_LENGTH = {"letter": 280, "word": 60}
NAMES = {"letter": ("letter", "letters"), "word": ("word", "words")}  # the units' names in code (a table's column)
COLUMNS = (N_("letter"), N_("word"), N_("count"))  # the tables' own columns, shown through `translated_table`
RULES = {
    "letter": N_("Letters: the text in lowercase a–z and spaces; every run of anything else (punctuation, digits, "
                 "line breaks) is one space, and accents are dropped (é → e). ␣ is a space."),
    "word": N_("Words: the runs of the letters a–z, lowercased; anything else separates words, so *father's* is "
               "*father* and *s*."),
}
BREAK = " ‖ "
PASTE_HINT = N_("Paste a text into the box above (up to {max_chars:,} characters: a book is fine). The models count "
                "its letters and words. Or choose the bundled Genesis.")


def paste_hint() -> str:
    return _(PASTE_HINT).format(max_chars=MAX_CHARS)


def _count(k: int, unit: str) -> str:
    """“1 letter”, “2,450 words”."""
    if unit == "letter":
        return ngettext("{n:,} letter", "{n:,} letters", k).format(n=k)
    return ngettext("{n:,} word", "{n:,} words", k).format(n=k)


def shown(unit: str) -> str:
    return "␣" if unit == " " else unit


def _joined(units, unit: str) -> str:
    return "".join(shown(u) for u in units) if unit == "letter" else " ".join(units)


def corpus(source: str, pasted: str) -> View:
    """What will be counted. values: "text" (None when there is nothing usable: the page says why
    and stops) and "label" (the text's name in titles)."""
    if source == "genesis":
        text, label, cut = bundled_text(), _("Genesis (KJV)"), 0
    elif not pasted.strip():
        return View([Text(paste_hint(), "info")], {"text": None, "label": ""})
    else:
        (text, cut), label = fit_text(pasted), _("your text")
    letters, words = counted(text, "letter"), counted(text, "word")
    view = View(values={"text": text, "label": label})
    if cut:
        view.add(Text(_("Your text is {chars:,} characters; the models count the first {max_chars:,} and leave "
                        "out the other {cut:,}.").format(chars=len(pasted), max_chars=MAX_CHARS, cut=cut), "warning"))
    if letters.length == 0:
        view.values["text"] = None
        return view.add(Text(_("The letter and word models need English letters (a–z), and this text has none: "
                               "Chinese, for instance, is written without them. Paste a text in English (or another "
                               "language written in Latin letters), or choose the bundled Genesis. GPT-2 itself reads "
                               "any text, as bytes: see the other pages."), "warning"))
    return view.add(Text(_("{label}: {chars:,} characters, read as {letters:,} letters and spaces and as {words:,} "
                           "words ({different:,} different). {letter_rules} {word_rules}").format(
        label=label[0].upper() + label[1:], chars=len(text), letters=letters.length, words=words.length,
        different=len(words.vocab), letter_rules=_(RULES["letter"]), word_rules=_(RULES["word"]))))


# ---- samples --------------------------------------------------------------------------------------
def _how(n: int, unit: str) -> str:
    if unit == "letter":
        how = {1: _("**n = {n}**: each letter drawn by how often it occurs, alone"),
               2: _("**n = {n}**: each letter drawn after the one before it")}.get(
            n, _("**n = {n}**: each letter drawn after the {k} before it"))
    else:
        how = {1: _("**n = {n}**: each word drawn by how often it occurs, alone"),
               2: _("**n = {n}**: each word drawn after the one before it")}.get(
            n, _("**n = {n}**: each word drawn after the {k} before it"))
    return how.format(n=n, k=n - 1)


def _samples_column(text: str, unit: str, seed: int) -> list:
    model = counted(text, unit)
    heading = _("Letters, n = 1 … {max_n}") if unit == "letter" else _("Words, n = 1 … {max_n}")
    items, broken = [Text(heading.format(max_n=MAX_N), "subheader")], False
    for n in range(1, MAX_N + 1):
        items.append(Text(_how(n, unit), "markdown"))
        runs = model.sample(n, SAMPLE_LENGTH[unit], seed)
        if not runs:
            items.append(Text(_("The text has only {count}: no run of {n} to count.").format(
                count=_count(model.length, unit), n=n), "caption"))
            continue
        broken |= len(runs) > 1
        items.append(Text(BREAK.join(("" if unit == "letter" else " ").join(run) for run in runs), "code"))
    if broken:
        items.append(Text(_("‖ marks a dead end: the last letters drawn occur only at the very end of the text, so "
                            "nothing ever followed them, and the sample starts again at a random place.")
                          if unit == "letter" else
                          _("‖ marks a dead end: the last words drawn occur only at the very end of the text, so "
                            "nothing ever followed them, and the sample starts again at a random place."), "caption"))
    return items


def samples(text: str, seed: int) -> View:
    return View([
        Text(_("Each line is written by a model that only counts: it draws the next letter (or word) with the "
               "probability it had in the text after the same n − 1 letters (words). Read down: with more context, "
               "random letters turn into words, and words into phrases; by n = 5 the models mostly copy long pieces "
               "of the text, because few contexts that long occur more than once. The same seed gives the same "
               "lines.")),
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
    heading = _("Next letter, n = {n}") if unit == "letter" else _("Next word, n = {n}")
    items = [Text(heading.format(n=n), "subheader")]
    if context is None and not units:
        return items + [Text(_("The context has no letters a–z, the only ones these models read (Chinese, say, has "
                               "none). Type a context in English, or pick n = 1, which needs no context.")
                             if unit == "letter" else
                             _("The context has no words of the letters a–z, the only ones these models read "
                               "(Chinese, say, has none). Type a context in English, or pick n = 1, which needs no "
                               "context."), "info")]
    if context is None:
        return items + [Text(_("The context has {count}; the {n}-gram model reads the last {k}. Type a longer "
                               "context, or pick a smaller n.").format(count=_count(len(units), unit), n=n, k=n - 1),
                             "info")]
    found, counts = model.next_counts(context)
    if not counts.size:
        return items + [Text(_("{context} never occurs in the text with anything after it, so the {n}-gram model has "
                               "no continuation: a model that only counts knows nothing of what it never saw. Pick a "
                               "smaller n (a shorter context), or a longer text.").format(
            context=md(_quoted(context, unit)), n=n), "info")]
    total = int(counts.sum())
    times = _("once") if total == 1 else _("{n:,} times").format(n=total)
    if len(found) == 1:
        after = _("always followed by {unit}").format(unit=md(_quoted([found[0]], unit)))
    elif unit == "letter":
        after = _("followed by {n:,} different letters").format(n=len(found))
    else:
        after = _("followed by {n:,} different words").format(n=len(found))
    items.append(Text(_("No context: the text has {count}, {different:,} different.").format(
        count=_count(total, unit), different=len(found)) if n == 1 else
        _("{context} occurs {times} in the text, {after}.").format(
            context=md(_quoted(context, unit)), times=times, after=after)))
    table = pd.DataFrame({"rank": np.arange(1, min(k, len(found)) + 1), one: [shown(u) for u in found[:k]],
                          "count": counts[:k], "probability": counts[:k] / total})
    return items + [translated_table(f"ngram_{unit}_table", table, f"next-{one}-{n}-gram-table",
                                     formats={"probability": format_prob, "count": "{:,}"})]


def _gpt2_column(lm, t: Trace, k: int) -> list:
    table = top_k_table(lm, t, k)[["rank", "token", "probability"]]
    items = [Text(_("{model}'s next token").format(model=md(model_name(lm))), "subheader"),
             Text(_("What {model} predicts after the whole context, not just its last letters or words. It "
                    "predicts tokens: mostly whole words with their space in front (␣).").format(model=md(lm.label)))]
    if t.n_dropped:
        read = (_("{model} read only the last {n:,} tokens of this context.") if t.kept == "last" else
                _("{model} read only the first {n:,} tokens of this context."))
        items.append(Text(read.format(model=md(model_name(lm)), n=len(t.token_ids)), "caption"))
    return items + [translated_table("ngram_gpt2_table", table, "gpt2-next-token-table",
                                     formats={"probability": format_prob})]


def _panels_figure(text: str, label: str, context_text: str, unit: str, k: int) -> Figure:
    """Bars of the next unit after the context's last n − 1 units, one panel per n."""
    model = counted(text, unit)
    units, panels = units_of(context_text, unit), []
    for n in range(1, MAX_N + 1):
        context = _context_of(units, n)
        found, counts = model.next_counts(context) if context is not None else ([], np.zeros(0))
        where = _("no context") if n == 1 else "—" if context is None else short(_quoted(context, unit), 24)
        panels.append((f"n = {n}", where, [shown(u) for u in found[:k]], counts[:k] / max(1, counts.sum()),
                       _("context too short") if context is None else _("never seen")))
    title = (_("Next letter for n = 1 … {max_n} after “{context}” · {label}") if unit == "letter" else
             _("Next word for n = 1 … {max_n} after “{context}” · {label}")).format(
        max_n=MAX_N, context=esc(_tail(context_text, 40)), label=esc(label))
    return Figure(f"ngram_next_{unit}s", next_unit_panels(panels, title))


def next_units(lm, t: Trace, text: str, label: str, n: int, k: int) -> View:
    """Next letter and next word after the context (t.prompt: the typed context or the sidebar prompt)
    for the order-n models, GPT-2's next token beside them, then every n as bars."""
    context_text = t.prompt
    if n == 1:
        how = _("With n = 1 there is no context: the tables are how often each letter and word occurs.")
    elif n == 2:
        how = _("The {n}-gram models look only at its last letter (word) and count what followed them in the text; "
                "the probability is count / total. No smoothing: what the text never has gets no probability.")
    else:
        how = _("The {n}-gram models look only at its last {k} letters (words) and count what followed them in the "
                "text; the probability is count / total. No smoothing: what the text never has gets no probability.")
    return View([
        Text(_("Context: “{context}”. {how}").format(context=md(_tail(context_text, 160)),
                                                    how=how.format(n=n, k=n - 1))),
        Row([_table_column(text, context_text, "letter", n, k), _table_column(text, context_text, "word", n, k),
             _gpt2_column(lm, t, k)]),
        Text(_("Below, every n at once: the bars grow more certain with each letter of context, until the context "
               "is one the text never has (“never seen”).")),
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
        Text(_("How often each letter occurs: the whole of the n = 1 letter model. Wolfram's essay starts here.")),
        Figure("ngram_letter_freq", frequency_bars(labels, singles[order] / max(1, singles.sum()), singles[order],
                                                   _("How often each letter occurs · {label}").format(
                                                       label=esc(label)))),
        Text(_("Which letter follows which: the n = 2 letter model. Each row is a letter, and its colours the "
               "probability of each next letter (a row sums to 100%): after q comes u, and ␣ (a word ends) follows "
               "most letters often. Hover a cell for the probability and the count.")),
        Figure("ngram_pairs", pair_heatmap(labels, probs[np.ix_(order, order)], counts[np.ix_(order, order)],
                                           _("Next letter after each letter (2-grams) · {label}").format(
                                               label=esc(label)))),
    ])

