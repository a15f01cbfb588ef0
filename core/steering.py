"""Steering: add a direction to the residual stream before a block and watch GPT-2 write differently.

Activation addition (Turner et al. 2023, "Activation Addition: Steering Language Models Without
Optimization"): the residual stream before block L of prompt A minus that of prompt B (both
read with GPT-2's <|endoftext|> in front, as TransformerLens reads them, the shorter padded on
the right with " " tokens, as the paper's code does), times a coefficient, added to the first
positions of another prompt's residual before block L. Also: a mean difference over two lists
of prompts (added at every position), a token's unembedding direction, what one head writes,
or an SAE feature's direction (core.features.steer_features clamps a feature instead).

Every run goes through the one block (core.arch) with the addition as an `Edit`: the shared
model is never changed, and each run is its own. `generate` keeps each block's keys and values
so a token costs one position's work, steered or not.

Dimension names: pos d_model vocab.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from i18n import _

from .arch import Edit, block
from .cache import ByteBoundedCache
from .lane import lane
from .model import LoadedModel
from .trace import PromptError, trace_ids

MAX_COEFFICIENT = 1e4  # larger coefficients are clamped: the residual's norm is ~1e2, float32 keeps ~7 digits


class SteeringError(ValueError):
    """A steering request that cannot run as asked; the message is for a person."""


def _ids(lm: LoadedModel, prompt: str | Sequence[int], bos: bool) -> list[int]:
    ids = lm.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
    if not ids:
        raise PromptError(_("A steering prompt is empty. Type at least one word."))
    bos_id = lm.tokenizer.bos_token_id
    if bos and bos_id is not None:
        ids = [bos_id] + ids
    if len(ids) > lm.n_ctx:
        raise PromptError(_("A steering prompt is {n} tokens long; the model reads at most {n_ctx}.").format(
            n=len(ids), n_ctx=lm.n_ctx))
    return ids


def _space_id(lm: LoadedModel) -> int:
    ids = lm.encode(" ")
    return ids[0] if len(ids) == 1 else lm.tokenizer.eos_token_id


def _resid(lm: LoadedModel, ids: list[int], layer: int) -> torch.Tensor:
    if not 0 <= layer <= lm.n_layer:
        raise SteeringError(_("There is no block {layer}: the residual stream is read before blocks 0–{last}.").format(
            layer=layer, last=lm.n_layer))
    return torch.from_numpy(trace_ids(lm, ids, cache=ByteBoundedCache(0)).resid[layer].copy())


def contrast_vector(lm: LoadedModel, prompt_a: str, prompt_b: str, layer: int, *, bos: bool = True) -> torch.Tensor:
    """[pos, d_model]: the residual before block `layer` for prompt_a minus that for prompt_b, each
    read with <|endoftext|> in front (bos) and the shorter padded on the right with " " tokens."""
    a, b = _ids(lm, prompt_a, bos), _ids(lm, prompt_b, bos)
    n = max(len(a), len(b))
    pad = _space_id(lm)
    a, b = a + [pad] * (n - len(a)), b + [pad] * (n - len(b))
    return _resid(lm, a, layer) - _resid(lm, b, layer)


def mean_difference(lm: LoadedModel, prompts_a: Sequence[str], prompts_b: Sequence[str], layer: int) -> torch.Tensor:
    """[d_model]: the mean residual before block `layer` over every position of prompts_a, minus the
    same over prompts_b."""
    def mean(prompts):
        if not prompts:
            raise PromptError(_("Each side of a mean difference needs at least one prompt."))
        return torch.cat([_resid(lm, _ids(lm, p, False), layer) for p in prompts]).mean(0)
    return mean(prompts_a) - mean(prompts_b)


def token_direction(lm: LoadedModel, token_id: int) -> torch.Tensor:
    """[d_model]: the token's unembedding direction (what ln_f's output must point along to say it)."""
    return lm.arch.W_U[:, token_id].detach().clone()


def checked_coefficient(coefficient: float) -> float:
    """The coefficient, clamped to ±MAX_COEFFICIENT; SteeringError if it is not a number."""
    c = float(coefficient)
    if math.isnan(c):
        raise SteeringError(_("The coefficient is not a number. Type one, such as 5 or -2.5."))
    return max(-MAX_COEFFICIENT, min(MAX_COEFFICIENT, c))


def steering_edit(vector: torch.Tensor, layer: int, coefficient: float, *, start: int = 0,
                  positions: Sequence[int] | None = None) -> Edit:
    """The Edit that adds coefficient × vector to the residual before block `layer`: a [d_model]
    vector at every position (or at `positions`), a [k, d_model] one at the first k positions.
    `start`: the position of the residual's first row (generation reads a few new positions at a time)."""
    c = checked_coefficient(coefficient)
    vector = vector.float()

    def add(L: int, x: torch.Tensor) -> torch.Tensor:
        if L != layer or c == 0.0:
            return x
        n = x.shape[-2]
        where = torch.arange(start, start + n, device=x.device)
        if vector.dim() == 1:
            keep = torch.ones(n, dtype=torch.bool, device=x.device) if positions is None else torch.isin(
                where, torch.as_tensor(list(positions), dtype=torch.long, device=x.device))
            return x + c * keep[:, None].to(x.dtype) * vector.to(x.device)
        rows = where[where < len(vector)]
        if not len(rows):
            return x
        x = x.clone()
        x[..., rows - start, :] += c * vector.to(x.device)[rows]
        return x

    return Edit(resid_pre=add)


