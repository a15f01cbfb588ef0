"""N-gram models (core.ngrams) against oracles that count by hand, and the n-gram page as Streamlit runs it.

The oracles are independent of the sorted index core.ngrams uses: a plain Counter over every
window of the units, and texts whose statistics are known exactly ("abab…": b always follows a)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from core import ngrams as ng
from tests import apptest

NGRAMS_PAGE = "pages/7_N-grams.py"
STORY = ("The cat sat on the mat. The cat ate the rat. A dog sat on the log, and the dog ate the cat's hat! "
         "Then the rat ran to the mat, and the cat ran after the rat.")


def oracle(units: list[str], n: int) -> dict[tuple, Counter]:
    """context (n − 1 units) -> Counter of the unit after it, by looking at every window."""
    table: dict[tuple, Counter] = {}
    for i in range(len(units) - n + 1):
        table.setdefault(tuple(units[i:i + n - 1]), Counter())[units[i + n - 1]] += 1
    return table


def letters(text: str) -> list[str]:
    """The letter units by hand: lowercase a–z, other runs one space, outer spaces dropped."""
    out = []
    for c in text.lower():
        c = c if "a" <= c <= "z" else " "
        if not (c == " " and (not out or out[-1] == " ")):
            out.append(c)
    return out[:-1] if out and out[-1] == " " else out


# ---- reading a text ---------------------------------------------------------------------------------
def test_letters_are_lowercase_a_to_z_and_single_spaces():
    assert ng.letters_of("Hello,  World!\n42 café") == "hello world cafe"
    assert ng.count_ngrams("  Hi, there!  ", "letter").vocab == tuple(ng.ALPHABET)
    assert "".join(ng.count_ngrams("  Hi, there!  ", "letter").vocab[i] for i in
                   ng.count_ngrams("  Hi, there!  ", "letter").ids) == "hi there"


def test_words_are_lowercase_runs_of_letters():
    assert ng.words_of("Father's house, 12 sons; NAÏVE") == ["father", "s", "house", "sons", "naive"]
    assert ng.words_of("人工智能最好的地方") == [] and ng.letters_of("人工智能").strip() == ""


# ---- counts and probabilities against the oracle -------------------------------------------------------
def test_abab_text_gives_b_after_a_with_certainty():
    model = ng.count_ngrams("abababababab", "letter")
    assert model.next_counts(["a"]) == (["b"], pytest.approx(np.array([6])))
    units, counts = model.next_counts(["b"])
    assert units == ["a"] and counts.tolist() == [5]  # the last b ends the text: nothing follows it
    assert model.next_counts([]) == (["a", "b"], pytest.approx(np.array([6, 6])))
    assert model.next_counts(["b", "b"])[0] == []  # never seen: no continuation, no smoothing
    assert model.next_counts(["a", "b", "a", "b"])[0] == ["a"]


@pytest.mark.parametrize("unit", ng.UNITS)
@pytest.mark.parametrize("n", range(1, ng.MAX_N + 1))
def test_every_context_counts_what_a_plain_counter_counts(unit, n):
    model = ng.count_ngrams(STORY, unit)
    units = letters(STORY) if unit == "letter" else ng.words_of(STORY)
    expected = oracle(units, n)
    assert sum(sum(c.values()) for c in expected.values()) == model.n_grams(n)
    for context, counter in expected.items():
        found, counts = model.next_counts(list(context))
        assert dict(zip(found, counts.tolist())) == dict(counter), (context, found)
        assert counts.tolist() == sorted(counts.tolist(), reverse=True)  # likeliest first
        assert (counts / counts.sum()).sum() == pytest.approx(1.0)  # a context's probabilities sum to 1


def test_bundled_text_probabilities_sum_to_one_and_match_the_oracle():
    text = ng.bundled_text()
    assert 100_000 < len(text.encode()) < 250_000 and "In the beginning God created" in text
    assert not any(c.isdigit() for c in text)  # verse numbers stripped
    words = ng.count_ngrams(text, "word")
    expected = oracle(ng.words_of(text), 3)
    for context in [("and", "god"), ("unto", "the"), ("the", "lord")]:
        found, counts = words.next_counts(list(context))
        assert dict(zip(found, counts.tolist())) == dict(expected[context])
        assert (counts / counts.sum()).sum() == pytest.approx(1.0)


def test_a_pair_counts_row_is_what_followed_that_letter():
    model = ng.count_ngrams(STORY, "letter")
    pairs = model.pair_counts()
    expected = oracle(letters(STORY), 2)
    for i, a in enumerate(ng.ALPHABET):
        assert {ng.ALPHABET[j]: int(c) for j, c in enumerate(pairs[i]) if c} == dict(expected.get((a,), {}))


# ---- samples ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ng.UNITS)
@pytest.mark.parametrize("n", range(1, ng.MAX_N + 1))
def test_samples_use_only_ngrams_of_the_text_and_repeat_with_the_seed(unit, n):
    model = ng.count_ngrams(STORY, unit)
    units = letters(STORY) if unit == "letter" else ng.words_of(STORY)
    seen = {tuple(units[i:i + n]) for i in range(len(units) - n + 1)}
    runs = model.sample(n, 300, seed=7)
    assert sum(len(r) for r in runs) == 300
    for run in runs:
        assert all(tuple(run[i:i + n]) in seen for i in range(len(run) - n + 1)), run
    assert model.sample(n, 300, seed=7) == runs
    assert model.sample(n, 300, seed=8) != runs or n == ng.MAX_N and unit == "word"


def test_a_unigram_sample_follows_the_letter_frequencies():
    model = ng.count_ngrams("aaab", "letter")
    drawn = Counter(u for run in model.sample(1, 4000, seed=0) for u in run)
    assert drawn["a"] / 4000 == pytest.approx(0.75, abs=0.03) and set(drawn) == {"a", "b"}


def test_abab_samples_alternate():
    runs = ng.count_ngrams("abababab", "letter").sample(2, 50, seed=3)
    text = "".join("".join(r) for r in runs)
    assert "aa" not in text and "bb" not in text


def test_a_dead_end_starts_a_new_run():
    model = ng.count_ngrams("abc", "letter")  # "bc" ends the text: nothing follows c
    runs = model.sample(2, 10, seed=0)
    assert sum(len(r) for r in runs) == 10 and len(runs) > 1
    assert all("".join(r) in "abc" for r in runs)


def test_a_text_shorter_than_n_has_no_sample():
    model = ng.count_ngrams("to be", "word")
    assert model.sample(3, 10, seed=0) == [] and model.n_grams(3) == 0
    assert model.sample(2, 4, seed=0) == [["to", "be"], ["to", "be"]]


def test_a_huge_text_is_cut():
    text, cut = ng.fit_text("ab" * (ng.MAX_CHARS // 2 + 15))
    assert len(text) == ng.MAX_CHARS and cut == 30


# ---- the page -----------------------------------------------------------------------------------------
def _texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "code", "subheader")
                     for e in getattr(at, kind))


def assert_top_rows(table, column: str, expected: Counter) -> None:
    """The table's rows are the most frequent continuations, each with its own count, likeliest first."""
    assert all(expected[u] == c for u, c in zip(table[column], table["count"])), table
    assert table["count"].tolist() == sorted(expected.values(), reverse=True)[:len(table)]
    assert table["probability"].tolist() == pytest.approx((table["count"] / sum(expected.values())).tolist())


