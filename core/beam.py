"""Beam search, as transformers 5 does it, step by step.

`beam_search_steps` re-implements transformers' beam search (`generate(num_beams=...,
do_sample=False, length_penalty=..., early_stopping=True | False | "never")`) step for step, so
that it returns the same hypotheses with the same scores; tests compare. It yields a
`BeamState` after every step, and `beam_search_steps(..., resume=a BeamState)` goes on to the
same result as a search that was never interrupted, so an app can stop it, show the best text
so far, and continue later.

Dimension names: beam pos vocab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import DynamicCache

from . import kv_cache
from .kv_cache import PromptProgress, eos_ids, max_new_tokens
from .model import LoadedModel

_NEG = -1.0e9  # transformers' "impossible" score in beam search; kept identical so sums match


@dataclass(frozen=True)
class Hypothesis:
    """A finished beam: generated ids, sum of log-probabilities, and score = logprob / length ** length_penalty."""

    ids: tuple[int, ...]
    logprob: float
    score: float


@dataclass(frozen=True)
class BeamResult:
    """What a beam search made: its finished hypotheses, and the live beams after each step."""

    hypotheses: tuple[Hypothesis, ...]  # best first; hypotheses[0] is what `generate` returns
    running: tuple[tuple[tuple[tuple[int, ...], float], ...], ...]  # [step][beam]: (ids, logprob), while any runs


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
        running, running_scores, finished_seqs, finished_len = (r.running, r.running_scores, r.finished_seqs,
                                                                r.finished_len)
        beam_scores, is_finished, can_improve, cur_len, history = (r.beam_scores, r.is_finished, r.can_improve,
                                                                   r.cur_len, r.history)
    cache = DynamicCache(config=lm.config)
    x = running[:1, :P] if resume is None else running[:, :cur_len]
    first = True
    while True:
        logits = kv_cache.read_prompt_logits(lm, x, cache, on_prompt) if first else kv_cache.next_logits(lm, x, cache)
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
