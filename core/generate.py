"""Text generation one token at a time, recording the probability table behind every choice.

GPT-2 only ever adds one token: it reads the text so far, gives every token of the
vocabulary a probability, and one is picked. `generate_steps` does exactly that, with the
key/value cache (transformers' `DynamicCache`) so each new token costs one forward of one
position, and yields a `Step` per token: the chosen id, its probability under the model's
own distribution and under the distribution it was drawn from (after temperature, top-k,
top-p), the entropy of the model's distribution and its top alternatives.

Long runs are generators that can be picked up where they stopped: `generate_steps(...,
resume=ids so far)` and `beam_search_steps(..., resume=a BeamState)` go on to the same
result as a run that was never interrupted, so an app can stop a run, keep what was made,
and continue later.

Randomness comes from a CPU `torch.Generator` seeded per run, which draws one uniform
number per step; the token is then read off the cumulative distribution (inverse CDF).
The random stream is the same on every device, so a seed gives the same text on CPU and
GPU, except in the rare case that the uniform lands within float rounding of a boundary.

`beam_search_steps` re-implements transformers' beam search (transformers 5, `generate(
num_beams=..., do_sample=False, length_penalty=..., early_stopping=True | False | "never")`)
step for step, so that it returns the same hypotheses with the same scores; tests compare.

Dimension names: pos vocab beam.
"""
from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from i18n import _

from .model import LoadedModel

TOP_ALTERNATIVES = 10
MAX_NEW = 200  # the most tokens the app adds in one run
PREFILL_CHUNK = 64  # prompt positions per forward: a long prompt is read in steps that can report progress
_LN2 = math.log(2)
_NEG = -1.0e9  # transformers' "impossible" score in beam search; kept identical so sums match
PromptProgress = Callable[[int, int], None]


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


@lru_cache(maxsize=None)
def _cache_keyword(model_class: type) -> str:
    """transformers 5.x renamed forward's `past_key_values` to `cache`; the old name warns
    (FutureWarning) and goes away in 5.40. Use whichever this version's GPT-2 takes."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _next_logits(lm: LoadedModel, x: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """One forward of x (batch, pos) after what `cache` holds (which it extends): the logits
    (batch, vocab) of each row's last position."""
    with lm.forward_lock, torch.inference_mode():
        out = lm.model(input_ids=x, use_cache=True, logits_to_keep=1, **{_cache_keyword(type(lm.model)): cache})
    return out.logits[:, -1].float()


def _read_prompt(lm: LoadedModel, x: torch.Tensor, cache: DynamicCache, on_prompt: PromptProgress | None) -> torch.Tensor:
    """`_next_logits` of a whole prompt x (batch, pos), PREFILL_CHUNK positions per forward, calling
    on_prompt(positions read, all) between forwards (where an app can update a bar, or stop)."""
    n = x.shape[1]
    for start in range(0, n, PREFILL_CHUNK):
        logits = _next_logits(lm, x[:, start : start + PREFILL_CHUNK], cache)
        if on_prompt is not None and start + PREFILL_CHUNK < n:
            on_prompt(start + PREFILL_CHUNK, n)
    return logits


def read_prompt(lm: LoadedModel, prompt_ids: Sequence[int], on_prompt: PromptProgress | None = None):
    """The prompt read once, for several runs that start from it: (its key/value cache, the logits
    [1, vocab] after it). `generate_steps(..., prompt_read=...)` copies the cache, never changes it."""
    cache = DynamicCache(config=lm.config)
    x = torch.tensor([list(prompt_ids)], dtype=torch.long, device=lm.device)
    return cache, _read_prompt(lm, x, cache, on_prompt)