def _checked(logits: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(logits).all():
        raise SteeringError(_("The steered run produced numbers that are not finite (NaN or infinity): the "
                              "coefficient is too large for this direction. Try a smaller one."))
    return logits


def steered_logits(lm: LoadedModel, prompt: str | Sequence[int], vector: torch.Tensor, layer: int,
                   coefficient: float, positions: Sequence[int] | None = None) -> torch.Tensor:
    """[pos, vocab]: the logits of every position of the prompt (text, or token ids as given) with
    coefficient × vector added before block `layer` ([d_model]: at every position or `positions`;
    [k, d_model]: at the first k)."""
    ids = torch.as_tensor(_ids(lm, prompt, False), device=lm.device)
    edit = steering_edit(vector, layer, coefficient, positions=positions)

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            embed, pos_embed = lm.arch.embed(ids)
            x = embed + pos_embed
            for w in lm.arch.blocks:
                x = block(w, x, edit=edit).resid_post
            return lm.arch.logits(x)

    return _checked(lane().run(None, forward, label=_("Running the steered model…")))


def steered_trace(lm: LoadedModel, ids: Sequence[int], vector: torch.Tensor, layer: int, coefficient: float,
                  positions: Sequence[int] | None = None, *, cache: ByteBoundedCache | None = None):
    """A Trace of the prompt with the steer added (its stored residual is the steered one), so every
    view of the app reads the steered run; a steered trace has a cache key of its own."""
    import hashlib

    edit = steering_edit(vector, layer, coefficient, positions=positions)
    h = hashlib.blake2b(vector.float().numpy().tobytes(), digest_size=8).hexdigest()
    variant = f"steer:{h}:{layer}:{checked_coefficient(coefficient)!r}:{tuple(positions or ())}"
    t = trace_ids(lm, list(ids), cache=cache, steer=edit.resid_pre, variant=variant)
    if not np.isfinite(t.next_logits).all():
        _checked(torch.from_numpy(np.array(t.next_logits)))
    return t


@dataclass(frozen=True)
class Token:
    """One generated token: its id, its probability, and the step's next-token probabilities."""

    token_id: int
    prob: float
    probs: np.ndarray  # [vocab] the distribution it was drawn from (temperature applied)


def generate(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, *, vector: torch.Tensor | None = None,
             layer: int = 0, coefficient: float = 0.0, positions: Sequence[int] | None = None,
             temperature: float = 1.0, seed: int = 0) -> Iterator[Token]:
    """Tokens after the prompt, one at a time, with the steer added before block `layer` at every
    step (a [d_model] vector at every position, new ones included; a [k, d_model] one at the first
    k positions only). temperature 0: greedy; else sampled with a generator seeded by `seed`, so a
    steered and a plain run with the same seed draw the same random numbers."""
    ids = [int(i) for i in prompt_ids]
    if not ids or len(ids) + n_new > lm.n_ctx:
        raise PromptError(_("The prompt and the new tokens must fit in {n_ctx} tokens.").format(n_ctx=lm.n_ctx))
    rng = torch.Generator().manual_seed(int(seed))
    past: list = [None] * lm.n_layer
    step, start = torch.as_tensor(ids, device=lm.device), 0

    def forward(step: torch.Tensor, start: int) -> torch.Tensor:  # one step, on the compute lane (core.lane)
        edit = None if vector is None else steering_edit(vector, layer, coefficient, start=start, positions=positions)
        with torch.inference_mode():
            embed, pos_embed = lm.arch.embed(step, start)
            x = embed + pos_embed
            for w in lm.arch.blocks:
                run = block(w, x, edit=edit, past=past[w.layer])
                past[w.layer] = (run.k, run.v)
                x = run.resid_post
            return lm.arch.logits(x[-1])

    label = _("Computing the next token's probabilities…")
    with torch.inference_mode():
        for _step in range(n_new):
            logits = _checked(lane().run(None, lambda step=step, start=start: forward(step, start), label=label))
            probs = torch.softmax(logits / temperature, -1) if temperature > 0 else torch.softmax(logits, -1)
            token = int(torch.multinomial(probs.cpu(), 1, generator=rng)) if temperature > 0 else int(logits.argmax())
            yield Token(token_id=token, prob=float(probs[token]), probs=probs.cpu().numpy())
            start += len(step)
            step = torch.as_tensor([token], device=lm.device)
