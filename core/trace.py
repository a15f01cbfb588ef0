"""One forward pass of GPT-2 -> a Trace: the residual stream, kept; everything per layer, on request.

The forward (`trace_ids`) keeps what is small and costly to recompute: the token and
position embeddings, the residual stream before every block and after the last (before
`ln_f`), each query's log-sum-exp of attention scores, the per-head summaries the head
atlas reads, and the per-position next-token facts. For gpt2-xl at 1,024 tokens that
is ~330 MB instead of the 3.9 GB that every pattern and MLP activation would take.

Everything per layer (patterns, pre-softmax scores, z, attention and MLP outputs,
resid_mid, MLP activations) is recomputed from that layer's stored residual by the same
block maths the forward ran (`core.arch`), when asked (`Trace.layer`), and kept in a byte-bounded
cache per (model, tokens, layer, kind). Reading one layer costs about one block.

Dimension names, as in TransformerLens: layer head query_pos key_pos pos d_model d_mlp d_head vocab.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from i18n import _

from .arch import EditFn, attend, attn_out, block, head_patterns, head_summaries, mlp, qkv
from .cache import ByteBoundedCache, LayerArrays, budget_for, shared_cache
from .model import LoadedModel
from .names import activation_names, by_name
from .tokens import display_tokens
from .unembed import next_token_facts

TOP_K_PER_POSITION = 10
WHOLE_ARRAY_MAX_BYTES = 1 << 30  # `t.attention` / `t.mlp_post` refuse to build more than this

# Public per-layer activation name -> (kind `Trace.layer` computes, key in it).
LAYER_NAMES: dict[str, tuple[str, str]] = {
    "z": ("attn", "z"),  # [pos, head, d_head]
    "attn_out": ("attn", "attn_out"),  # [pos, d_model], W_O and its bias included
    "resid_mid": ("attn", "resid_mid"),  # [pos, d_model], resid_pre + attn_out
    "mlp_pre": ("mlp", "pre"),  # [pos, d_mlp], before the activation
    "mlp_post": ("mlp", "post"),  # [pos, d_mlp], after it
    "mlp_out": ("mlp", "out"),  # [pos, d_model]
}


class PromptError(ValueError):
    """The prompt cannot be traced (for example it is empty). The message is for a person."""


def _host(x, index=()) -> np.ndarray:
    """x[index] as a read-only numpy array, copying only that part off the device."""
    part = x[index] if index != () else x
    if isinstance(part, torch.Tensor):
        part = part.detach().cpu().numpy()
    part = np.asarray(part).view()
    part.flags.writeable = False
    return part


@dataclass(frozen=True, eq=False)
class Trace:
    """What one forward pass of GPT-2 computed for a prompt, and the means to recompute the rest.

    Stored (read with the properties, `t[name]` or `t.take(key, index)`):

    ==============  ==========================  ===================================================
    key             shape                       meaning (TransformerLens-style name)
    ==============  ==========================  ===================================================
    embed           [pos, d_model]              hook_embed
    pos_embed       [pos, d_model]              hook_pos_embed
    resid           [layer + 1, pos, d_model]   blocks.{L}.hook_resid_pre; the last entry is the
                                                final residual before ln_f (hook_resid_post of
                                                the last block)
    lse             [layer, head, pos]          log-sum-exp of each query's scaled scores
    head_previous   [layer, head]               mean weight on the previous token (queries 1..)
    head_first      [layer, head]               mean weight on the first token
    head_self       [layer, head]               mean weight on itself
    token_logprob   [pos]                       ln p(token_i | tokens before i); NaN at 0
    entropy         [pos]                       bits, of the next-token distribution after i
    top_ids         [pos, k]                    the k likeliest next tokens after i (k = 10)
    top_probs       [pos, k]                    their probabilities
    next_logits     [vocab]                     logits for the token after the last position
    next_probs      [vocab]                     softmax of next_logits
    ==============  ==========================  ===================================================

    Per layer, computed on request and cached: `t.pattern(L, head)`, `t.attn_scores(L, head)`
    and `t.layer_act(L, name)` for name in LAYER_NAMES (z, attn_out, resid_mid, mlp_pre,
    mlp_post, mlp_out), or by name: `t["blocks.3.attn.hook_pattern"]`. `t.attention` and
    `t.mlp_post` assemble every layer, for short prompts.

    On CPU arrays are read-only numpy views. On a GPU everything stays on the device and
    only the part asked for is copied to the host.
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
    lm: LoadedModel | None = field(default=None, repr=False)
    cache: ByteBoundedCache | None = field(default=None, repr=False)
    variant: str = ""  # names a change to the forward (a steering vector): part of the cache key

    # ---- stored arrays ------------------------------------------------------------------
    def take(self, key: str, index=()) -> np.ndarray:
        """`self[key][index]` for a stored array, copying only that part off the device."""
        return _host(self._arrays[key], index)

    def tensor(self, key: str, index=()) -> torch.Tensor:
        """A stored array (or part of it) as a tensor on the model's device, for core's maths."""
        arr = self._arrays[key]
        part = arr[index] if index != () else arr
        return part if isinstance(part, torch.Tensor) else torch.from_numpy(np.array(part))

    def stores(self, key: str) -> bool:
        """Whether `key` is one of the stored arrays (see the table above)."""
        return key in self._arrays

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        """Bytes the trace itself holds (per-layer arrays live in the cache)."""
        return int(sum(a.nbytes if isinstance(a, np.ndarray) else a.numel() * a.element_size()
                       for a in self._arrays.values()))

    @property
    def key(self) -> tuple:
        device = str(self.lm.device) if self.lm is not None else "cpu"
        return (self.model_name, device, self.token_ids.tobytes()) + ((self.variant,) if self.variant else ())

    embed = property(lambda self: self.take("embed"))
    pos_embed = property(lambda self: self.take("pos_embed"))
    resid = property(lambda self: self.take("resid"))
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

    # ---- per layer, on request ----------------------------------------------------------
    def _check(self, layer: int, head: int | None) -> None:
        if not 0 <= layer < self.n_layer:
            raise IndexError(f"layer {layer} does not exist; this model has layers 0–{self.n_layer - 1}.")
        if head is not None and not 0 <= head < self.n_head:
            raise IndexError(f"head {head} does not exist; this model has heads 0–{self.n_head - 1}.")
        if self.lm is None:
            raise RuntimeError("This Trace was built without its model, so per-layer arrays cannot be computed.")

    def layer(self, layer: int, kind: str, head: int | None = None) -> LayerArrays:
        """The arrays of one kind for one layer, recomputed from the stored residual by the
        block's own maths (core.arch) and kept in the byte-bounded cache: "attn" (z [pos, head,
        d_head], attn_out, resid_mid), "mlp" (pre, post, out), "pattern" or "scores" ([head,
        query_pos, key_pos] of every head, or of `head` alone: [1, query_pos, key_pos])."""
        self._check(layer, head)
        if head is not None and kind in ("pattern", "scores") and (self.key, layer, kind, None) in self.cache:
            whole = self.layer(layer, kind)  # the whole layer is cached already: slice it
            return LayerArrays({kind: whole[kind][head : head + 1]})
        return self.cache.get_or_compute(
            (self.key, layer, kind, head),
            lambda: self._compute_layer(layer, kind, head),
            expected_bytes=layer_bytes(self.lm, self.n_tokens, kind, head),
            label=_layer_label(layer, kind, head, self.n_tokens),
        )

    def _compute_layer(self, layer: int, kind: str, head: int | None) -> LayerArrays:
        w = self.lm.arch.blocks[layer]
        with torch.inference_mode():
            x = self.tensor("resid", (layer,))  # [pos, d_model]
            if kind == "attn":  # exactly the attention the forward ran: resid_mid + mlp_out is the next residual
                z, _ = attend(*qkv(w, x), w.scale, upcast=w.upcast)
                out = attn_out(w, z)
                return LayerArrays(z=z.transpose(0, 1).contiguous(), attn_out=out, resid_mid=x + out)
            if kind == "mlp":
                pre, post, out = mlp(w, self.layer(layer, "attn")["resid_mid"])
                return LayerArrays(pre=pre, post=post, out=out)
            if kind in ("pattern", "scores"):
                heads = range(self.n_head) if head is None else [head]
                h = w.ln1(x)
                q, k = w.project(h, 0, heads), w.project(h, 1, heads)  # [head, pos, d_head], head by head
                return LayerArrays({kind: head_patterns(q, k, w.scale, scores_only=kind == "scores")})
        raise ValueError(f"unknown per-layer kind {kind!r}")

    def memo(self, name: tuple, compute, label: str = "", on_miss=None) -> LayerArrays:
        """compute() -> LayerArrays, once per trace and name, kept in the trace's cache
        (for what a view derives from many layers: pooled grids, summaries); `label` says what it
        does while a page waits for it. compute() runs on the compute lane's thread (core.lane), so
        progress for a page goes in `on_miss()`, called here first when the result is not cached."""
        key = (self.key, "memo", name)
        if on_miss is not None and key not in self.cache:
            on_miss()
        return self.cache.get_or_compute(key, compute, label=label)

    def prefetch_memo(self, name: tuple, compute, label: str = "") -> bool:
        """`memo(name, compute)` done ahead, when the compute lane has nothing asked of it; a `memo` of
        the same name meanwhile joins it. True when it was queued."""
        return self.cache.prefetch((self.key, "memo", name), compute, label=label)

    def pattern(self, layer: int, head: int | None = None, *, keep: bool = True) -> np.ndarray:
        """float32 attention pattern of a layer [head, query_pos, key_pos], or of one head
        [query_pos, key_pos]. Rows sum to 1; 0 above the diagonal. keep=False computes a
        pattern that is not cached yet without caching it (for views that pool it)."""
        return _host(self.pattern_tensor(layer, head, keep=keep))

    def pattern_tensor(self, layer: int, head: int | None = None, *, keep: bool = True) -> torch.Tensor:
        """`pattern`, as a tensor on the model's device (for core's maths: nothing is copied)."""
        if not keep and not any((self.key, layer, "pattern", h) in self.cache for h in (None, head)):
            self._check(layer, head)
            arr = self._compute_layer(layer, "pattern", head)["pattern"]
        else:
            arr = self.layer(layer, "pattern", head)["pattern"]
        return arr if head is None else arr[0]

    def attn_scores(self, layer: int, head: int | None = None) -> np.ndarray:
        """float32 pre-softmax scores q·k·scale, like `pattern`; -inf above the diagonal."""
        arr = self.layer(layer, "scores", head)["scores"]
        return _host(arr, () if head is None else (0,))

    def layer_act(self, layer: int, name: str, index=()) -> np.ndarray:
        """One per-layer activation (see LAYER_NAMES), optionally indexed, e.g. (slice(None), 3)."""
        if name not in LAYER_NAMES:
            raise KeyError(f"No per-layer activation called {name!r}; choose from {', '.join(LAYER_NAMES)}.")
        kind, key = LAYER_NAMES[name]
        return _host(self.layer(layer, kind)[key], index)

    def layer_tensor(self, layer: int, name: str) -> torch.Tensor:
        """`layer_act` as the cached tensor on the model's device, for core's maths (no copy;
        do not modify it)."""
        kind, key = LAYER_NAMES[name]
        return self.layer(layer, kind)[key]

    def _whole(self, per_layer, shape: tuple[int, ...]) -> np.ndarray:
        nbytes = 4 * math.prod(shape)
        if nbytes > WHOLE_ARRAY_MAX_BYTES:
            raise MemoryError(f"The whole array would take {nbytes / 2**20:,.0f} MB; read one layer at a time "
                              "(t.pattern(L), t.layer_act(L, name)) instead.")
        return np.stack([per_layer(L) for L in range(self.n_layer)])

    @property
    def attention(self) -> np.ndarray:
        """[layer, head, query_pos, key_pos] float32, every layer's pattern (short prompts)."""
        n = self.n_tokens
        return self._whole(self.pattern, (self.n_layer, self.n_head, n, n))

    @property
    def mlp_post(self) -> np.ndarray:
        """[layer, pos, d_mlp] float32, every layer's MLP activations after GELU (short prompts)."""
        return self._whole(lambda L: self.layer_act(L, "mlp_post"), (self.n_layer, self.n_tokens, self.lm.d_mlp))

    # ---- by TransformerLens name ----------------------------------------------------------
    def names(self) -> list[str]:
        """Every name `t[name]` answers to (see core.names)."""
        return activation_names(self)

    def __getitem__(self, name: str) -> np.ndarray:
        """An array by TransformerLens-style name (see `names()`) or by stored key."""
        return _host(by_name(self, name))