def _open(state: dict | None = None, prompt: str | None = None):
    return apptest.open_page(NGRAMS_PAGE, prompt, state)


def test_page_draws_samples_tables_and_figures(tiny_env):
    at = _open({"ngram_n": 3}, prompt="And God said unto the")
    assert at.title[0].value == "Before GPT-2: n-grams"
    assert len(at.code) == 10  # letters and words, n = 1 … 5
    at.session_state["ngram_view"] = "Next letter and word"
    at.run()
    assert not at.exception
    assert len(at.dataframe) == 3  # next letter, next word, GPT-2's next token
    letter, word, gpt2 = [df.value for df in at.dataframe]
    assert list(word.columns) == ["rank", "word", "count", "probability"] and len(word) == 10
    assert_top_rows(word, "word", oracle(ng.words_of(ng.bundled_text()), 3)[("unto", "the")])
    assert_top_rows(letter, "letter", Counter({("␣" if u == " " else u): c for u, c in
                                               oracle(letters(ng.bundled_text()), 3)[("h", "e")].items()}))
    assert list(gpt2.columns) == ["rank", "token", "probability"] and len(gpt2) == 10
    assert len(at.get("plotly_chart")) == 2
    at.session_state["ngram_view"] = "Letter statistics"
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_a_typed_context_is_used_by_both_models(tiny_env):
    at = _open({"ngram_view": "Next letter and word", "ngram_context": "unto the Lord", "ngram_n": 2})
    letter, word, _ = [df.value for df in at.dataframe]
    assert "“d” occurs" in _texts(at) and "“lord” occurs" in _texts(at)
    assert_top_rows(word, "word", oracle(ng.words_of(ng.bundled_text()), 2)[("lord",)])
    assert_top_rows(letter, "letter", Counter({("␣" if u == " " else u): c for u, c in
                                               oracle(letters(ng.bundled_text()), 2)[("d",)].items()}))


