"""Text generation one token at a time, recording the probability table behind every choice.

GPT-2 only ever adds one token: it reads the text so far, gives every token of the
vocabulary a probability, and one is picked. `generate_steps` does exactly that, with the
key/value cache (core.kv_cache) so each new token costs one forward of one position, and
yields a `Step` per token: the chosen id, its probability under the model's own
distribution and under the distribution it was drawn from (after temperature, top-k,
top-p), the entropy of the model's distribution and its top alternatives.

A run can be picked up where it stopped: `generate_steps(..., resume=ids so far)` goes on to
the same result as a run that was never interrupted, so an app can stop a run, keep what was
made, and continue later.

Randomness comes from a CPU `torch.Generator` seeded per run, which draws one uniform
number per step; the token is then read off the cumulative distribution (inverse CDF).
The random stream is the same on every device, so a seed gives the same text on CPU and
GPU, except in the rare case that the uniform lands within float rounding of a boundary.

Dimension names: pos vocab temperature.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from i18n import _

from . import kv_cache
from .kv_cache import PromptProgress, eos_ids, max_new_tokens
from .model import LoadedModel

TOP_ALTERNATIVES = 10
_LN2 = math.log(2)


@dataclass(frozen=True)
class Decoding:
    """How the next token is picked. top_k = 0 and top_p = 1 switch those filters off;
    temperature 0 (or method "greedy") always takes the likeliest token."""

    method: str = "sample"  # "greedy" or "sample"
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop_at_eos: bool = True

    @property
    def greedy(self) -> bool:
        return self.method == "greedy" or self.temperature <= 0

    def describe(self) -> str:
        if self.greedy:
            return _("greedy (always the likeliest token)")
        parts = [_("temperature {t:g}").format(t=self.temperature)]
        if self.top_k:
            parts.append(f"top-k {self.top_k}")
        if self.top_p < 1:
            parts.append(f"top-p {self.top_p:g}")
        return _("sampling, {settings}, seed {seed}").format(settings=", ".join(parts), seed=self.seed)


@dataclass(frozen=True)
class Step:
    """One generated token and the table it was picked from."""

    index: int  # 0 = the first generated token
    token_id: int
    prob: float  # its probability under the model's own (unmodified) distribution
    sample_prob: float  # its probability under the distribution it was drawn from (1 for greedy)
    rank: int  # 0 = the model's likeliest token
    entropy_bits: float  # of the model's distribution
    n_allowed: int  # how many tokens it could have been (1 greedy, k for top-k, the nucleus for top-p)
    top_ids: tuple[int, ...]  # the model's likeliest tokens, best first
    top_probs: tuple[float, ...]


# ---- one step ---------------------------------------------------------------------------------
def sampling_distribution(logits: torch.Tensor, temperature: float, top_k: int = 0,
                          top_p: float = 1.0) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The distribution a token is drawn from: logits [vocab] / temperature, then top-k, then
    top-p (transformers' order). Returns (candidate ids [n] likeliest first, or None for the whole
    vocab in its own order; probs [n] or [vocab]).

    top-p keeps the likeliest tokens until their mass reaches top_p (at least one)."""
    scaled = logits / temperature
    if top_k and top_k < scaled.shape[-1]:
        vals, cand = scaled.topk(top_k)  # sorted, likeliest first
    elif top_p < 1.0:
        vals, cand = scaled.sort(descending=True)
    else:
        return None, torch.softmax(scaled, dim=-1)
    probs = torch.softmax(vals, dim=-1)
    if top_p < 1.0:
        mass_before = probs.cumsum(0) - probs
        n = max(1, int((mass_before < top_p).sum()))
        cand, probs = cand[:n], probs[:n] / probs[:n].sum()
    return cand, probs


def choose(logits: torch.Tensor, decoding: Decoding, rng: torch.Generator, top: int = TOP_ALTERNATIVES,
           index: int = 0) -> Step:
    """Pick the next token from logits [vocab] and record the table behind the choice (its `top`
    likeliest alternatives). A sampled pick draws one uniform from `rng` and reads the token off
    the cumulative sampling distribution; a greedy one draws nothing."""
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).sum() / _LN2
    top_probs, top_ids = probs.topk(min(top, probs.shape[-1]))
    if decoding.greedy:
        token = logits.argmax()
        sample_prob, n_allowed = torch.ones((), device=logits.device), 1
    else:
        cand, q = sampling_distribution(logits, decoding.temperature, decoding.top_k, decoding.top_p)
        u = float(torch.rand((), generator=rng))
        cdf = q.cumsum(0)
        j = torch.searchsorted(cdf, cdf[-1:] * u, right=True).clamp_(max=len(q) - 1)[0]
        token = j if cand is None else cand[j]
        sample_prob, n_allowed = q[j] / cdf[-1], len(q)
    rank = (probs > probs[token]).sum()
    scalars = torch.stack([token.float(), probs[token], sample_prob, entropy, rank.float()]).tolist()
    return Step(index=index, token_id=int(scalars[0]), prob=scalars[1], sample_prob=scalars[2], rank=int(scalars[4]),
                entropy_bits=scalars[3], n_allowed=n_allowed, top_ids=tuple(top_ids.tolist()),
                top_probs=tuple(top_probs.tolist()))


