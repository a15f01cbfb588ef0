"""The Next token page: what GPT-2 predicts after the prompt, the whole distribution by rank,
how surprising each prompt token was, and how the prompt was split into tokens."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from core.next_token import prompt_perplexity, rank_curve, top_k_ids
from core.tokens import characters_across_tokens, display_tokens, token_bytes
from core.trace import Trace
from i18n import N_, _
from viz.common import esc, figure_label, fit_to_column, format_prob
from viz.next_token import rank_plot, surprisal_strip, top_k_bars

from . import Figure, Metric, Row, Text, View, md, translated_table
from .naming import model_name


def top_k_table(lm, t: Trace, k: int = 10) -> pd.DataFrame:
    """The k likeliest next tokens after the prompt: rank, token, id, probability, logit."""
    ids = top_k_ids(t.next_probs, k)
    return pd.DataFrame({
        "rank": np.arange(1, len(ids) + 1),
        "token": display_tokens(lm, ids),
        "id": ids,
        "probability": t.next_probs[ids].astype(np.float64),
        "logit": t.next_logits[ids].astype(np.float64),
    })


def tokenization_table(lm, t: Trace) -> pd.DataFrame:
    """One row per prompt token: position, token as shown, id, its bytes in hex, and, for a
    token that holds part of a character split over several tokens (Chinese, emoji), which
    tokens make that character together."""
    pieces = token_bytes(lm, t.token_ids)
    shared = [""] * len(pieces)
    across = _("{char} = tokens {first}–{last}")
    for ch, first, last in characters_across_tokens(pieces):
        for i in range(first, last + 1):
            note = across.format(char=ch, first=first, last=last)
            shared[i] = note if not shared[i] else f"{shared[i]}; {note}"
    return pd.DataFrame({
        "position": np.arange(len(pieces)),
        "token": list(t.tokens),
        "id": t.token_ids.astype(np.int64),
        "bytes": [" ".join(f"{b:02x}" for b in p) for p in pieces],
        N_("character split over tokens"): shared,  # translated_table translates it
    })


def summary(lm, t: Trace) -> View:
    top1 = top_k_table(lm, t, 1).iloc[0]
    ppl = prompt_perplexity(t)
    return View([Row([
        Metric(_("Tokens in the prompt"), f"{t.n_tokens:,}"),
        Metric(_("Likeliest next token"), md(top1["token"])),  # metric values are Markdown
        Metric(_("Its probability"), format_prob(top1["probability"])),
        Metric(_("Entropy of the next token"), _("{bits:.2f} bits").format(bits=t.entropy[-1]),
               help=_("How spread out the prediction is: 0 bits = certain; log2(50,257) ≈ 15.6 bits = every token "
                      "equally likely.")),
        Metric(_("Prompt perplexity"), "—" if math.isnan(ppl) else f"{ppl:,.1f}",
               help=_("2 to the power of the mean surprisal: on average GPT-2 was as unsure as a choice among this "
                      "many tokens.")),
    ])])


def top_k(lm, t: Trace, k: int) -> View:
    table = top_k_table(lm, t, k)
    return View([Row([
        translated_table("next_topk_table", table, "next-token-table",
                         formats={"probability": format_prob, "logit": "{:.3f}"}),
        Figure("next_topk", fit_to_column(top_k_bars(table["token"].tolist(), table["probability"].to_numpy(),
                                                     _("Top {k} next tokens · {label}").format(
                                                         k=k, label=figure_label(lm.label, t.prompt))), 3 / 5)),
    ], widths=[2, 3])])


def rank(lm, t: Trace) -> View:
    ranks, probs = rank_curve(t.next_probs)
    return View([
        Figure("next_rank", rank_plot(ranks, probs, _("All {n:,} next-token probabilities by rank · {label}").format(
            n=len(t.next_probs), label=figure_label(lm.label, t.prompt)), esc(model_name(lm)))),
        Text(_("A straight line on these axes is a power law. Wolfram's essay shows GPT-2's next-word probabilities "
               "falling off roughly like 1/rank for the first few thousand ranks.")),
    ])


def surprisal(lm, t: Trace) -> View:
    return View([
        Text(_("How surprising was each token?"), "subheader"),
        Text(_("Surprisal = −log₂ p(token | the tokens before it). One bit is a coin flip's worth of surprise. "
               "Blue cells were expected, yellow ones surprising; hover a cell for the exact value.")),
        Figure("next_surprisal", surprisal_strip(list(t.tokens), t.surprisal_bits,
                                                 _("Surprisal per token · {label}").format(
                                                     label=figure_label(lm.label, t.prompt)))),
    ])


def tokenization(lm, t: Trace) -> View:
    return View([
        Text(_("How GPT-2 split the prompt into tokens"), "subheader"),
        Text(_("GPT-2 reads bytes, not letters: each row is one token, with its id in the vocabulary and the bytes it "
               "stands for. A Chinese character or an emoji often takes two or three tokens; the last column names "
               "the tokens that make such a character together.")),
        translated_table("next_tokens_table", tokenization_table(lm, t), "tokenization",
                         height=min(420, 38 + 35 * t.n_tokens)),
    ])