# ---- tokenization ----------------------------------------------------------------------
def _layer_label(layer: int, kind: str, head: int | None, n_tokens: int) -> str:
    """What recomputing one layer's arrays does, in the page's language (shown while a page waits)."""
    if kind in ("pattern", "scores"):
        if head is None:
            return _("Computing the attention patterns of layer {layer}'s heads over {n:,} tokens…").format(
                layer=layer, n=n_tokens)
        return _("Computing head {layer}.{head}'s attention pattern over {n:,} tokens…").format(
            layer=layer, head=head, n=n_tokens)
    if kind == "mlp":
        return _("Computing layer {layer}'s MLP over {n:,} tokens…").format(layer=layer, n=n_tokens)
    return _("Computing layer {layer}'s attention over {n:,} tokens…").format(layer=layer, n=n_tokens)


def prompt_ids(lm: LoadedModel, prompt: str, keep: str = "first") -> tuple[list[int], int]:
    """Token ids that fit the context window, and how many were dropped from the other end."""
    if keep not in ("first", "last"):
        raise ValueError("keep must be 'first' or 'last'")
    if not prompt or not prompt.strip():
        raise PromptError(_("The prompt is empty. Type or paste some text to see what GPT-2 does with it."))
    ids = lm.encode(prompt)
    if not ids:
        raise PromptError(_("The prompt has no tokens. Type or paste some text."))
    n_dropped = max(0, len(ids) - lm.n_ctx)
    if n_dropped:
        ids = ids[: lm.n_ctx] if keep == "first" else ids[-lm.n_ctx :]
    return ids, n_dropped