def test_a_pasted_text_is_counted(tiny_env):
    at = _open({"ngram_source": "yours"})
    assert "Paste a text" in _texts(at) and not at.get("plotly_chart") and not at.code
    at.text_area(key="ngram_text").input("abababab abab").run()
    assert not at.exception
    assert "abab" in "".join(c.value for c in at.code[:5]).replace("␣", "")
    at.session_state["ngram_view"] = "Next letter and word"
    at.session_state["ngram_context"] = "a"
    at.session_state["ngram_n"] = 2
    at.run()
    letter = at.dataframe[0].value
    assert letter["letter"].tolist() == ["b"] and letter["probability"].tolist() == [1.0]
    assert "“a” never occurs in the text" in _texts(at)  # the word "a": the text's words are abababab and abab


@pytest.mark.parametrize("text, message", [
    ("", "Paste a text"),
    ("   \n ", "Paste a text"),
    ("人工智能最好的地方在于它能够", "need English letters"),
])
def test_unusable_text_gives_a_message_and_no_exception(tiny_env, text, message):
    at = _open({"ngram_source": "yours", "ngram_text": text})
    assert not at.exception and message in _texts(at)
    assert not at.get("plotly_chart") and not at.dataframe


def test_a_short_context_says_so(tiny_env):
    at = _open({"ngram_view": "Next letter and word", "ngram_context": "in the", "ngram_n": 4})
    assert not at.exception and "The context has 2 words; the 4-gram model reads the last 3" in _texts(at)
    assert len(at.dataframe) == 2  # letters ("e␣th" is seen) and GPT-2


def test_a_short_text_says_which_n_it_cannot_count(tiny_env):
    at = _open({"ngram_source": "yours", "ngram_text": "Hi you", "ngram_context": "zzz hi you there", "ngram_n": 5})
    assert not at.exception
    assert "no run of 3 to count" in _texts(at)  # two words: no word 3-grams
    at.session_state["ngram_view"] = "Next letter and word"
    at.run()
    assert not at.exception and "never occurs" in _texts(at)


def test_an_unseen_context_and_a_chinese_prompt_say_so(tiny_env):
    at = _open({"ngram_view": "Next letter and word", "ngram_n": 5}, prompt="人工智能最好的地方在于它能够")
    assert not at.exception
    assert "The context has no letters a–z" in _texts(at) and "no words of the letters a–z" in _texts(at)
    assert len(at.dataframe) == 1  # GPT-2's table only: it reads any text


def test_a_huge_paste_is_cut_with_a_message(tiny_env):
    at = _open({"ngram_source": "yours", "ngram_text": "ab" * (ng.MAX_CHARS // 2 + 15),
                "ngram_view": "Letter statistics"})
    assert not at.exception and "leave out the other 30" in _texts(at)


def test_a_pasted_text_is_kept_while_the_bundled_one_or_another_page_is_shown(tiny_env):
    at = _open({"ngram_source": "yours"})
    at.text_area(key="ngram_text").input("a cat and a dog").run()
    at.radio(key="ngram_source").set_value("genesis").run()
    at.switch_page(apptest.ATTENTION).run()
    at.switch_page(NGRAMS_PAGE).run()
    at.radio(key="ngram_source").set_value("yours").run()
    assert not at.exception and at.text_area(key="ngram_text").value == "a cat and a dog"
    assert "15 characters" in _texts(at)
