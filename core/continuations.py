"""Reading what generation made: its text, the phrases it repeats, where two runs part, and a
run's steps as the arrays the Generation page draws and tabulates (the tables themselves are
built by recipes.generation).

Dimension names: step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .model import LoadedModel
from .sampling import Step
from .tokens import display_tokens


def decode_text(lm: LoadedModel, ids: Sequence[int]) -> str:
    """The text of token ids (partial UTF-8 bytes show as �). Untrusted: show it as plain text."""
    with lm.tokenizer_lock:
        return lm.tokenizer.decode([int(i) for i in ids])


def repeated_ngram_mask(ids: Sequence[int], n: int = 4) -> np.ndarray:
    """[step] bool: True for tokens inside an n-gram that already occurred earlier in `ids` [step].

    Greedy decoding falls into loops (the same phrase again and again); this marks them."""
    mask = np.zeros(len(ids), dtype=bool)
    seen: set[tuple[int, ...]] = set()
    for i in range(len(ids) - n + 1):
        gram = tuple(ids[i : i + n])
        if gram in seen:
            mask[i : i + n] = True
        else:
            seen.add(gram)
    return mask


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first step where two continuations differ (None if one starts the other)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


@dataclass(frozen=True)
class StepsView:
    """What the page shows of a run's steps, as arrays [step]."""

    tokens: list[str]  # the chosen tokens, shown as bytes (core.tokens.display_tokens)
    probs: np.ndarray  # under the model's own distribution
    sample_probs: np.ndarray | None  # under the one they were drawn from (None for greedy)
    entropy_bits: np.ndarray
    loops: np.ndarray  # bool: inside an n-gram seen earlier


def steps_view(lm: LoadedModel, steps: Sequence[Step], greedy: bool, loop_n: int = 4) -> StepsView:
    """The steps of one sampled or greedy run as arrays [step]; `loops` marks tokens inside a
    `loop_n`-token phrase seen earlier in the run."""
    ids = [s.token_id for s in steps]
    return StepsView(display_tokens(lm, ids), np.array([s.prob for s in steps]),
                     None if greedy else np.array([s.sample_prob for s in steps]),
                     np.array([s.entropy_bits for s in steps]), repeated_ngram_mask(ids, loop_n))


def alternatives(lm: LoadedModel, steps: Sequence[Step], k: int = 5) -> tuple[list[list[str]], np.ndarray]:
    """GPT-2's k likeliest tokens at each step (k cut to what every step recorded): (their display
    text [step][k], their probabilities [step, k])."""
    k = min(k, min((len(s.top_ids) for s in steps), default=0))
    shown = display_tokens(lm, [i for s in steps for i in s.top_ids[:k]])
    tokens = [shown[n * k : (n + 1) * k] for n in range(len(steps))]
    return tokens, np.array([s.top_probs[:k] for s in steps], dtype=np.float64).reshape(len(steps), k)