def generate_steps(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decoding: Decoding = Decoding(),
                   top: int = TOP_ALTERNATIVES, resume: Sequence[int] = (), on_prompt: PromptProgress | None = None,
                   prompt_read: tuple | None = None) -> Iterator[Step]:
    """Continue `prompt_ids` by up to `n_new` tokens, yielding one Step per token.

    Stops early at n_ctx, and at end-of-text if `decoding.stop_at_eos` (that token is yielded).
    `resume`: tokens this run already made (the start of an earlier run with the same settings);
    generation goes on after them, yielding steps len(resume)+1 … n_new, the same as a run that
    was never stopped (the seeded random stream is advanced past the draws already used).
    `on_prompt(read, all)` is called while a long prompt is read (see `_read_prompt`);
    `prompt_read` (from `read_prompt`) skips reading it, for a run that starts from the prompt.
    Each model call holds `lm.forward_lock`, released between steps so other sessions interleave.
    """
    n_new = max_new_tokens(lm, len(prompt_ids), n_new)
    stop = set(eos_ids(lm)) if decoding.stop_at_eos else set()
    done = [int(i) for i in resume]
    if len(done) >= n_new or (done and done[-1] in stop):
        return
    rng = torch.Generator().manual_seed(int(decoding.seed))  # CPU: the same stream on every device
    if not decoding.greedy:
        for _step in done:  # one uniform per sampled step, drawn one at a time as _choose does
            torch.rand((), generator=rng)
    k = min(top, lm.d_vocab)
    x = torch.tensor([list(prompt_ids) + done], dtype=torch.long, device=lm.device)  # (1, pos)
    cache, logits = DynamicCache(config=lm.config), None
    if prompt_read is not None and not done:
        with torch.inference_mode():
            cache, logits = copy.deepcopy(prompt_read[0]), prompt_read[1]
    for i in range(len(done), n_new):
        if i > len(done):
            logits = _next_logits(lm, x, cache)
        elif logits is None:
            logits = _read_prompt(lm, x, cache, on_prompt)
        with torch.inference_mode():
            step = _choose(logits[0], decoding, rng, k, i)
        yield step
        if step.token_id in stop:
            return
        x = torch.tensor([[step.token_id]], dtype=torch.long, device=lm.device)


def generate_ids(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decoding: Decoding = Decoding(),
                 top: int = TOP_ALTERNATIVES) -> list[Step]:
    return list(generate_steps(lm, prompt_ids, n_new, decoding, top))


def greedy_and_samples(temperature: float, seeds: Sequence[int]) -> list[Decoding]:
    """Greedy, then one sample per seed at `temperature`; none stops at end-of-text, so all have the same length."""
    return [Decoding(method="greedy", stop_at_eos=False)] + [
        Decoding(temperature=temperature, seed=int(s), stop_at_eos=False) for s in seeds]


def continue_runs(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, decodings: Sequence[Decoding],
                  done: Sequence[Sequence[int]] = (), on_prompt: PromptProgress | None = None) -> Iterator[tuple[int, int]]:
    """Several continuations of one prompt, one run after another: yields (run, token id).
    `done[r]`: the tokens run r already has (from an earlier, stopped call); it goes on from there.
    The prompt is read once for all the runs that start from it."""
    if max_new_tokens(lm, len(prompt_ids), n_new) == 0:
        return
    read = None
    for r, decoding in enumerate(decodings):
        have = done[r] if r < len(done) else ()
        if not have and read is None:
            read = read_prompt(lm, prompt_ids, on_prompt)
        for step in generate_steps(lm, prompt_ids, n_new, decoding, top=1, resume=have, on_prompt=on_prompt,
                                   prompt_read=None if have else read):
            yield r, step.token_id


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