# ---- runs -------------------------------------------------------------------------------------
def generate_steps(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decoding: Decoding = Decoding(),
                   top: int = TOP_ALTERNATIVES, resume: Sequence[int] = (), on_prompt: PromptProgress | None = None,
                   prompt_read: tuple[DynamicCache, torch.Tensor] | None = None) -> Iterator[Step]:
    """Continue `prompt_ids` by up to `n_new` tokens, yielding one Step per token.

    Stops early at n_ctx, and at end-of-text if `decoding.stop_at_eos` (that token is yielded).
    `resume`: tokens this run already made (the start of an earlier run with the same settings);
    generation goes on after them, yielding steps len(resume)+1 … n_new, the same as a run that
    was never stopped (the seeded random stream is advanced past the draws already used).
    `on_prompt(read, all)` is called while a long prompt is read (core.kv_cache.read_prompt_logits);
    `prompt_read` (from core.kv_cache.read_prompt) skips reading it, for a run that starts from the prompt.
    Each model call holds `lm.forward_lock`, released between steps so other sessions interleave.
    """
    n_new = max_new_tokens(lm, len(prompt_ids), n_new)
    stop = set(eos_ids(lm)) if decoding.stop_at_eos else set()
    done = [int(i) for i in resume]
    if len(done) >= n_new or (done and done[-1] in stop):
        return
    rng = torch.Generator().manual_seed(int(decoding.seed))  # CPU: the same stream on every device
    if not decoding.greedy:
        for _step in done:  # one uniform per sampled step, drawn one at a time as `choose` does
            torch.rand((), generator=rng)
    k = min(top, lm.d_vocab)
    x = torch.tensor([list(prompt_ids) + done], dtype=torch.long, device=lm.device)  # (1, pos)
    cache, logits = DynamicCache(config=lm.config), None
    if prompt_read is not None and not done:
        with torch.inference_mode():
            cache, logits = copy.deepcopy(prompt_read[0]), prompt_read[1]
    for i in range(len(done), n_new):
        if i > len(done):
            logits = kv_cache.next_logits(lm, x, cache)
        elif logits is None:
            logits = kv_cache.read_prompt_logits(lm, x, cache, on_prompt)
        with torch.inference_mode():
            step = choose(logits[0], decoding, rng, k, i)
        yield step
        if step.token_id in stop:
            return
        x = torch.tensor([[step.token_id]], dtype=torch.long, device=lm.device)


def generate_ids(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decoding: Decoding = Decoding(),
                 top: int = TOP_ALTERNATIVES) -> list[Step]:
    """`generate_steps` to the end, as a list."""
    return list(generate_steps(lm, prompt_ids, n_new, decoding, top))


def greedy_and_samples(temperature: float, seeds: Sequence[int]) -> list[Decoding]:
    """Greedy, then one sample per seed at `temperature`; none stops at end-of-text, so all have the same length."""
    return [Decoding(method="greedy", stop_at_eos=False)] + [
        Decoding(temperature=temperature, seed=int(s), stop_at_eos=False) for s in seeds]


def continue_runs(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decodings: Sequence[Decoding],
                  done: Sequence[Sequence[int]] = (), on_prompt: PromptProgress | None = None,
                  ) -> Iterator[tuple[int, int]]:
    """Several continuations of one prompt, one run after another: yields (run, token id).
    `done[r]`: the tokens run r already has (from an earlier, stopped call); it goes on from there.
    The prompt is read once for all the runs that start from it."""
    if max_new_tokens(lm, len(prompt_ids), n_new) == 0:
        return
    read = None
    for r, decoding in enumerate(decodings):
        have = done[r] if r < len(done) else ()
        if not have and read is None:
            read = kv_cache.read_prompt(lm, prompt_ids, on_prompt)
        for step in generate_steps(lm, prompt_ids, n_new, decoding, top=1, resume=have, on_prompt=on_prompt,
                                   prompt_read=None if have else read):
            yield r, step.token_id


def runs_from_pairs(pairs: Sequence[tuple[int, int]], n_runs: int) -> list[list[int]]:
    """The (run, token id) pairs `continue_runs` yielded, as one token list per run."""
    runs: list[list[int]] = [[] for _ in range(n_runs)]
    for r, token in pairs:
        runs[r].append(token)
    return runs


# ---- temperature --------------------------------------------------------------------------------
def temperature_sweep(logits: torch.Tensor | np.ndarray, temperatures: Sequence[float],
                      k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of the model's k likeliest tokens at each temperature.

    logits [vocab]. Returns (ids [k], probs [temperature, k]); temperature 0 puts all the mass on the first."""
    logits = torch.tensor(np.array(logits, dtype=np.float32))  # a copy: trace arrays are read-only
    ids = logits.topk(min(k, logits.shape[-1])).indices
    rows = []
    for t in temperatures:
        if t <= 0:
            row = torch.zeros(len(ids))
            row[0] = 1.0
        else:
            row = torch.softmax(logits / t, dim=-1)[ids]
        rows.append(row)
    return ids.numpy(), torch.stack(rows).numpy()


def entropy_at_temperatures(logits: torch.Tensor | np.ndarray, temperatures: Sequence[float]) -> np.ndarray:
    """[temperature] entropy in bits of softmax(logits [vocab] / T) over the whole vocab (0 at T = 0)."""
    logits = torch.tensor(np.array(logits, dtype=np.float64))
    out = []
    for t in temperatures:
        if t <= 0:
            out.append(0.0)
            continue
        logp = torch.log_softmax(logits / t, dim=-1)
        out.append(float(-(logp.exp() * logp).sum() / _LN2))
    return np.array(out)
