"""One forward pass of GPT-2 -> a Trace of named, read-only arrays that every page reads.

The forward is written out block by block over the checkpoint's own modules (`wte`,
`wpe`, `h[L].ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp.c_fc`, `mlp.act`,
`mlp.c_proj`, `ln_f`, `lm_head`), nanoGPT style, instead of asking transformers for
`output_attentions` and `output_hidden_states`. That keeps what we store exact and
cheap: the pattern is the softmax GPT-2 itself multiplies with V (stored as float16),
the MLP output after GELU needs no hook, the last residual is taken before `ln_f`
(transformers' last `hidden_states` entry is after it), and the unembedding runs in
chunks so a 1,024-token prompt never holds a [pos, vocab] matrix. Tests check the
result against transformers' own forward and against numpy recomputations.

Dimension names, as in TransformerLens: layer head query_pos key_pos pos d_model d_mlp vocab.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import LoadedModel
from .tokens import display_tokens

TOP_K_PER_POSITION = 10
_LOGIT_CHUNK = 256  # positions unembedded at once: 256 x 50,257 floats = 51 MB


class PromptError(ValueError):
    """The prompt cannot be traced (for example it is empty). The message is for a person."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Everything one forward pass of GPT-2 computed for a prompt.

    Arrays (read them with the properties, `t[name]` or `t.take(name, index)`):

    =============  =====================================  =======  =============================
    key            shape                                  dtype    TransformerLens-style name
    =============  =====================================  =======  =============================
    embed          [pos, d_model]                         float32  hook_embed
    pos_embed      [pos, d_model]                         float32  hook_pos_embed
    resid          [layer + 1, pos, d_model]              float32  blocks.{L}.hook_resid_pre;
                                                                   the last entry is the final
                                                                   residual before ln_f
    attention      [layer, head, query_pos, key_pos]      float16  blocks.{L}.attn.hook_pattern
    mlp_post       [layer, pos, d_mlp]                    float32  blocks.{L}.mlp.hook_post
    ln_final       [pos, d_model]                         float32  ln_final.hook_normalized
    token_logprob  [pos]  ln p(token_i | tokens before i); NaN at position 0
    entropy        [pos]  entropy in bits of the next-token distribution after position i
    top_ids        [pos, k]  the k likeliest next tokens after position i (k = 10)
    top_probs      [pos, k]  their probabilities
    next_logits    [vocab]  logits for the token after the last position
    next_probs     [vocab]  softmax of next_logits
    =============  =====================================  =======  =============================

    On CPU the arrays are numpy views, marked read-only. On a GPU they stay torch
    tensors on the device, and `take(name, index)` copies only the indexed part to
    the host, so a page that shows one head moves one head.
    """

    model_name: str
    prompt: str
    token_ids: np.ndarray  # [pos] int64
    tokens: tuple[str, ...]  # display strings, see core.tokens
    n_dropped: int  # tokens cut off to fit the context window
    kept: str  # "first" or "last": which end of an over-long prompt was kept
    n_layer: int
    n_head: int
    _arrays: dict = field(repr=False)

    # ---- access -------------------------------------------------------------------
    def take(self, key: str, index=()) -> np.ndarray:
        """`self[key][index]` as a numpy array, copying only that part off the device."""
        arr = self._arrays[key]
        part = arr[index] if index != () else arr
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().numpy()
            part.flags.writeable = False
        return part

    def __getitem__(self, name: str) -> np.ndarray:
        """Array by TransformerLens-style name (see `names()`) or by key."""
        if name in self._arrays:
            return self.take(name)
        key, index = _resolve(name, self.n_layer)
        return self.take(key, index)

    def names(self) -> list[str]:
        per_layer = []
        for L in range(self.n_layer):
            per_layer += [f"blocks.{L}.hook_resid_pre", f"blocks.{L}.attn.hook_pattern", f"blocks.{L}.mlp.hook_post"]
        return ["hook_embed", "hook_pos_embed", *per_layer, f"blocks.{self.n_layer - 1}.hook_resid_post", "ln_final.hook_normalized"]

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes if isinstance(a, np.ndarray) else a.numel() * a.element_size() for a in self._arrays.values()))

    embed = property(lambda self: self.take("embed"))
    pos_embed = property(lambda self: self.take("pos_embed"))
    resid = property(lambda self: self.take("resid"))
    attention = property(lambda self: self.take("attention"))
    mlp_post = property(lambda self: self.take("mlp_post"))
    ln_final = property(lambda self: self.take("ln_final"))
    token_logprob = property(lambda self: self.take("token_logprob"))
    entropy = property(lambda self: self.take("entropy"))
    top_ids = property(lambda self: self.take("top_ids"))
    top_probs = property(lambda self: self.take("top_probs"))
    next_logits = property(lambda self: self.take("next_logits"))
    next_probs = property(lambda self: self.take("next_probs"))

    @property
    def surprisal_bits(self) -> np.ndarray:
        """[pos] -log2 p(token_i | tokens before i); NaN at position 0 (nothing predicts it)."""
        return -self.token_logprob / math.log(2)


_NAMED = {
    "hook_embed": ("embed", ()),
    "hook_pos_embed": ("pos_embed", ()),
    "ln_final.hook_normalized": ("ln_final", ()),
}
_PER_LAYER = {"hook_resid_pre": "resid", "attn.hook_pattern": "attention", "mlp.hook_post": "mlp_post"}


def _resolve(name: str, n_layer: int) -> tuple[str, tuple]:
    if name in _NAMED:
        return _NAMED[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        L, hook = int(parts[1]), parts[2]
        if L < n_layer and hook in _PER_LAYER:
            return _PER_LAYER[hook], (L,)
        if L == n_layer - 1 and hook == "hook_resid_post":
            return "resid", (n_layer,)
    raise KeyError(f"No activation called {name!r}; Trace.names() lists them.")


# ---- tokenization ----------------------------------------------------------------------
def prompt_ids(lm: LoadedModel, prompt: str, keep: str = "first") -> tuple[list[int], int]:
    """Token ids that fit the context window, and how many were dropped from the other end."""
    if keep not in ("first", "last"):
        raise ValueError("keep must be 'first' or 'last'")
    if not prompt or not prompt.strip():
        raise PromptError("The prompt is empty. Type or paste some text to see what GPT-2 does with it.")
    ids = lm.encode(prompt)
    if not ids:
        raise PromptError("The prompt has no tokens. Type or paste some text.")
    n_dropped = max(0, len(ids) - lm.n_ctx)
    if n_dropped:
        ids = ids[: lm.n_ctx] if keep == "first" else ids[-lm.n_ctx :]
    return ids, n_dropped


# ---- the forward -----------------------------------------------------------------------
def _attention_scale(attn, layer: int) -> float:
    scale = attn.head_dim**-0.5 if attn.scale_attn_weights else 1.0
    if attn.scale_attn_by_inverse_layer_idx:
        scale /= float(layer + 1)
    return scale


_QUERY_CHUNK = 128  # query rows of attention computed at once: only keys up to the chunk's end


def _attend(attn, x: torch.Tensor, mask: torch.Tensor, layer: int, n_head: int, pattern_out: torch.Tensor) -> torch.Tensor:
    """Causal self-attention of one block, writing the pattern [head, q, k] into `pattern_out`.

    Queries go in chunks, each against only the keys it can see, which halves the work
    of the full [head, pos, pos] scores and keeps temporaries small. Returns z @ W_O.
    """
    T, d = x.shape
    hs = d // n_head
    qkv = attn.c_attn(x)  # [pos, 3 d_model]
    q, k, v = (t.view(T, n_head, hs).transpose(0, 1) for t in qkv.split(d, dim=-1))  # (nh, T, hs)
    k_t = k.transpose(1, 2)  # (nh, hs, T)
    scale = _attention_scale(attn, layer)
    z = torch.empty(n_head, T, hs, device=x.device, dtype=x.dtype)
    scratch = torch.empty(n_head * min(_QUERY_CHUNK, T) * T, device=x.device, dtype=x.dtype)
    for s in range(0, T, _QUERY_CHUNK):
        e = min(s + _QUERY_CHUNK, T)
        pattern = scratch[: n_head * (e - s) * e].view(n_head, e - s, e)  # (nh, chunk, e), reused
        torch.baddbmm(mask[s:e, :e], q[:, s:e], k_t[:, :, :e], alpha=scale, out=pattern)  # scores
        torch.ops.aten._softmax.out(pattern, -1, False, out=pattern)  # in place: scores -> pattern
        pattern_out[:, s:e, :e] = pattern
        torch.bmm(pattern, v[:, :e], out=z[:, s:e])
    return attn.c_proj(z.transpose(0, 1).reshape(T, d))


def _unembed(lm_head: torch.nn.Module, final: torch.Tensor, ids: torch.Tensor, k: int) -> dict:
    """Per-position next-token facts from the final normalized residual [pos, d_model].

    Cheap identities instead of a log_softmax over [pos, vocab]: with p = softmax(l) and
    the top logit l* (probability p*), logsumexp(l) = l* - ln p*, entropy = lse - sum(p l).
    """
    T = final.shape[0]
    dev = final.device
    logprob = torch.full((T,), float("nan"), device=dev)
    entropy = torch.empty(T, device=dev)
    top_ids = torch.empty(T, k, dtype=torch.long, device=dev)
    top_probs = torch.empty(T, k, device=dev)
    W = lm_head.weight  # [vocab, d_model], tied to wte; GPT-2's lm_head has no bias
    chunk = min(_LOGIT_CHUNK, T)
    logits_buf = torch.empty(chunk, W.shape[0], device=dev, dtype=torch.float32)  # reused per chunk
    probs_buf = torch.empty_like(logits_buf)
    for s in range(0, T, _LOGIT_CHUNK):
        e = min(s + _LOGIT_CHUNK, T)
        logits, probs = logits_buf[: e - s], probs_buf[: e - s]
        torch.mm(final[s:e], W.t(), out=logits)  # [chunk, vocab]
        torch.ops.aten._softmax.out(logits, -1, False, out=probs)
        top_logit, ti = logits.topk(k, dim=-1)  # [chunk, k]
        rows = torch.arange(e - s, device=dev)
        lse = top_logit[:, 0] - torch.log(probs[rows, ti[:, 0]])  # [chunk]
        mean_logit = torch.bmm(probs.unsqueeze(1), logits.unsqueeze(2)).view(-1)
        entropy[s:e] = (lse - mean_logit) / math.log(2)
        top_ids[s:e], top_probs[s:e] = ti, torch.exp(top_logit - lse[:, None])
        nxt = ids[s + 1 : e + 1]  # the token that actually follows positions s..e-1
        n = len(nxt)
        logprob[s + 1 : s + 1 + n] = logits[rows[:n], nxt] - lse[:n]
        if e == T:
            next_logits, next_probs = logits[-1].clone(), probs[-1].clone()
    return dict(token_logprob=logprob, entropy=entropy, top_ids=top_ids, top_probs=top_probs, next_logits=next_logits, next_probs=next_probs)


def _allocator(device: torch.device):
    """Output buffers. On CPU numpy's allocator asks for huge pages, which makes filling
    ~450 MB of trace (at 1,024 tokens) about 3x cheaper than torch.empty's 4 KB pages."""
    def alloc(*shape: int, dtype=torch.float32) -> torch.Tensor:
        if device.type == "cpu":
            np_dtype = {torch.float32: np.float32, torch.float16: np.float16}[dtype]
            return torch.from_numpy(np.zeros(shape, dtype=np_dtype))
        return torch.zeros(*shape, dtype=dtype, device=device)

    return alloc