# ---- the forward -----------------------------------------------------------------------
def _run(lm: LoadedModel, ids_t: torch.Tensor, flash: bool, steer: EditFn | None = None) -> dict:
    arch, T, H = lm.arch, len(ids_t), lm.n_head
    dev = ids_t.device
    embed, pos_embed = arch.embed(ids_t)  # [pos, d_model] each
    resid = torch.empty(lm.n_layer + 1, T, lm.d_model, device=dev)
    lse = torch.empty(lm.n_layer, H, T, device=dev)
    stats = torch.empty(3, lm.n_layer, H, device=dev)
    torch.add(embed, pos_embed, out=resid[0])
    for L, w in enumerate(arch.blocks):
        if steer is not None:  # the stored residual is the steered one, so each layer recomputes from it
            resid[L] = steer(L, resid[L])
        run = block(w, resid[L], flash=flash, out=resid[L + 1])
        lse[L] = run.lse
        stats[:, L] = head_summaries(run.q, run.k, run.lse, w.scale)
    arrays = dict(embed=embed, pos_embed=pos_embed, resid=resid, lse=lse,
                  head_previous=stats[0], head_first=stats[1], head_self=stats[2])
    arrays.update(next_token_facts(arch.W_U, arch.ln_f(resid[-1]), ids_t, min(TOP_K_PER_POSITION, lm.d_vocab)))
    return arrays


