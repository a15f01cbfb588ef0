"""Text generation one token at a time, recording the probability table behind every choice.

GPT-2 only ever adds one token: it reads the text so far, gives every token of the
vocabulary a probability, and one is picked. `generate_steps` does exactly that, with the
key/value cache (transformers' DynamicCache) so each new token costs one forward of one
position, and yields a `Step` per token: the chosen id, its probability under the model's
own distribution and under the distribution it was drawn from (after temperature, top-k,
top-p), the entropy of the model's distribution and its top alternatives.

Randomness comes from a CPU `torch.Generator` seeded per run, which draws one uniform
number per step; the token is then read off the cumulative distribution (inverse CDF).
The random stream is the same on every device, so a seed gives the same text on CPU and
GPU, except in the rare case that the uniform lands within float rounding of a boundary.

`beam_search` re-implements transformers' beam search (transformers 5, `generate(
num_beams=..., do_sample=False, length_penalty=..., early_stopping=True | False | "never")`)
step for step, so that it returns the same hypotheses with the same scores; tests compare.

Dimension names: pos vocab beam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from .model import LoadedModel

TOP_ALTERNATIVES = 10
_LN2 = math.log(2)
_NEG = -1.0e9  # transformers' "impossible" score in beam search; kept identical so sums match


# ---- settings and records ---------------------------------------------------------------------
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
            return "greedy (always the likeliest token)"
        parts = [f"temperature {self.temperature:g}"]
        if self.top_k:
            parts.append(f"top-k {self.top_k}")
        if self.top_p < 1:
            parts.append(f"top-p {self.top_p:g}")
        return "sampling, " + ", ".join(parts) + f", seed {self.seed}"


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
def sampling_distribution(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0):
    """The distribution a token is drawn from: logits [vocab] / temperature, then top-k, then
    top-p (transformers' order). Returns (candidate ids or None for the whole vocab, probs).

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


def _choose(logits: torch.Tensor, decoding: Decoding, rng: torch.Generator, k: int, index: int) -> Step:
    """Pick the next token from logits [vocab] and record the table behind the choice."""
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).sum() / _LN2
    top_probs, top_ids = probs.topk(k)
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


def eos_ids(lm: LoadedModel) -> tuple[int, ...]:
    eos = lm.model.generation_config.eos_token_id
    if eos is None:
        eos = lm.config.eos_token_id
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))


def max_new_tokens(lm: LoadedModel, n_prompt: int, wanted: int) -> int:
    """`wanted`, cut so that prompt + generated tokens fit GPT-2's n_ctx positions."""
    return max(0, min(wanted, lm.n_ctx - n_prompt))


def generate_steps(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decoding: Decoding = Decoding(),
                   top: int = TOP_ALTERNATIVES) -> Iterator[Step]:
    """Continue `prompt_ids` by up to `n_new` tokens, yielding one Step per token.

    Stops early at n_ctx, and at end-of-text if `decoding.stop_at_eos` (that token is yielded).
    Each model call holds `lm.forward_lock`, released between steps so other sessions interleave.
    """
    n_new = max_new_tokens(lm, len(prompt_ids), n_new)
    if n_new == 0:
        return
    rng = torch.Generator().manual_seed(int(decoding.seed))  # CPU: the same stream on every device
    stop = set(eos_ids(lm)) if decoding.stop_at_eos else set()
    k = min(top, lm.d_vocab)
    x = torch.tensor([list(prompt_ids)], dtype=torch.long, device=lm.device)  # (1, pos)
    cache = None
    for i in range(n_new):
        with lm.forward_lock, torch.inference_mode():
            out = lm.model(input_ids=x, past_key_values=cache, use_cache=True, logits_to_keep=1)
        with torch.inference_mode():
            cache = out.past_key_values
            step = _choose(out.logits[0, -1].float(), decoding, rng, k, i)
        yield step
        if step.token_id in stop:
            return
        x = torch.tensor([[step.token_id]], dtype=torch.long, device=lm.device)


