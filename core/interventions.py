"""Experiments: knock out heads, neurons or MLP layers, and patch activations from one prompt's
run into another's, then see how the prediction moves.

Every intervention runs on this request's own computation, core's forward over the
checkpoint's modules, starting from the trace's stored residual at the first layer it
touches: never a hook on the shared model, so nothing has to be undone and another
session tracing at the same moment sees the unmodified network. Runs that try many
interventions (a scan over every head, patching every position) batch them: one copy of
the prompt per intervention, one forward for a whole layer's worth.

Dimension names as in core.trace: batch layer head pos d_model d_head d_mlp vocab.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch

from i18n import _

from .arch import Edit
from .arch import run_blocks as arch_run_blocks
from .cache import LayerArrays
from .model import LoadedModel
from .trace import Trace, trace
from .unembed import next_token_facts


def run_blocks(lm: LoadedModel, x: torch.Tensor, start: int, edit: Edit | None = None) -> torch.Tensor:
    """Blocks start..n_layer-1 on a batch of residuals x [batch, pos, d_model] -> the final
    residual (before ln_f), through the one block (core.arch) with `edit` applied."""
    return arch_run_blocks(lm.arch, x, start, edit=edit)


def last_logits(lm: LoadedModel, final: torch.Tensor) -> torch.Tensor:
    """[batch, pos, d_model] final residuals -> [batch, vocab] logits of the next token."""
    return lm.arch.logits(final[:, -1])


# ---- ablation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ablation:
    """The prediction with some parts knocked out. next_probs [vocab]; token_logprob [pos]
    (ln p of each prompt token given the ones before it, NaN at 0); entropy [pos] in bits."""

    next_probs: np.ndarray
    next_logits: np.ndarray
    token_logprob: np.ndarray
    entropy: np.ndarray


def _check(lm: LoadedModel, heads, neurons, mlp_layers, mode: str) -> None:
    if mode not in ("zero", "mean"):
        raise ValueError("mode must be 'zero' or 'mean'")
    for L, h in heads:
        if not (0 <= L < lm.n_layer and 0 <= h < lm.n_head):
            raise ValueError(_("There is no head {head} in layer {layer}: {n_layer} layers of {n_head} heads.").format(
                head=h, layer=L, n_layer=lm.n_layer, n_head=lm.n_head))
    d_mlp = lm.d_mlp
    for L, n in neurons:
        if not (0 <= L < lm.n_layer and 0 <= n < d_mlp):
            raise ValueError(
                _("There is no neuron {neuron} in layer {layer}: {n_layer} layers of {d_mlp} neurons.").format(
                    neuron=n, layer=L, n_layer=lm.n_layer, d_mlp=d_mlp))
    for L in mlp_layers:
        if not 0 <= L < lm.n_layer:
            raise ValueError(_("There is no MLP layer {layer}: the layers are 0–{last}.").format(
                layer=L, last=lm.n_layer - 1))


def _as_trace(lm: LoadedModel, t: Trace | str) -> Trace:
    return trace(lm, t) if isinstance(t, str) else t


def ablate(lm: LoadedModel, t: Trace | str, heads: Iterable[tuple[int, int]] = (),
           neurons: Iterable[tuple[int, int]] = (), mlp_layers: Iterable[int] = (), mode: str = "zero",
           features=None) -> Ablation:
    """The prompt of trace `t` run again with the given heads (their output z), MLP neurons
    (activation after GELU) and whole MLP layers (their output) set to zero, or to their mean
    over the prompt's positions (mode="mean"), and SAE features changed (`features`, a
    core.features.FeatureChange: knocked out or clamped). Ablating nothing gives the trace's own
    numbers. `t` may also be a prompt, traced first."""
    t = _as_trace(lm, t)
    heads, neurons, mlp_layers = sorted(set(heads)), sorted(set(neurons)), sorted(set(mlp_layers))
    _check(lm, heads, neurons, mlp_layers, mode)
    touched = [L for L, _ in heads] + [L for L, _ in neurons] + list(mlp_layers)
    feature_start, feature_edit = features.edit(lm) if features is not None else (lm.n_layer, {})
    start = min(touched + [feature_start])
    mean = mode == "mean"

    def edit_z(L, z):
        for layer, h in heads:
            if layer == L:
                z[:, h] = t.layer_tensor(L, "z")[:, h].mean(0) if mean else 0.0
        return z

    def edit_post(L, post):
        for layer, n in neurons:
            if layer == L:
                post[..., n] = t.layer_tensor(L, "mlp_post")[:, n].mean() if mean else 0.0
        return post

    def edit_mlp_out(L, out):
        if L in mlp_layers:
            out = t.layer_tensor(L, "mlp_out").mean(0).expand_as(out).clone() if mean else torch.zeros_like(out)
        return out

    change_out = feature_edit.get("mlp_out")
    edit = Edit(z=edit_z, mlp_post=edit_post, resid_pre=feature_edit.get("resid_pre"),
                attn_out=feature_edit.get("attn_out"),
                mlp_out=(lambda L, out: change_out(L, edit_mlp_out(L, out))) if change_out else edit_mlp_out)
    with torch.inference_mode():
        final = run_blocks(lm, t.tensor("resid", (start,))[None], start, edit)[0]
        if "final" in feature_edit:
            final = feature_edit["final"](final)
        ids = torch.as_tensor(t.token_ids, device=final.device)
        facts = next_token_facts(lm.arch.W_U, lm.arch.ln_f(final), ids, 1)
    host = {k: v.cpu().numpy() for k, v in facts.items()}
    return Ablation(next_probs=host["next_probs"], next_logits=host["next_logits"],
                    token_logprob=host["token_logprob"], entropy=host["entropy"])


def head_ablation_scan(lm: LoadedModel, t: Trace | str, target_token: int, *, mode: str = "zero",
                       on_layer: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """How much knocking out each head, and each whole MLP layer, alone, changes the log-
    probability of `target_token` after the prompt: heads [layer, head] and mlp [layer], in
    nats (negative: the part helped predict it). One batched forward per layer, from that
    layer's stored residual: n_head + 1 copies of the prompt. Each layer is kept in the
    trace's cache, so a stopped scan resumes where it stopped. `t` may also be a prompt."""
    t = _as_trace(lm, t)
    if not 0 <= target_token < lm.d_vocab:
        raise ValueError(_("Token id {token} is not in the vocabulary (0–{last}).").format(
            token=target_token, last=lm.d_vocab - 1))
    _check(lm, [], [], [], mode)
    H = lm.n_head
    base = float(np.log(t.next_probs[target_token]))
    heads, mlp = np.empty((lm.n_layer, H)), np.empty(lm.n_layer)
    for L in range(lm.n_layer):
        def compute(L=L):
            z_mean = t.layer_tensor(L, "z").mean(0) if mode == "mean" else None  # [head, d_head]
            out_mean = t.layer_tensor(L, "mlp_out").mean(0) if mode == "mean" else None

            def edit_z(layer, z):  # copy b < H loses head b at layer L
                if layer == L:
                    for b in range(H):
                        z[b, b] = z_mean[b] if z_mean is not None else 0.0
                return z

            def edit_mlp_out(layer, out):  # copy H loses layer L's MLP
                if layer == L:
                    out[H] = out_mean if out_mean is not None else 0.0
                return out

            with torch.inference_mode():
                x = t.tensor("resid", (L,))[None].repeat(H + 1, 1, 1)
                logp = torch.log_softmax(
                    last_logits(lm, run_blocks(lm, x, L, Edit(z=edit_z, mlp_out=edit_mlp_out))), -1)
            return LayerArrays(delta=(logp[:, target_token].double().cpu().numpy() - base))
        got = t.memo(("head_ablation_scan", mode, target_token, L), compute,
                     on_miss=on_layer and (lambda L=L: on_layer(L)))["delta"]
        heads[L], mlp[L] = got[:H], got[H]
    return {"heads": heads, "mlp": mlp, "base_logprob": np.array(base)}


