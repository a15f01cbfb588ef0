"""The maths of one GPT-2 block, shared by the one-pass trace and the per-layer recomputation.

Written over the checkpoint's own modules (`ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`,
`mlp.c_fc`, `mlp.act`, `mlp.c_proj`), nanoGPT style, so that what the trace computes
is what GPT-2 computes. The forward never forms the [head, query_pos, key_pos]
pattern: on CPU it uses PyTorch's flash-attention kernel, which also returns each
query's log-sum-exp of scores; from that one number per row any single weight is
`exp(q·k·scale - lse)`, so the per-head summaries (attention to the previous token, the
first token, itself) cost a dot product per position. Patterns are formed on request,
one layer or one head at a time (`head_patterns`).

Dimension names, as in TransformerLens: layer head query_pos key_pos pos d_model d_mlp d_head.
"""
from __future__ import annotations

import torch

_QUERY_CHUNK = 128  # query rows of a pattern formed at once: only keys up to the chunk's end
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def attention_scale(attn, layer: int) -> float:
    """GPT-2's 1/√d_head (and the optional 1/(layer+1) of some configs)."""
    scale = attn.head_dim**-0.5 if attn.scale_attn_weights else 1.0
    if attn.scale_attn_by_inverse_layer_idx:
        scale /= float(layer + 1)
    return scale


def split_heads(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """[pos, d_model] -> [head, pos, d_head] (a view)."""
    T, d = t.shape
    return t.view(T, n_head, d // n_head).transpose(0, 1)


def qkv(block, resid_pre: torch.Tensor, n_head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of every head, each [head, pos, d_head], from the residual before the block."""
    d = resid_pre.shape[-1]
    q, k, v = block.attn.c_attn(block.ln_1(resid_pre)).split(d, dim=-1)  # [pos, d_model] each
    return split_heads(q, n_head), split_heads(k, n_head), split_heads(v, n_head)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, *, flash: bool = True):
    """Causal attention -> (z [head, pos, d_head], lse [head, pos]), lse the log-sum-exp of
    each query's scores. Flash attention on CPU; elsewhere (or flash=False) the chunked
    softmax of `_attend_chunked`, which the tests hold to the flash path."""
    if flash and _FLASH_CPU is not None and q.device.type == "cpu":
        z, lse = _FLASH_CPU(q[None], k[None], v[None], 0.0, True, scale=scale)[:2]
        return z[0], lse[0]
    return _attend_chunked(q, k, v, scale)


def _causal_scores(q: torch.Tensor, k_t: torch.Tensor, s: int, e: int, scale: float, out: torch.Tensor) -> torch.Tensor:
    """Scores of queries s..e-1 against keys 0..e-1, -inf where the key is after the query."""
    mask = torch.ones(e - s, e, dtype=torch.bool, device=q.device).triu_(s + 1)
    torch.bmm(q[:, s:e], k_t[:, :, :e], out=out)
    return out.mul_(scale).masked_fill_(mask, float("-inf"))


def _attend_chunked(q, k, v, scale):
    H, T, hs = q.shape
    k_t = k.transpose(1, 2)  # [head, d_head, pos]
    z = torch.empty(H, T, hs, device=q.device, dtype=q.dtype)
    lse = torch.empty(H, T, device=q.device, dtype=q.dtype)
    scratch = torch.empty(H * min(_QUERY_CHUNK, T) * T, device=q.device, dtype=q.dtype)
    for s in range(0, T, _QUERY_CHUNK):
        e = min(s + _QUERY_CHUNK, T)
        scores = _causal_scores(q, k_t, s, e, scale, scratch[: H * (e - s) * e].view(H, e - s, e))
        lse[:, s:e] = torch.logsumexp(scores, dim=-1)
        torch.ops.aten._softmax.out(scores, -1, False, out=scores)  # in place: scores -> pattern
        torch.bmm(scores, v[:, :e], out=z[:, s:e])
    return z, lse


def attn_out(block, z: torch.Tensor) -> torch.Tensor:
    """z [head, pos, d_head] -> the block's attention output [pos, d_model] (W_O and its bias)."""
    H, T, hs = z.shape
    return block.attn.c_proj(z.transpose(0, 1).reshape(T, H * hs))


def activation(act):
    """The MLP's activation as a function. GPT-2's `gelu_new`, 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))),
    is exactly PyTorch's fused tanh GELU, which runs in one pass instead of transformers' six."""
    if type(act).__name__ in ("NewGELUActivation", "GELUTanh", "PytorchGELUTanh"):
        return lambda x: torch.nn.functional.gelu(x, approximate="tanh")
    return act


def mlp(block, resid_mid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pre-GELU [pos, d_mlp], post-GELU [pos, d_mlp], output [pos, d_model])."""
    pre = block.mlp.c_fc(block.ln_2(resid_mid))
    post = activation(block.mlp.act)(pre)
    return pre, post, block.mlp.c_proj(post)


def weights_at(q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor, scale: float, offset: int) -> torch.Tensor:
    """[head, pos - offset]: the weight of query q on key q - offset, for q = offset..pos-1,
    as exp(q·k·scale - lse): one dot product per query, no pattern."""
    T = q.shape[1]
    dots = (q[:, offset:] * k[:, : T - offset]).sum(-1)  # [head, T - offset]
    return torch.exp(dots * scale - lse[:, offset:])


def column_weights(q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor, scale: float, key: int) -> torch.Tensor:
    """[head, pos]: every query's weight on one key (0 for queries before it)."""
    w = torch.exp(torch.einsum("hqd,hd->hq", q, k[:, key]) * scale - lse)
    w[:, :key] = 0.0
    return w


def head_summaries(q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor, scale: float) -> torch.Tensor:
    """[3, head]: mean weight on the previous token, on the first token and on itself,
    over queries 1..pos-1 (query 0 can only see itself); NaN for a one-token prompt."""
    H, T, _ = q.shape
    if T < 2:
        return torch.full((3, H), float("nan"), device=q.device)
    previous = weights_at(q, k, lse, scale, 1).mean(-1)
    first = column_weights(q, k, lse, scale, 0)[:, 1:].mean(-1)
    itself = weights_at(q[:, 1:], k[:, 1:], lse[:, 1:], scale, 0).mean(-1)
    return torch.stack([previous, first, itself])


def head_patterns(q: torch.Tensor, k: torch.Tensor, scale: float, *, scores_only: bool = False) -> torch.Tensor:
    """[head, query_pos, key_pos] float32 patterns (or the pre-softmax scores, -inf above the
    diagonal) of the given heads, each row the softmax of that query's visible scores.

    Every head is formed the same way whether it comes alone or with its layer, so one head
    read on its own equals the same head read from the whole layer, bit for bit."""
    H, T, _ = q.shape
    out = torch.zeros(H, T, T, device=q.device, dtype=torch.float32)
    if scores_only:
        out.fill_(float("-inf"))
    k_t = k.transpose(1, 2)
    for h in range(H):
        for s in range(0, T, _QUERY_CHUNK):
            e = min(s + _QUERY_CHUNK, T)
            block = _causal_scores(q[h : h + 1], k_t[h : h + 1], s, e, scale, torch.empty(1, e - s, e, device=q.device))
            if not scores_only:
                torch.ops.aten._softmax.out(block, -1, False, out=block)
            out[h, s:e, :e] = block[0]
    return out