def _read_only(arrays: dict, device: torch.device) -> dict:
    if device.type != "cpu":
        return arrays
    out = {}
    for key, t in arrays.items():
        a = t.numpy()
        a.flags.writeable = False
        out[key] = a
    return out


def trace_ids(lm: LoadedModel, ids: list[int], *, prompt: str = "", n_dropped: int = 0, kept: str = "first") -> Trace:
    """Run GPT-2 once on token ids (at most n_ctx of them) and collect every activation."""
    if not 0 < len(ids) <= lm.n_ctx:
        raise PromptError(f"GPT-2 reads 1 to {lm.n_ctx} tokens at a time; got {len(ids)}.")
    tr, dev = lm.model.transformer, lm.device
    alloc = _allocator(dev)
    T, n_layer = len(ids), lm.n_layer
    with lm.forward_lock, torch.inference_mode():
        ids_t = torch.tensor(ids, dtype=torch.long, device=dev)
        embed = tr.wte(ids_t)  # [pos, d_model]
        pos_embed = tr.wpe(torch.arange(T, device=dev))
        mask = torch.full((T, T), float("-inf"), device=dev).triu_(1)  # causal: no key after the query
        resid = alloc(n_layer + 1, T, lm.d_model)
        attention = alloc(n_layer, lm.n_head, T, T, dtype=torch.float16)
        mlp_post = alloc(n_layer, T, tr.h[0].mlp.c_fc.nf)
        x = embed + pos_embed
        for L, block in enumerate(tr.h):
            resid[L] = x
            x = x + _attend(block.attn, block.ln_1(x), mask, L, lm.n_head, attention[L])
            mlp_post[L] = block.mlp.act(block.mlp.c_fc(block.ln_2(x)))  # [pos, d_mlp]
            x = x + block.mlp.c_proj(mlp_post[L])
        resid[n_layer] = x
        ln_final = tr.ln_f(x)
        arrays = dict(embed=embed, pos_embed=pos_embed, resid=resid, attention=attention, mlp_post=mlp_post, ln_final=ln_final)
        arrays.update(_unembed(lm.model.lm_head, ln_final, ids_t, min(TOP_K_PER_POSITION, lm.d_vocab)))
    return Trace(
        model_name=lm.name,
        prompt=prompt,
        token_ids=np.asarray(ids, dtype=np.int64),
        tokens=tuple(display_tokens(lm, ids)),
        n_dropped=n_dropped,
        kept=kept,
        n_layer=lm.n_layer,
        n_head=lm.n_head,
        _arrays=_read_only(arrays, dev),
    )


def trace(lm: LoadedModel, prompt: str, keep: str = "first") -> Trace:
    """Tokenize `prompt`, keep the first (or last) n_ctx tokens, run GPT-2 once, return a Trace.

    Raises PromptError for an empty prompt.
    """
    ids, n_dropped = prompt_ids(lm, prompt, keep)
    return trace_ids(lm, ids, prompt=prompt, n_dropped=n_dropped, kept=keep)


def estimate_trace_bytes(lm: LoadedModel, n_tokens: int) -> int:
    """Bytes a Trace of n_tokens will hold, to make room in a cache before computing it."""
    d_mlp = lm.model.transformer.h[0].mlp.c_fc.nf
    per_layer = lm.n_head * n_tokens * n_tokens * 2 + n_tokens * (d_mlp + lm.d_model) * 4
    return lm.n_layer * per_layer + n_tokens * lm.d_model * 4 * 4 + lm.d_vocab * 8