@dataclass(frozen=True, eq=False)
class BeamState:
    """Beam search after `step` steps: what it shows so far, and all it needs to go on
    (`beam_search_steps(..., resume=state)`). Tensors are never modified after a yield."""

    prompt_len: int
    max_length: int  # prompt + the most new tokens
    length_penalty: float
    early_stopping: bool | str
    cur_len: int  # prompt + tokens so far
    running: torch.Tensor  # (beam, pos) the live beams, best first; columns < cur_len are set
    running_scores: torch.Tensor  # (beam,) their summed log-probabilities
    finished_seqs: torch.Tensor  # (beam, pos) finished hypotheses
    finished_len: torch.Tensor  # (beam,)
    beam_scores: torch.Tensor  # (beam,) their scores (_NEG for an empty slot)
    is_finished: torch.Tensor  # (beam,) bool
    can_improve: bool
    history: tuple  # BeamResult.running so far
    done: bool  # transformers would stop here

    @property
    def step(self) -> int:
        return self.cur_len - self.prompt_len

    @property
    def max_steps(self) -> int:
        return self.max_length - self.prompt_len

    def result(self) -> BeamResult:
        """The finished hypotheses so far, best first (all of them once `done`), and the live beams per step."""
        hyps = []
        for b in range(len(self.is_finished)):
            if self.is_finished[b]:
                ids = tuple(self.finished_seqs[b, self.prompt_len : int(self.finished_len[b])].tolist())
                score = float(self.beam_scores[b])
                hyps.append(Hypothesis(ids=ids, logprob=score * (len(ids) ** self.length_penalty), score=score))
        return BeamResult(tuple(sorted(hyps, key=lambda h: -h.score)), self.history)


def beam_search(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, num_beams: int = 4,
                length_penalty: float = 1.0, early_stopping: bool | str = False) -> BeamResult:
    """Beam search to the end (see `beam_search_steps`)."""
    state = None
    for state in beam_search_steps(lm, prompt_ids, n_new, num_beams, length_penalty, early_stopping):
        pass
    return state.result() if state is not None else BeamResult((), ())


def beam_search_steps(lm: LoadedModel, prompt_ids: Sequence[int], n_new: int, num_beams: int = 4,
                      length_penalty: float = 1.0, early_stopping: bool | str = False,
                      resume: BeamState | None = None, on_prompt: PromptProgress | None = None) -> Iterator[BeamState]:
    """Beam search as transformers 5 does it (`generate(num_beams, do_sample=False, length_penalty,
    early_stopping)`, one prompt, no other logits processors), with the same stopping rules;
    yields the state after each step (the last one has `done`).

    Every step keeps the 2·num_beams best continuations of all beams (summed log-probs); those
    ending in end-of-text or at the length limit are finished hypotheses (scored by length
    penalty), the best num_beams unfinished ones run on. `resume`: a state this search yielded
    before; the search goes on from there (the live beams are read again) to the same end.
    The prompt is read once, not once per beam: all beams start as the prompt."""
    P = len(prompt_ids)
    max_length = P + max_new_tokens(lm, P, n_new)
    if max_length == P or (resume is not None and resume.done):
        return
    dev, eos = lm.device, torch.tensor(eos_ids(lm), dtype=torch.long, device=lm.device)
    keep = max(2, 1 + len(eos)) * num_beams
    top_mask = torch.arange(keep, device=dev) < num_beams
    if resume is None:
        running = torch.zeros((num_beams, max_length), dtype=torch.long, device=dev)  # (beam, pos)
        running[:, :P] = torch.tensor(list(prompt_ids), device=dev)
        finished_seqs, finished_len = running.clone(), torch.zeros(num_beams, dtype=torch.long, device=dev)
        running_scores = torch.zeros(num_beams, device=dev)
        running_scores[1:] = _NEG  # only the first beam expands at step one: no duplicate beams
        beam_scores = torch.full((num_beams,), _NEG, device=dev)
        is_finished = torch.zeros(num_beams, dtype=torch.bool, device=dev)
        can_improve, cur_len, history = True, P, ()
    else:
        r = resume
        running, running_scores, finished_seqs, finished_len = r.running, r.running_scores, r.finished_seqs, r.finished_len
        beam_scores, is_finished, can_improve, cur_len, history = r.beam_scores, r.is_finished, r.can_improve, r.cur_len, r.history
    cache = DynamicCache(config=lm.config)
    x = running[:1, :P] if resume is None else running[:, :cur_len]
    first = True
    while True:
        logits = _read_prompt(lm, x, cache, on_prompt) if first else _next_logits(lm, x, cache)
        if first and resume is None:
            zeros = torch.zeros(num_beams, dtype=torch.long, device=dev)
            cache.reorder_cache(zeros)  # the prompt's keys and values, once per beam
            logits = logits[zeros]
        first = False
        with torch.inference_mode():
            logp = torch.log_softmax(logits, dim=-1)  # (beam, vocab)
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
                history = history + (live,)
            best_len = (max_length - P) if (early_stopping == "never" and length_penalty > 0) else (cur_len - P)
            best_possible = float(running_scores[0]) / (best_len ** length_penalty)
            worst = torch.where(is_finished, beam_scores.min(), torch.tensor(_NEG, device=dev))
            can_improve = can_improve and bool((best_possible > worst).any())
            open_beam = not (bool(is_finished.all()) and early_stopping is True)
            done = not (can_improve and open_beam and not bool(hits.all()))
        yield BeamState(P, max_length, length_penalty, early_stopping, cur_len, running, running_scores, finished_seqs,
                        finished_len, beam_scores, is_finished, can_improve, history, done)
        if done:
            return
        x = running[:, cur_len - 1 : cur_len]