# ---- activation patching --------------------------------------------------------------------------
def answer_tokens(clean: Trace, corrupted: Trace) -> tuple[int, int]:
    """The tokens the logit difference compares: each run's own likeliest next token (the
    corrupted run's second likeliest when both agree)."""
    a = int(clean.top_ids[-1, 0])
    b = int(corrupted.top_ids[-1, 0])
    return a, (b if b != a else int(corrupted.top_ids[-1, 1]))


def _logit_diff(logits: torch.Tensor, a: int, b: int) -> torch.Tensor:
    return logits[..., a] - logits[..., b]


def patch(lm: LoadedModel, clean: Trace | str, corrupted: Trace | str, what: str = "resid", *,
          answers: tuple[int, int] | None = None, on_layer: Callable[[int], None] | None = None) -> dict:
    """Activation patching: copy one activation of the clean run into the corrupted run and
    measure how much of the clean-vs-corrupted logit difference comes back, 0 = as corrupted,
    1 = as clean: (LD_patched - LD_corrupted) / (LD_clean - LD_corrupted), LD = logit(answer a)
    - logit(answer b) for the next token.

    what="resid": the residual stream before each block at one position -> grid [layer, pos];
    what="head": one head's output z at every position -> grid [layer, head].
    Both prompts must have the same number of tokens (ValueError otherwise, with the counts).
    Either may be given as a prompt, traced first."""
    clean, corrupted = _as_trace(lm, clean), _as_trace(lm, corrupted)
    if what not in ("resid", "head"):
        raise ValueError("what must be 'resid' or 'head'")
    if clean.n_tokens != corrupted.n_tokens:
        raise ValueError(_("The prompts have {a} and {b} tokens; patching needs the same number, position by "
                           "position.").format(a=clean.n_tokens, b=corrupted.n_tokens))
    a, b = answers if answers is not None else answer_tokens(clean, corrupted)
    ld_clean = float(clean.next_logits[a] - clean.next_logits[b])
    ld_corrupt = float(corrupted.next_logits[a] - corrupted.next_logits[b])
    if abs(ld_clean - ld_corrupt) < 1e-6:
        raise ValueError(_("Both prompts give the two answers the same logit difference, so there is nothing to "
                           "restore; pick prompts whose predictions differ."))
    T, H = clean.n_tokens, lm.n_head
    grid = np.empty((lm.n_layer, T if what == "resid" else H))
    for L in range(lm.n_layer):
        def compute(L=L):
            with torch.inference_mode():
                x = corrupted.tensor("resid", (L,))[None].repeat(grid.shape[1], 1, 1)
                edit = None
                if what == "resid":
                    rows = torch.arange(T)
                    x[rows, rows] = clean.tensor("resid", (L,))  # copy p gets the clean residual at position p
                else:
                    z_clean = clean.layer_tensor(L, "z").transpose(0, 1)  # [head, pos, d_head]

                    def edit_z(layer, z):
                        if layer == L:
                            for h in range(H):
                                z[h, h] = z_clean[h]
                        return z
                    edit = Edit(z=edit_z)
                ld = _logit_diff(last_logits(lm, run_blocks(lm, x, L, edit)), a, b)
            return LayerArrays(restored=((ld.double().cpu().numpy() - ld_corrupt) / (ld_clean - ld_corrupt)))
        grid[L] = corrupted.memo(("patch", what, clean.key, a, b, L), compute,
                                 on_miss=on_layer and (lambda L=L: on_layer(L)))["restored"]
    return {"grid": grid, "answers": (a, b), "logit_diff_clean": ld_clean, "logit_diff_corrupted": ld_corrupt}


