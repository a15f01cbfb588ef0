"""GPT-2's maths, written once: the checkpoint's weights seen per head, and one block.

`Arch` reads a transformers GPT2LMHeadModel once, at load, as *views* of its own tensors
(nothing is copied): per block `W_Q, W_K, W_V [head, d_model, d_head]`, `b_Q, b_K, b_V
[head, d_head]`, `W_O [head, d_head, d_model]`, `b_O`, the two LayerNorms, `W_in [d_model,
d_mlp]`, `b_in`, `W_out [d_mlp, d_model]`, `b_out` and the activation; for the model `W_E`,
`W_pos`, `ln_f` and `W_U [d_model, vocab]`. This is the only module that knows the
checkpoint's layout (Conv1D stores [in, out]; c_attn holds [W_Q | W_K | W_V] side by side)
and the config's attention options (`scale_attn_weights`, `scale_attn_by_inverse_layer_idx`,
`reorder_and_upcast_attn`, `activation_function`, `n_inner`).

`block` runs one block on a residual `[..., pos, d_model]` (any leading batch dimensions)
and returns everything it computed (`BlockRun`); `run_blocks` chains blocks. The trace's
forward, per-layer recomputation, attribution, the contribution graph and every
intervention call these. An intervention is an `Edit`: a function applied to the residual
before a block, to the heads' outputs z, to the MLP's activations or to its output.

The forward never forms the [head, query_pos, key_pos] pattern: on CPU it uses PyTorch's
flash-attention kernel, which also returns each query's log-sum-exp of scores; from that
one number per row any single weight is exp(q·k·scale - lse). Patterns are formed on
request, one head at a time (`head_patterns`).

Dimension names, as in TransformerLens: batch layer head query_pos key_pos pos d_model d_head d_mlp vocab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor
EditFn = Callable[[int, Tensor], Tensor]  # (layer, activation) -> activation (may edit in place)

_QUERY_CHUNK = 128  # query rows of a pattern formed at once: only keys up to the chunk's end
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))


def linear(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """x [..., in] @ W [in, out] + b, as transformers' Conv1D computes it (one addmm)."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), W).view(*x.shape[:-1], W.shape[-1])


