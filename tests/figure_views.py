"""Every figure of every view, built by calling the recipes as the pages do, for the figure
invariants (tests/test_figure_invariants.py) and the screenshot script's cross-checks.

`all_views(lm, t, t2)` -> {"page · view": View}: short prompts, every recipe that returns a View
of figures or tables, with the settings a page opens on. Long jobs (scans, patching, the
contribution graph) run here, on the small models the tests use.
"""
from __future__ import annotations

from core.embeddings import EXAMPLE_WORD_GROUPS, parse_groups, split_words
from core.interventions import head_ablation_scan, patch
from recipes import (
    attention,
    embeddings,
    experiments,
    generation,
    next_token,
    ngrams,
    prediction,
    steering,
    weights,
)

PROMPT = "In the beginning God created the heaven and the earth. And the earth was"
SECOND = "In the beginning God created the heaven and the water. And the earth was"
NGRAM_TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
              "and darkness was upon the face of the deep. ") * 3


def all_views(lm, t, t2) -> dict:
    """'page · view' -> View, for model `lm`, trace `t` of PROMPT and `t2` of SECOND (same length)."""
    t_prompt, last = t, t.n_tokens - 1
    layer, head = min(1, lm.n_layer - 1), 0
    v = {}
    v["next · summary"] = next_token.summary(lm, t)
    v["next · top-k"] = next_token.top_k(lm, t, 10)
    v["next · rank"] = next_token.rank(lm, t)
    v["next · surprisal"] = next_token.surprisal(lm, t)
    v["next · tokenization"] = next_token.tokenization(lm, t)

    summaries = attention.summaries_job(lm, t).run(lambda L: None)
    v["attention · atlas"] = attention.atlas(lm, t, "previous", scores=summaries.get("previous")
                                             if isinstance(summaries, dict) else None)
    v["attention · layer heads"] = attention.layer_heads(lm, t, layer, "stretch")
    v["attention · one head"] = attention.one_head(lm, t, layer, head, "stretch", True)
    v["attention · across layers"] = attention.across_layers(lm, t, head, "stretch", summaries)
    v["attention · token focus"] = attention.focus(lm, t, t.n_tokens // 2, None)

    v["embeddings · prompt"] = embeddings.prompt_embeddings(lm, t, 0)
    v["embeddings · positions"] = embeddings.positions(lm)
    v["embeddings · word vectors"] = embeddings.word_table(lm, split_words("cat, dog, chair", limit=12), True)
    v["embeddings · neighbours"] = embeddings.neighbours(lm, "cat", True)
    groups = tuple(parse_groups(EXAMPLE_WORD_GROUPS))
    v["embeddings · meaning space pca"] = embeddings.meaning_space(lm, groups, True, "pca", 2)
    v["embeddings · in context"] = embeddings.in_context(lm, t, layer, True)

    s = weights.select(lm, "W_O", 0, "all")
    v["weights · matrix"] = weights.matrix(lm, s)
    v["weights · smoothed"] = weights.smoothed(s, weights.window_range(s)[1])
    v["weights · across blocks"] = weights.across_blocks(lm, s, False)
    v["weights · all parameters"] = weights.all_parameters(lm)
    v["weights · spectrum"] = weights.spectrum_view(s)

    top = prediction.typed_token(lm, t, last, "").values
    v["prediction · lens"] = prediction.lens(lm, t, last, prediction.lens_start(t, last), "top", top["target"])
    v["prediction · attribution"] = prediction.attribution(lm, t, last, top["target"], top["name"], "")
    v["prediction · neurons"] = prediction.neurons(lm, t, layer, last, 0)
    v["prediction · head"] = prediction.head(lm, t, layer, head, last, top["target"], top["name"])
    v["prediction · graph"] = prediction.graph(lm, t, last, 0.04)

    target = int(t.top_ids[-1, 0])
    if t.n_tokens != t2.n_tokens:  # comparisons position by position need the same length
        t, t2 = experiments.padded(lm, t, t2)
    v["experiments · knock out"] = experiments.knock_out(lm, t, [(layer, head)], [0], "", "zero")
    v["experiments · scan"] = experiments.scan(lm, t, head_ablation_scan(lm, t, target, mode="zero"), target)
    v["experiments · two prompts"] = experiments.two_prompts(lm, t, t2)
    v["experiments · pattern difference"] = experiments.pattern_difference(lm, t, t2, layer, head)
    v["experiments · patching resid"] = experiments.patching(lm, t, patch(lm, t, t2, "resid"), "resid")
    v["experiments · patching head"] = experiments.patching(lm, t, patch(lm, t, t2, "head"), "head")

    t = t_prompt
    v["generation · temperature"] = generation.temperatures(lm, t, [0.5, 1.0, 2.0], 5)

    v["ngrams · samples"] = ngrams.samples(NGRAM_TEXT, 0)
    v["ngrams · next units"] = ngrams.next_units(lm, t, NGRAM_TEXT, "Genesis", 2, 5)
    v["ngrams · letters"] = ngrams.letter_statistics(NGRAM_TEXT, "Genesis")

    plain = steering.plain_trace(lm, t, steering.steered_prompt(lm, t))
    vec = steering.make_vector(lm, plain, "pair", {"a": " Jesus", "b": " Moses"}, layer)
    st = steering.steer(lm, t, plain, vec, layer, 4.0).values.get("steer")
    if st is not None:
        v["steering · next token"] = steering.next_token(lm, t, plain, st)
        v["steering · lens"] = steering.lens(lm, t, plain, st, steering.lens_start(plain))
    return v