def surprisal_change_bits(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """[pos] how much harder each prompt token became to predict, in bits (up: harder): ln p
    before minus ln p after (a trace's and an Ablation's token_logprob), over ln 2. NaN at 0."""
    return (before - after) / 0.6931471805599453


def parse_neurons(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    """MLP neurons typed as "layer:neuron, …" ("0:17, 5:300"): the (layer, neuron) pairs read,
    and the comma-separated parts that could not be read, as typed (stripped)."""
    neurons, bad = [], []
    for part in filter(None, (p.strip() for p in text.split(","))):
        layer_s, _, neuron_s = part.partition(":")
        if layer_s.strip().isdigit() and neuron_s.strip().isdigit():
            neurons.append((int(layer_s), int(neuron_s)))
        else:
            bad.append(part)
    return neurons, bad


# ---- prompts and tokens for the experiments -------------------------------------------------------------
def pad_to_same_length(lm: LoadedModel, a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
    """Two token lists made the same length by putting GPT-2's <|endoftext|> (its document
    boundary, which it reads as "a text starts here") before the shorter one."""
    pad = lm.tokenizer.bos_token_id if lm.tokenizer.bos_token_id is not None else lm.tokenizer.eos_token_id
    n = max(len(a), len(b))
    return [pad] * (n - len(a)) + list(a), [pad] * (n - len(b)) + list(b)


def single_token(lm: LoadedModel, text: str) -> int:
    """The id of `text` if it is exactly one token of the vocabulary (" learn", "Paris"), else
    ValueError saying how it splits."""
    ids = lm.encode(text)
    if len(ids) != 1:
        from .tokens import display_tokens

        pieces = " + ".join(display_tokens(lm, ids)) if ids else _("nothing")
        raise ValueError(_("“{text}” is {n} tokens ({pieces}), not one. Type a single token, usually a word with "
                           "its leading space, such as “ learn”.").format(text=text, n=len(ids), pieces=pieces))
    return ids[0]


def interventions_seconds(lm: LoadedModel, n_tokens: int, copies: int) -> float:
    """A rough guess of a scan's or a patching run's seconds on a 2-core CPU: `copies` of the
    prompt through, on average, half the blocks, for every layer; ~24 d_model² flops per token
    per block at 60 GFLOP/s (measured ~100 for GPT-2 small's shape at 20 tokens: 2.8 s)."""
    blocks = lm.n_layer * (lm.n_layer + 1) / 2
    return copies * blocks * n_tokens * 24 * lm.d_model**2 / 60e9