def generate_ids(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decoding: Decoding = Decoding(),
                 top: int = TOP_ALTERNATIVES) -> list[Step]:
    return list(generate_steps(lm, prompt_ids, n_new, decoding, top))


# ---- reading the result -----------------------------------------------------------------------
def repeated_ngram_mask(ids: Sequence[int], n: int = 4) -> np.ndarray:
    """[pos] bool: True for tokens inside an n-gram that already occurred earlier in `ids`.

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


def temperature_sweep(logits: torch.Tensor | np.ndarray, temperatures: Sequence[float], k: int = 10):
    """Probabilities of the model's k likeliest tokens at each temperature.

    Returns (ids [k], probs [temperature, k]); temperature 0 puts all the mass on the first."""
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
    """[temperature] entropy in bits of softmax(logits / T) over the whole vocab (0 at T = 0)."""
    logits = torch.tensor(np.array(logits, dtype=np.float64))
    out = []
    for t in temperatures:
        if t <= 0:
            out.append(0.0)
            continue
        logp = torch.log_softmax(logits / t, dim=-1)
        out.append(float(-(logp.exp() * logp).sum() / _LN2))
    return np.array(out)


# ---- beam search ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hypothesis:
    """A finished beam: generated ids, sum of log-probabilities, and score = logprob / length ** length_penalty."""

    ids: tuple[int, ...]
    logprob: float
    score: float


@dataclass(frozen=True)
class BeamResult:
    hypotheses: tuple[Hypothesis, ...]  # best first; hypotheses[0] is what `generate` returns
    running: tuple[tuple[tuple[tuple[int, ...], float], ...], ...]  # per step while any runs: the live beams (ids, logprob)


def beam_search(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, num_beams: int = 4,
                length_penalty: float = 1.0, early_stopping: bool | str = False) -> BeamResult:
    """Beam search as transformers 5 does it (`generate(num_beams, do_sample=False, length_penalty,
    early_stopping)`, one prompt, no other logits processors), with the same stopping rules.

    Every step keeps the 2·num_beams best continuations of all beams (summed log-probs); those
    ending in end-of-text or at the length limit are finished hypotheses (scored by length
    penalty), the best num_beams unfinished ones run on."""
    P = len(prompt_ids)
    max_length = P + max_new_tokens(lm, P, n_new)
    if max_length == P:
        return BeamResult((), ())
    dev, eos = lm.device, torch.tensor(eos_ids(lm), dtype=torch.long, device=lm.device)
    keep = max(2, 1 + len(eos)) * num_beams
    top_mask = torch.arange(keep, device=dev) < num_beams
    running = torch.zeros((num_beams, max_length), dtype=torch.long, device=dev)  # (beam, pos)
    running[:, :P] = torch.tensor(list(prompt_ids), device=dev)
    finished_seqs, finished_len = running.clone(), torch.zeros(num_beams, dtype=torch.long, device=dev)
    running_scores = torch.zeros(num_beams, device=dev)
    running_scores[1:] = _NEG  # only the first beam expands at step one: no duplicate beams
    beam_scores = torch.full((num_beams,), _NEG, device=dev)
    is_finished = torch.zeros(num_beams, dtype=torch.bool, device=dev)
    can_improve = True
    x, cache, cur_len, history = running[:, :P], None, P, []
    while True:
        with lm.forward_lock, torch.inference_mode():
            out = lm.model(input_ids=x, past_key_values=cache, use_cache=True, logits_to_keep=1)
        with torch.inference_mode():
            cache = out.past_key_values
            logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (beam, vocab)
            V = logp.shape[-1]
            top_lp, top_idx = (logp + running_scores[:, None]).reshape(-1).topk(keep)
            src, tok = top_idx // V, top_idx % V
            cand = running[src].clone()
            cand[:, cur_len] = tok
            hits = torch.isin(tok, eos) | (cur_len + 1 >= max_length)
            # the best num_beams unfinished continuations run on
            live_lp = top_lp + hits.to(torch.float32) * _NEG
            nxt = live_lp.topk(num_beams).indices
            running, running_scores, beam_src = cand[nxt], live_lp[nxt], src[nxt]
            # finished ones among the top num_beams join the hypotheses if they beat them
            just = hits & top_mask
            scores = top_lp / ((cur_len + 1 - P) ** length_penalty)
            if early_stopping is True and bool(is_finished.all()):
                scores = scores + _NEG
            if not can_improve:
                scores = scores + _NEG
            scores = scores + (~just) * _NEG
            merged = torch.cat((beam_scores, scores)).topk(num_beams).indices
            finished_seqs = torch.cat((finished_seqs, cand))[merged]
            finished_len = torch.cat((finished_len, torch.full((keep,), cur_len + 1, device=dev)))[merged]
            beam_scores = torch.cat((beam_scores, scores))[merged]
            is_finished = torch.cat((is_finished, just))[merged]
            cache.reorder_cache(beam_src)
            cur_len += 1
            live = tuple((tuple(running[b, P:cur_len].tolist()), float(running_scores[b])) for b in range(num_beams)
                         if running_scores[b] > _NEG / 2)
            if live:  # after the last step every candidate has finished
                history.append(live)
            best_len = (max_length - P) if (early_stopping == "never" and length_penalty > 0) else (cur_len - P)
            best_possible = float(running_scores[0]) / (best_len ** length_penalty)
            worst = torch.where(is_finished, beam_scores.min(), torch.tensor(_NEG, device=dev))
            can_improve = can_improve and bool((best_possible > worst).any())
            open_beam = not (bool(is_finished.all()) and early_stopping is True)
            if not (can_improve and open_beam and not bool(hits.all())):
                break
            x = running[:, cur_len - 1 : cur_len]
    hyps = []
    for b in range(num_beams):
        if is_finished[b]:
            n = int(finished_len[b])
            ids = tuple(finished_seqs[b, P:n].tolist())
            score = float(beam_scores[b])
            hyps.append(Hypothesis(ids=ids, logprob=score * (len(ids) ** length_penalty), score=score))
    return BeamResult(tuple(hyps), tuple(history))


# ---- tables for people ------------------------------------------------------------------------
def decode_text(lm: LoadedModel, ids: Sequence[int]) -> str:
    """The text of token ids (partial UTF-8 bytes show as �). Untrusted: show it as plain text."""
    with lm.tokenizer_lock:
        return lm.tokenizer.decode([int(i) for i in ids])


def steps_table(lm: LoadedModel, steps: Sequence[Step], loop_mask: np.ndarray | None = None, k: int = 5):
    """The essay's sequence of tables as one DataFrame, a row per step: the chosen token, its
    probabilities, the entropy and the k likeliest alternatives as `token  p`."""
    import pandas as pd

    from .tokens import display_tokens

    k = min(k, min((len(s.top_ids) for s in steps), default=0))
    flat = [s.token_id for s in steps] + [i for s in steps for i in s.top_ids[:k]]
    shown = display_tokens(lm, flat)
    chosen, alts = shown[: len(steps)], shown[len(steps) :]
    rows = []
    for n, s in enumerate(steps):
        row = {"step": s.index + 1, "chosen": chosen[n], "id": s.token_id, "p (GPT-2)": s.prob,
               "p (drawn)": s.sample_prob, "rank": s.rank + 1, "out of": s.n_allowed, "entropy (bits)": s.entropy_bits}
        if loop_mask is not None:
            row["repeat"] = "⟳" if loop_mask[n] else ""
        for j in range(k):
            row[f"#{j + 1}"] = f"{alts[n * k + j]}  {_pct(s.top_probs[j])}"
        rows.append(row)
    return pd.DataFrame(rows)


def beams_table(lm: LoadedModel, result: BeamResult):
    """Finished beam hypotheses, best first: score, summed log-probability, length and text."""
    import pandas as pd

    return pd.DataFrame([{"beam": i + 1, "score": h.score, "log-prob": h.logprob, "tokens": len(h.ids),
                          "text": decode_text(lm, h.ids)} for i, h in enumerate(result.hypotheses)])


def _pct(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"