@dataclass(frozen=True, eq=False)
class LayerNorm:
    """A LayerNorm's gain w [d_model], bias b [d_model] and eps."""

    w: Tensor
    b: Tensor
    eps: float

    def __call__(self, x: Tensor, frozen: bool = False) -> Tensor:
        if frozen and x.requires_grad:  # the same numbers, with the scale a constant for autograd
            centred = x - x.mean(-1, keepdim=True)
            return centred / self.scale(x).detach() * self.w + self.b
        return torch.nn.functional.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)

    def scale(self, x: Tensor) -> Tensor:
        """[..., 1]: the standard deviation it divides x [..., d_model] by, sqrt(var + eps)."""
        centred = x - x.mean(-1, keepdim=True)
        return (centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    """The config's `activation_function` as a function. GPT-2's `gelu_new` is exactly PyTorch's
    fused tanh GELU, which runs in one pass instead of transformers' six."""
    if name in _TANH_GELUS:
        return lambda x: torch.nn.functional.gelu(x, approximate="tanh")
    from transformers.activations import ACT2FN

    return ACT2FN[name]


@dataclass(frozen=True, eq=False)
class BlockWeights:
    """One block's weights, as views of the checkpoint's tensors (see the module docstring).

    `W_qkv [d_model, 3 d_model]` and `b_qkv` are the checkpoint's fused c_attn, which the
    forward multiplies in one product; `scale` is the attention's score scale; `upcast`
    (reorder_and_upcast_attn) asks for scores in float32 whatever the weights' dtype."""

    layer: int
    ln1: LayerNorm
    ln2: LayerNorm
    W_qkv: Tensor
    b_qkv: Tensor
    W_Q: Tensor
    W_K: Tensor
    W_V: Tensor
    b_Q: Tensor
    b_K: Tensor
    b_V: Tensor
    W_O: Tensor
    b_O: Tensor
    W_in: Tensor
    b_in: Tensor
    W_out: Tensor
    b_out: Tensor
    act: Callable[[Tensor], Tensor]
    scale: float
    upcast: bool

    @property
    def n_head(self) -> int:
        return self.W_Q.shape[0]

    @property
    def d_head(self) -> int:
        return self.W_Q.shape[2]

    def project(self, h: Tensor, part: int, heads=None) -> Tensor:
        """q (part 0), k (1) or v (2) [..., head, pos, d_head] of every head (or of `heads`) from
        ln_1's output h [..., pos, d_model]: one product over that part's columns."""
        W, b = (self.W_Q, self.W_K, self.W_V)[part], (self.b_Q, self.b_K, self.b_V)[part]
        if heads is not None:
            return torch.stack([linear(h, W[i], b[i]) for i in heads], dim=-3)
        d = self.W_qkv.shape[0]
        cols = slice(part * d, (part + 1) * d)
        return split_heads(linear(h, self.W_qkv[:, cols], self.b_qkv[cols]), self.n_head)


def _block_weights(block, layer: int, config) -> BlockWeights:
    d, H = config.n_embd, config.n_head
    hs = d // H
    W, b = block.attn.c_attn.weight, block.attn.c_attn.bias  # [d_model, 3 d_model], [3 d_model]

    def per_head(part: int) -> tuple[Tensor, Tensor]:  # [head, d_model, d_head], [head, d_head]
        return W[:, part * d:(part + 1) * d].view(d, H, hs).permute(1, 0, 2), b[part * d:(part + 1) * d].view(H, hs)

    (W_Q, b_Q), (W_K, b_K), (W_V, b_V) = per_head(0), per_head(1), per_head(2)
    scale = hs**-0.5 if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= float(layer + 1)
    ln = lambda m: LayerNorm(m.weight, m.bias, m.eps)  # noqa: E731
    return BlockWeights(
        layer=layer, ln1=ln(block.ln_1), ln2=ln(block.ln_2), W_qkv=W, b_qkv=b,
        W_Q=W_Q, W_K=W_K, W_V=W_V, b_Q=b_Q, b_K=b_K, b_V=b_V,
        W_O=block.attn.c_proj.weight.view(H, hs, d), b_O=block.attn.c_proj.bias,
        W_in=block.mlp.c_fc.weight, b_in=block.mlp.c_fc.bias,
        W_out=block.mlp.c_proj.weight, b_out=block.mlp.c_proj.bias,
        act=activation_fn(config.activation_function), scale=scale, upcast=bool(config.reorder_and_upcast_attn))


@dataclass(frozen=True, eq=False)
class Arch:
    """A GPT-2 checkpoint's weights as one canonical set of views (see the module docstring)."""

    blocks: tuple[BlockWeights, ...]
    W_E: Tensor  # [vocab, d_model]
    W_pos: Tensor  # [n_ctx, d_model]
    ln_f: LayerNorm
    W_U: Tensor  # [d_model, vocab], tied to W_E in GPT-2, no bias

    @classmethod
    def of(cls, model) -> "Arch":
        """The views of a transformers GPT2LMHeadModel (its weights are never copied or changed)."""
        tr, config = model.transformer, model.config
        blocks = tuple(_block_weights(block, L, config) for L, block in enumerate(tr.h))
        return cls(blocks=blocks, W_E=tr.wte.weight, W_pos=tr.wpe.weight,
                   ln_f=LayerNorm(tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps), W_U=model.lm_head.weight.T)

    @property
    def n_layer(self) -> int:
        return len(self.blocks)

    def embed(self, ids: Tensor, start: int = 0) -> tuple[Tensor, Tensor]:
        """Token ids [..., pos] at positions start.. -> (token embeddings, position embeddings), each
        [..., pos, d_model]."""
        return self.W_E[ids], self.W_pos[torch.arange(start, start + ids.shape[-1], device=ids.device)]

    def logits(self, final: Tensor, frozen_ln: bool = False) -> Tensor:
        """The final residual [..., d_model] -> logits [..., vocab] (ln_f, then the unembedding)."""
        return self.ln_f(final, frozen_ln) @ self.W_U


# ---- attention ------------------------------------------------------------------------------------
def split_heads(x: Tensor, n_head: int) -> Tensor:
    """[..., pos, d_model] -> [..., head, pos, d_head] (a view)."""
    *lead, T, d = x.shape
    return x.view(*lead, T, n_head, d // n_head).transpose(-3, -2)


def merge_heads(z: Tensor) -> Tensor:
    """[..., head, pos, d_head] -> [..., pos, head * d_head]."""
    *lead, H, T, hs = z.shape
    return z.transpose(-3, -2).reshape(*lead, T, H * hs)


def attend(q: Tensor, k: Tensor, v: Tensor, scale: float, *, flash: bool = True, upcast: bool = False):
    """Causal attention of [..., head, pos, d_head] -> (z [..., head, pos, d_head], lse [..., head,
    pos]), lse the log-sum-exp of each query's scores. Flash attention on CPU (float32); elsewhere,
    or with flash=False or upcast, the chunked softmax of `_attend_chunked`, in float32 when upcast."""
    *lead, H, T, hs = q.shape
    if flash and _FLASH_CPU is not None and q.device.type == "cpu" and not (upcast and q.dtype != torch.float32):
        z, lse = _FLASH_CPU(*(x.reshape(-1, H, T, hs) for x in (q, k, v)), 0.0, True, scale=scale)[:2]
    else:  # [batch * head, pos, d_head]
        z, lse = _attend_chunked(*(x.reshape(-1, T, hs) for x in (q, k, v)), scale, upcast)
    return z.reshape(*lead, H, T, hs), lse.reshape(*lead, H, T)


def _causal_scores(q: Tensor, k_t: Tensor, s: int, e: int, scale: float, out: Tensor) -> Tensor:
    """Scores of queries s..e-1 against keys 0..e-1, -inf where the key is after the query."""
    mask = torch.ones(e - s, e, dtype=torch.bool, device=q.device).triu_(s + 1)
    torch.bmm(q[:, s:e], k_t[:, :, :e], out=out)
    return out.mul_(scale).masked_fill_(mask, float("-inf"))


def _attend_chunked(q: Tensor, k: Tensor, v: Tensor, scale: float, upcast: bool = False):
    """[n, pos, d_head] each -> (z, lse): the softmax formed _QUERY_CHUNK query rows at a time."""
    dtype = torch.float32 if upcast else q.dtype
    n, T, hs = q.shape
    k_t = k.transpose(1, 2).to(dtype)  # [n, d_head, pos]
    q = q.to(dtype)
    z = torch.empty(n, T, hs, device=q.device, dtype=v.dtype)
    lse = torch.empty(n, T, device=q.device, dtype=dtype)
    scratch = torch.empty(n * min(_QUERY_CHUNK, T) * T, device=q.device, dtype=dtype)
    for s in range(0, T, _QUERY_CHUNK):
        e = min(s + _QUERY_CHUNK, T)
        scores = _causal_scores(q, k_t, s, e, scale, scratch[: n * (e - s) * e].view(n, e - s, e))
        lse[:, s:e] = torch.logsumexp(scores, dim=-1)
        torch.ops.aten._softmax.out(scores, -1, False, out=scores)  # in place: scores -> pattern
        torch.bmm(scores.to(v.dtype), v[:, :e], out=z[:, s:e])
    return z, lse


def head_patterns(q: Tensor, k: Tensor, scale: float, *, scores_only: bool = False) -> Tensor:
    """[head, query_pos, key_pos] float32 patterns (or the pre-softmax scores, -inf above the
    diagonal) of the given heads' q, k [head, pos, d_head], each row the softmax of that query's
    visible scores. Every head is formed the same way whether it comes alone or with its layer,
    so one head read on its own equals the same head read from the whole layer, bit for bit."""
    H, T, _ = q.shape
    out = torch.full((H, T, T), float("-inf") if scores_only else 0.0, device=q.device, dtype=torch.float32)
    k_t = k.transpose(1, 2).float()
    q = q.float()
    for h in range(H):
        for s in range(0, T, _QUERY_CHUNK):
            e = min(s + _QUERY_CHUNK, T)
            block = _causal_scores(q[h:h + 1], k_t[h:h + 1], s, e, scale, torch.empty(1, e - s, e, device=q.device))
            if not scores_only:
                torch.ops.aten._softmax.out(block, -1, False, out=block)
            out[h, s:e, :e] = block[0]
    return out


def weights_at(q: Tensor, k: Tensor, lse: Tensor, scale: float, offset: int) -> Tensor:
    """[head, pos - offset]: the weight of query i on key i - offset, for i = offset..pos-1,
    as exp(q·k·scale - lse): one dot product per query, no pattern."""
    T = q.shape[1]
    dots = (q[:, offset:] * k[:, : T - offset]).sum(-1)  # [head, T - offset]
    return torch.exp(dots * scale - lse[:, offset:])


def head_summaries(q: Tensor, k: Tensor, lse: Tensor, scale: float) -> Tensor:
    """[3, head]: mean weight on the previous token, on the first token and on itself, over
    queries 1..pos-1 (query 0 can only see itself); NaN for a one-token prompt."""
    H, T, _ = q.shape
    if T < 2:
        return torch.full((3, H), float("nan"), device=q.device)
    previous = weights_at(q, k, lse, scale, 1).mean(-1)
    first = torch.exp(torch.einsum("hqd,hd->hq", q[:, 1:], k[:, 0]) * scale - lse[:, 1:]).mean(-1)
    itself = weights_at(q[:, 1:], k[:, 1:], lse[:, 1:], scale, 0).mean(-1)
    return torch.stack([previous, first, itself])


# ---- the block ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Edit:
    """An intervention on a run of the blocks: each function gets (layer, activation) and returns
    the activation to use (it may change it in place). resid_pre [..., pos, d_model] before the
    block; z [..., head, pos, d_head]; attn_out [..., pos, d_model] (z W_O + b_O); mlp_post
    [..., pos, d_mlp] after the activation; mlp_out [..., pos, d_model]. `frozen_ln`: every
    LayerNorm's scale is treated as a constant in a backward pass (TransformerLens's frozen-LN
    attribution), so a gradient is the linearised effect; the forward's numbers are unchanged."""

    resid_pre: EditFn | None = None
    z: EditFn | None = None
    attn_out: EditFn | None = None
    mlp_post: EditFn | None = None
    mlp_out: EditFn | None = None
    frozen_ln: bool = False  # LayerNorms divide by their scale without its gradient (linearised attribution)


@dataclass(frozen=True)
class BlockRun:
    """What one block computed on x [..., pos, d_model]: q, k, v, z [..., head, pos, d_head], lse
    [..., head, pos], attn_out, resid_mid [..., pos, d_model], mlp_pre, mlp_post [..., pos, d_mlp],
    mlp_out and resid_post [..., pos, d_model]."""

    q: Tensor
    k: Tensor
    v: Tensor
    z: Tensor
    lse: Tensor
    attn_out: Tensor
    resid_mid: Tensor
    mlp_pre: Tensor
    mlp_post: Tensor
    mlp_out: Tensor
    resid_post: Tensor


def qkv(w: BlockWeights, x: Tensor, frozen_ln: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v [..., head, pos, d_head] of every head from the residual x [..., pos, d_model]."""
    d = x.shape[-1]
    q, k, v = linear(w.ln1(x, frozen_ln), w.W_qkv, w.b_qkv).split(d, dim=-1)
    return split_heads(q, w.n_head), split_heads(k, w.n_head), split_heads(v, w.n_head)


def attn_out(w: BlockWeights, z: Tensor) -> Tensor:
    """z [..., head, pos, d_head] -> the attention output [..., pos, d_model] (z W_O + b_O)."""
    return linear(merge_heads(z), w.W_O.view(-1, w.W_O.shape[-1]), w.b_O)


def mlp(w: BlockWeights, resid_mid: Tensor, edit: Edit | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(mlp_pre [..., pos, d_mlp], mlp_post [..., pos, d_mlp], mlp_out [..., pos, d_model])."""
    pre = linear(w.ln2(resid_mid, edit is not None and edit.frozen_ln), w.W_in, w.b_in)
    post = w.act(pre)
    if edit is not None and edit.mlp_post is not None:
        post = edit.mlp_post(w.layer, post)
    out = linear(post, w.W_out, w.b_out)
    if edit is not None and edit.mlp_out is not None:
        out = edit.mlp_out(w.layer, out)
    return pre, post, out


def attend_after(q: Tensor, k: Tensor, v: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Attention of the last n queries q [..., head, n, d_head] to all keys k, v [..., head, pos,
    d_head] (query i sits at position pos - n + i and sees keys up to it) -> (z, lse); for
    generation with cached keys and values, n small."""
    n, T = q.shape[-2], k.shape[-2]
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale  # [..., head, n, pos]
    later = torch.arange(T, device=q.device)[None, :] > torch.arange(T - n, T, device=q.device)[:, None]
    scores = scores.masked_fill(later, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return (torch.exp(scores - lse[..., None]).to(v.dtype) @ v), lse


def block(w: BlockWeights, x: Tensor, *, edit: Edit | None = None, flash: bool = True,
          out: Tensor | None = None, past: tuple[Tensor, Tensor] | None = None) -> BlockRun:
    """One GPT-2 block on the residual x [..., pos, d_model] (`edit` applied where it says;
    the residual is written into `out` when given). With `past`, the keys and values [..., head,
    pos_before, d_head] of the positions before x's (generation): the run's k and v are then all
    of them, to pass on as the next step's past."""
    if edit is not None and edit.resid_pre is not None:
        x = edit.resid_pre(w.layer, x)
    q, k, v = qkv(w, x, edit is not None and edit.frozen_ln)
    if past is not None:
        k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
        z, lse = attend_after(q, k, v, w.scale)
    else:
        z, lse = attend(q, k, v, w.scale, flash=flash, upcast=w.upcast)
    if edit is not None and edit.z is not None:
        z = edit.z(w.layer, z)
    a = attn_out(w, z)
    if edit is not None and edit.attn_out is not None:
        a = edit.attn_out(w.layer, a)
    mid = x + a
    pre, post, m = mlp(w, mid, edit)
    post_resid = torch.add(mid, m, out=out) if out is not None else mid + m
    return BlockRun(q=q, k=k, v=v, z=z, lse=lse, attn_out=a, resid_mid=mid, mlp_pre=pre, mlp_post=post, mlp_out=m,
                    resid_post=post_resid)


def run_blocks(arch: Arch, x: Tensor, start: int = 0, stop: int | None = None, *, edit: Edit | None = None,
               flash: bool = True) -> Tensor:
    """Blocks start..stop-1 (default: to the last) on the residual x [..., pos, d_model] before
    block `start` -> the residual after block stop-1 (before ln_f after the last block)."""
    for w in arch.blocks[start:stop]:
        x = block(w, x, edit=edit, flash=flash).resid_post
    return x