def best_beam_ids(state: BeamState | None) -> list[int]:
    """The best text a beam search has made so far (generated ids): once it is done, or when no
    beam is still running, its best finished hypothesis; before that, the best beam still
    running after the last step. [] before the first step."""
    if state is None:
        return []
    result = state.result()
    return list(result.hypotheses[0].ids if state.done or not result.running else result.running[-1][0][0])


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


@dataclass(frozen=True)
class StepsView:
    """What the page shows of a run's steps, as arrays [step]."""

    tokens: list[str]  # the chosen tokens, shown as bytes (core.tokens.display_tokens)
    probs: np.ndarray  # under the model's own distribution
    sample_probs: np.ndarray | None  # under the one they were drawn from (None for greedy)
    entropy_bits: np.ndarray
    loops: np.ndarray  # bool: inside an n-gram seen earlier


def steps_view(lm: LoadedModel, steps: Sequence[Step], greedy: bool, loop_n: int = 4) -> StepsView:
    from .tokens import display_tokens

    ids = [s.token_id for s in steps]
    return StepsView(display_tokens(lm, ids), np.array([s.prob for s in steps]),
                     None if greedy else np.array([s.sample_prob for s in steps]),
                     np.array([s.entropy_bits for s in steps]), repeated_ngram_mask(ids, loop_n))


def runs_from_pairs(pairs: Sequence[tuple[int, int]], n_runs: int) -> list[list[int]]:
    """The (run, token id) pairs `continue_runs` yielded, as one token list per run."""
    runs: list[list[int]] = [[] for _ in range(n_runs)]
    for r, token in pairs:
        runs[r].append(token)
    return runs


def runs_table(lm: LoadedModel, runs: Sequence[Sequence[int]], labels: Sequence[str]):
    """Continuations side by side: (first step each differs from run 0 or None, a DataFrame run · first
    step that differs (1-based) · text). Runs that have not started are left out."""
    import pandas as pd

    diverge = [None] + [first_divergence(runs[0], r) for r in runs[1:]]
    table = pd.DataFrame({"run": list(labels), "first step that differs from greedy": [d + 1 if d is not None else None for d in diverge],
                          "text": [decode_text(lm, r) for r in runs]})
    return diverge, table


def live_beams_table(lm: LoadedModel, live: Sequence[tuple[tuple[int, ...], float]]):
    """The beams still running after a step, best first: log-probability and text so far."""
    import pandas as pd

    return pd.DataFrame({"beam": list(range(1, len(live) + 1)), "log-prob": [s for _, s in live],
                         "text so far": [decode_text(lm, b) for b, _ in live]})


def beams_table(lm: LoadedModel, result: BeamResult):
    """Finished beam hypotheses, best first: score, summed log-probability, length and text."""
    import pandas as pd

    return pd.DataFrame([{"beam": i + 1, "score": h.score, "log-prob": h.logprob, "tokens": len(h.ids),
                          "text": decode_text(lm, h.ids)} for i, h in enumerate(result.hypotheses)])


def _pct(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"
