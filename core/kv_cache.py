"""The model calls generation makes: a prompt read once into transformers' key/value cache
(`DynamicCache`), in chunks that can report progress, then one forward per new position;
and the limits every generator respects (GPT-2's n_ctx positions, end-of-text).

Sampling (core.sampling) and beam search (core.beam) both run through `next_logits`, so a
test or an app that wants to see every generation forward has one function to watch.

Dimension names: batch pos vocab.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Callable, Sequence

import torch
from transformers import DynamicCache

from i18n import _

from .lane import lane
from .model import LoadedModel

MAX_NEW = 200  # the most tokens the app adds in one run
PREFILL_CHUNK = 64  # prompt positions per forward: a long prompt is read in steps that can report progress
PromptProgress = Callable[[int, int], None]  # (positions read, all positions)


def eos_ids(lm: LoadedModel) -> tuple[int, ...]:
    """The end-of-text token ids of the model's generation config (or its config); () if none."""
    eos = lm.model.generation_config.eos_token_id
    if eos is None:
        eos = lm.config.eos_token_id
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))


def max_new_tokens(lm: LoadedModel, n_prompt: int, wanted: int) -> int:
    """`wanted`, cut so that prompt + generated tokens fit GPT-2's n_ctx positions."""
    return max(0, min(wanted, lm.n_ctx - n_prompt))


@lru_cache(maxsize=None)
def _cache_keyword(model_class: type) -> str:
    """transformers 5.x renamed forward's `past_key_values` to `cache`; the old name warns
    (FutureWarning) and goes away in 5.40. Use whichever this version's GPT-2 takes."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def next_logits(lm: LoadedModel, x: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """One forward of x [batch, pos] after what `cache` holds (which it extends): the logits
    [batch, vocab] of each row's last position, float32. Runs on the compute lane (core.lane), so a
    generation step takes its turn with other sessions' work, and holds `lm.forward_lock` for the call only."""

    def forward() -> torch.Tensor:
        with lm.forward_lock, torch.inference_mode():
            out = lm.model(input_ids=x, use_cache=True, logits_to_keep=1, **{_cache_keyword(type(lm.model)): cache})
        return out.logits[:, -1].float()

    return lane().run(None, forward, label=_("Computing the next token's probabilities…"))


def read_prompt_logits(lm: LoadedModel, x: torch.Tensor, cache: DynamicCache,
                       on_prompt: PromptProgress | None) -> torch.Tensor:
    """`next_logits` of a whole prompt x [batch, pos], PREFILL_CHUNK positions per forward, calling
    on_prompt(positions read, all) between forwards (where an app can update a bar, or stop)."""
    n = x.shape[1]
    for start in range(0, n, PREFILL_CHUNK):
        logits = next_logits(lm, x[:, start : start + PREFILL_CHUNK], cache)
        if on_prompt is not None and start + PREFILL_CHUNK < n:
            on_prompt(start + PREFILL_CHUNK, n)
    return logits


def read_prompt(lm: LoadedModel, prompt_ids: Sequence[int],
                on_prompt: PromptProgress | None = None) -> tuple[DynamicCache, torch.Tensor]:
    """The prompt read once, for several runs that start from it: (its key/value cache, the logits
    [1, vocab] after it). `core.sampling.generate_steps(..., prompt_read=...)` copies the cache,
    never changes it."""
    cache = DynamicCache(config=lm.config)
    x = torch.tensor([list(prompt_ids)], dtype=torch.long, device=lm.device)
    return cache, read_prompt_logits(lm, x, cache, on_prompt)