def trace_ids(lm: LoadedModel, ids: list[int], *, prompt: str = "", n_dropped: int = 0, kept: str = "first",
              cache: ByteBoundedCache | None = None, flash: bool = True, steer: EditFn | None = None,
              variant: str = "") -> Trace:
    """Run GPT-2 once on token ids (at most n_ctx of them) and keep the residual stream.

    `cache` holds the per-layer arrays computed later (default: one shared per process).
    `flash=False` runs the portable chunked attention that GPUs use, for tests. `steer(layer, x)`
    changes the residual before each block (core.steering), and `variant` names that change in
    the trace's cache key, so a steered trace never shares cached layers with the plain one."""
    if not 0 < len(ids) <= lm.n_ctx:
        raise PromptError(_("GPT-2 reads 1 to {n_ctx} tokens at a time; got {n}.").format(n_ctx=lm.n_ctx, n=len(ids)))
    with lm.forward_lock, torch.inference_mode():
        arrays = _run(lm, torch.tensor(ids, dtype=torch.long, device=lm.device), flash, steer)
    if lm.device.type == "cpu":
        arrays = {k: v.numpy() for k, v in arrays.items()}
        for a in arrays.values():
            a.flags.writeable = False
    return Trace(
        model_name=lm.name, prompt=prompt, token_ids=np.asarray(ids, dtype=np.int64),
        tokens=tuple(display_tokens(lm, ids)), n_dropped=n_dropped, kept=kept,
        n_layer=lm.n_layer, n_head=lm.n_head, _arrays=arrays, lm=lm,
        cache=cache if cache is not None else shared_cache(), variant=variant,
    )


def trace(lm: LoadedModel, prompt: str, keep: str = "first", **kwargs) -> Trace:
    """Tokenize `prompt`, keep the first (or last) n_ctx tokens, run GPT-2 once, return a Trace.

    Raises PromptError for an empty prompt.
    """
    ids, n_dropped = prompt_ids(lm, prompt, keep)
    return trace_ids(lm, ids, prompt=prompt, n_dropped=n_dropped, kept=keep, **kwargs)


def estimate_trace_bytes(lm: LoadedModel, n_tokens: int) -> int:
    """Bytes a Trace of n_tokens holds (not counting per-layer arrays computed later)."""
    T, L, H, d = n_tokens, lm.n_layer, lm.n_head, lm.d_model
    k = min(TOP_K_PER_POSITION, lm.d_vocab)
    return 4 * ((L + 3) * T * d + L * H * T + 3 * L * H + 2 * T + 3 * T * k + 2 * lm.d_vocab)


def layer_bytes(lm: LoadedModel, n_tokens: int, kind: str, head: int | None = None) -> int:
    """Bytes `Trace.layer` keeps for one layer of a kind, to make room in the cache before computing."""
    T, d = n_tokens, lm.d_model
    if kind == "attn":
        return 4 * 3 * T * d
    if kind == "mlp":
        return 4 * T * (2 * lm.d_mlp + d)
    return 4 * (1 if head is not None else lm.n_head) * T * T


def cache_budget_for(lm: LoadedModel) -> int:
    """Cache bytes for this model: a full-length trace plus several whole layers of patterns."""
    return budget_for(estimate_trace_bytes(lm, lm.n_ctx), layer_bytes(lm, lm.n_ctx, "pattern"))
