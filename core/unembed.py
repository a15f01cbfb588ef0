"""Per-position next-token facts from the final normalized residual, without keeping [pos, vocab].

The logits of every position are computed in one matrix product, as transformers' own
forward does; each small block of rows is then reduced while it is still in the CPU's
cache. Cheap identities instead of a log_softmax over [pos, vocab]: with p = softmax(l)
and the top logit l* (probability p*), logsumexp(l) = l* - ln p*, and the entropy is
logsumexp(l) - sum(p l).
"""
from __future__ import annotations

import math

import torch

_ROWS = 64  # positions reduced at once: 64 x 50,257 floats = 13 MB, within a CPU's last-level cache
_BLOCK = 128  # top-k looks for the k best blocks of this many logits first, then inside them


def top_k(rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest entries of each row of [rows, n], best first, as
    torch.topk gives them, but ~3x faster on a 50,257-wide row: the k largest entries lie
    in the k blocks with the largest maxima, so one max per block of _BLOCK entries (a
    cheap vectorized pass) leaves only k x _BLOCK candidates to rank."""
    R, n = rows.shape
    nb = n // _BLOCK
    if nb <= k:
        return rows.topk(k, dim=-1)
    maxima = rows[:, : nb * _BLOCK].view(R, nb, _BLOCK).amax(-1)  # [rows, blocks]
    if n > nb * _BLOCK:
        maxima = torch.cat([maxima, rows[:, nb * _BLOCK :].amax(-1, keepdim=True)], 1)
    best_blocks = maxima.topk(k, dim=-1).indices  # [rows, k]
    cols = best_blocks[..., None] * _BLOCK + torch.arange(_BLOCK, device=rows.device)  # [rows, k, block]
    outside = (cols >= n).view(R, -1)  # the last block may be short
    cols = cols.clamp_max_(n - 1).view(R, -1)
    values, where = rows.gather(1, cols).masked_fill_(outside, float("-inf")).topk(k, dim=-1)
    return values, cols.gather(1, where)


def next_token_facts(W_U: torch.Tensor, final: torch.Tensor, ids: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """W_U [d_model, vocab] (GPT-2's unembedding, tied to wte, no bias), final = ln_f(resid) [pos, d_model],
    ids [pos] -> token_logprob [pos] (NaN at 0), entropy [pos] in bits, top_ids / top_probs
    [pos, k], next_logits / next_probs [vocab] for the last position."""
    T, dev = final.shape[0], final.device
    logits = final @ W_U  # [pos, vocab]
    logprob = torch.full((T,), float("nan"), device=dev)
    entropy = torch.empty(T, device=dev)
    top_ids = torch.empty(T, k, dtype=torch.long, device=dev)
    top_probs = torch.empty(T, k, device=dev)
    probs_buf = torch.empty(min(_ROWS, T), logits.shape[1], device=dev)
    for s in range(0, T, _ROWS):
        e = min(s + _ROWS, T)
        block, probs = logits[s:e], probs_buf[: e - s]
        torch.ops.aten._softmax.out(block, -1, False, out=probs)
        top_logit, ti = top_k(block, k)  # [rows, k]
        rows = torch.arange(e - s, device=dev)
        lse = top_logit[:, 0] - torch.log(probs[rows, ti[:, 0]])
        mean_logit = torch.bmm(probs.unsqueeze(1), block.unsqueeze(2)).view(-1)
        entropy[s:e] = (lse - mean_logit) / math.log(2)
        top_ids[s:e], top_probs[s:e] = ti, torch.exp(top_logit - lse[:, None])
        nxt = ids[s + 1 : e + 1]  # the token that actually follows positions s..e-1
        logprob[s + 1 : s + 1 + len(nxt)] = block[rows[: len(nxt)], nxt] - lse[: len(nxt)]
    return dict(token_logprob=logprob, entropy=entropy, top_ids=top_ids, top_probs=top_probs,
                next_logits=logits[-1].clone(), next_probs=probs[-1].clone())
