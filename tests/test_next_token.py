"""Next-token numbers and figures against direct computations."""
from __future__ import annotations

import numpy as np

from core import trace
from core.next_token import prompt_perplexity, rank_curve
from recipes.next_token import tokenization_table, top_k_table
from ui.shell import md_escape
from viz.common import esc, format_prob
from viz.next_token import rank_plot, surprisal_strip, top_k_bars


def test_top_k_table_is_the_sorted_distribution(tiny_lm):
    t = trace(tiny_lm, "hello hello hello bye")
    table = top_k_table(tiny_lm, t, 7)
    order = np.argsort(-t.next_probs, kind="stable")[:7]
    np.testing.assert_array_equal(table["id"], order)
    np.testing.assert_allclose(table["probability"], t.next_probs[order])
    np.testing.assert_allclose(table["logit"], t.next_logits[order])
    assert table["rank"].tolist() == list(range(1, 8))
    p = t.next_probs.astype(np.float64)
    np.testing.assert_allclose(-(p * np.log2(p)).sum(), t.entropy[-1], atol=1e-3)  # entropy, from the probabilities


def test_prompt_perplexity_is_transformers_loss_exponentiated(tiny_lm):
    """Oracle: transformers' own language-model loss (mean nats over the predicted tokens)."""
    import torch

    t = trace(tiny_lm, "The cat sat on the mat")
    ids = torch.tensor([t.token_ids.tolist()])
    with torch.inference_mode():
        loss = tiny_lm.model(ids, labels=ids).loss.item()
    np.testing.assert_allclose(prompt_perplexity(t), np.exp(loss), rtol=1e-4)


def test_rank_curve_samples_the_exact_sorted_probabilities():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(50_257) * 0.1)
    ranks, probs = rank_curve(p)
    exact = np.sort(p)[::-1]
    assert ranks[0] == 1 and ranks[-1] == 50_257 and np.all(np.diff(ranks) > 0)
    assert len(ranks) <= 1_500
    np.testing.assert_array_equal(probs, exact[ranks - 1])
    np.testing.assert_array_equal(ranks[:100], np.arange(1, 101))


def test_rank_plot_reference_line_is_one_over_rank():
    ranks = np.array([1, 2, 4, 8])
    fig = rank_plot(ranks, np.array([0.4, 0.2, 0.1, 0.05]), "t")
    np.testing.assert_allclose(fig.data[1].y, 0.4 / ranks)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_bars_keep_repeated_tokens_apart_and_escape_them():
    fig = top_k_bars(["␣hello", "␣hello", "<b>"], np.array([0.5, 0.3, 0.2]), "t")
    assert list(fig.data[0].y) == [1, 2, 3]
    assert list(fig.layout.yaxis.ticktext) == ["␣hello", "␣hello", "&lt;b&gt;"]


def test_surprisal_strip_wraps_tokens_in_order():
    tokens = [f"t{i}" for i in range(30)]
    s = np.arange(30, dtype=float)
    s[0] = np.nan
    fig = surprisal_strip(tokens, s, "t", per_row=8)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (4, 8)
    np.testing.assert_array_equal(z.ravel()[1:30], s[1:])
    assert np.isnan(z.ravel()[0]) and np.isnan(z.ravel()[30:]).all()
    assert fig.data[0].text[3][5] == "t29"
    first = np.asarray(fig.data[1].z, dtype=float)  # the grey cell of the unpredicted first token
    assert first[0, 0] == 0 and np.isnan(first.ravel()[1:]).all() and fig.data[1].text[0][0] == "t0"
    assert "first token" in fig.data[1].customdata[0][0]
    assert fig.layout.yaxis.scaleanchor == "x"  # cells keep their shape at any export size
    assert np.asarray(surprisal_strip(tokens[:5], s[:5], "t").data[0].z).shape == (1, 5)  # short: one full row


def test_text_is_escaped_for_plotly_and_markdown():
    assert esc("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    shown = md_escape("**bold** _it_ `code` [a](b) <b>")
    assert "**" not in shown.replace("\\*", "") and "\\_it\\_" in shown and "\\<b\\>" in shown


def test_format_prob():
    """One way to write a probability, readable from 0.3 to 3e-7: never 0.0000 or 1.7e-04."""
    values = (0.42, 0.3, 0.031, 0.0027, 1.5e-4, 2.1e-5, 3e-7, 0.0)
    assert [format_prob(p) for p in values] == ["42%", "30%", "3.1%", "0.27%", "0.015%", "2.1×10⁻⁵", "3.0×10⁻⁷", "0"]


def test_tokenization_table_gives_each_tokens_bytes_and_the_characters_split_over_tokens(tiny_lm):
    prompt = "AI 你好 😀 <b>x</b>\n"
    t = trace(tiny_lm, prompt)
    table = tokenization_table(tiny_lm, t)
    assert list(table["id"]) == tiny_lm.encode(prompt) and list(table["token"]) == list(t.tokens)
    pieces = [bytes.fromhex(h) for h in table["bytes"]]
    assert b"".join(pieces) == prompt.encode("utf-8")  # the tokens' bytes are the prompt, in order
    # oracle: each character's byte span in the prompt, mapped to tokens by cumulative length
    ends = np.cumsum([len(p) for p in pieces])
    split = {}
    offset = 0
    for ch in prompt:
        n = len(ch.encode("utf-8"))
        first, last = np.searchsorted(ends, offset, "right"), np.searchsorted(ends, offset + n - 1, "right")
        if first != last:
            split[ch] = (first, last)
        offset += n
    assert split, "the tiny tokenizer should split at least the emoji"
    for ch, (first, last) in split.items():
        for i in range(first, last + 1):
            assert f"{ch} = tokens {first}–{last}" in table["character split over tokens"][i]
    assert (table["character split over tokens"] != "").sum() == sum(b - a + 1 for a, b in split.values())
