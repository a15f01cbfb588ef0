"""Sparse features of a Trace: which fire on each token, how well the SAE rebuilds the activation,
and which features make a prediction, estimated by gradient × activation and checked by removal.

Every computation reads the trace's stored residual (and per-layer arrays), applies the SAE
(core.sae) and, where it changes the activation, reruns the network from that point through
the one block (core.arch) with the change as an `Edit`: the shared model is never touched.

Dimension names: batch pos d_in d_sae vocab.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .arch import Edit, run_blocks
from .cache import LayerArrays
from .model import LoadedModel
from .sae import SparseAutoencoder, check_fits, directions, encode, encode_prepared, prepare, reconstruct, unprepare
from .trace import Trace

_ENCODE_ROWS = 256  # positions encoded at once: [256, d_sae] floats (25 MB for 24,576 features)


def site_activation(t: Trace, sae: SparseAutoencoder) -> torch.Tensor:
    """[pos, d_in]: the activation the SAE reads, from the trace (no forward)."""
    if sae.site == "hook_resid_pre":
        return t.tensor("resid", (sae.layer,))
    if sae.site == "hook_resid_post":
        return t.tensor("resid", (sae.layer + 1,))
    return t.layer_tensor(sae.layer, {"hook_resid_mid": "resid_mid", "hook_attn_out": "attn_out",
                                      "hook_mlp_out": "mlp_out"}[sae.site])


@dataclass(frozen=True)
class FeatureActs:
    """The prompt's feature activations, sparse by position (CSR): the features active at
    position p are indices[indptr[p]:indptr[p + 1]] with activations values[...], strongest first.
    error_norm [pos]: |x - reconstruction|; variance_explained: 1 - |error|² / |x - mean over pos|²."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    d_sae: int
    error_norm: np.ndarray
    variance_explained: float

    @property
    def l0(self) -> np.ndarray:
        """[pos] how many features are active at each position."""
        return np.diff(self.indptr)

    def at(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(feature ids, activations) active at `pos`, strongest first."""
        s = slice(self.indptr[pos], self.indptr[pos + 1])
        return self.indices[s], self.values[s]

    def dense(self, features) -> np.ndarray:
        """[pos, len(features)] float32: the given features' activations at every position."""
        features = np.asarray(features, dtype=np.int64)
        out = np.zeros((len(self.indptr) - 1, len(features)), dtype=np.float32)
        rows = np.repeat(np.arange(len(self.indptr) - 1), self.l0)
        column = {int(f): j for j, f in enumerate(features)}
        hit = np.isin(self.indices, features)
        out[rows[hit], [column[int(f)] for f in self.indices[hit]]] = self.values[hit]
        return out

    def strongest(self, k: int) -> np.ndarray:
        """The k features with the largest activation anywhere in the prompt, strongest first."""
        best = np.zeros(self.d_sae, dtype=np.float32)
        np.maximum.at(best, self.indices, self.values)
        order = np.argsort(-best, kind="stable")[:k]
        return order[best[order] > 0]


def feature_acts(lm: LoadedModel, t: Trace, sae: SparseAutoencoder) -> FeatureActs:
    """The SAE's features on the prompt, computed once per trace and SAE (kept sparse in the trace's cache)."""
    check_fits(lm, sae)

    def compute() -> LayerArrays:
        x = site_activation(t, sae)
        indptr, indices, values, err = [np.zeros(1, np.int64)], [], [], []
        with torch.inference_mode():
            for s in range(0, len(x), _ENCODE_ROWS):
                rows = x[s:s + _ENCODE_ROWS]
                prepared, undo = prepare(sae, rows)
                f = encode_prepared(sae, prepared)  # [rows, d_sae]
                err.append((rows - unprepare(sae, f @ sae.W_dec + sae.b_dec, undo)).norm(dim=-1))
                nz = f > 0
                counts = nz.sum(-1)
                vals = torch.where(nz, f, 0).sort(dim=-1, descending=True)
                width = int(counts.max()) if len(counts) else 0
                keep = torch.arange(width)[None, :] < counts[:, None]
                indices.append(vals.indices[:, :width][keep].numpy())
                values.append(vals.values[:, :width][keep].numpy())
                indptr.append(indptr[-1][-1] + np.cumsum(counts.numpy()))
            error = torch.cat(err)
            spread = (x - x.mean(0)).pow(2).sum()
            ve = float(1 - error.pow(2).sum() / spread) if spread > 0 else float("nan")
        return LayerArrays(indptr=np.concatenate(indptr), indices=np.concatenate(indices).astype(np.int64),
                           values=np.concatenate(values).astype(np.float32), error_norm=error.numpy(),
                           variance_explained=np.array(ve))

    got = t.memo(("feature_acts", sae.key), compute)
    return FeatureActs(indptr=got["indptr"], indices=got["indices"], values=got["values"], d_sae=sae.d_sae,
                       error_norm=got["error_norm"], variance_explained=float(got["variance_explained"]))


# ---- running the network with the SAE's activation changed ------------------------------------------------
def run_replaced(lm: LoadedModel, t: Trace, sae: SparseAutoencoder, v: torch.Tensor, *,
                 frozen_ln: bool = False) -> torch.Tensor:
    """The final residual [..., n, d_model] when the SAE's activation at positions 0..n-1 is v
    [..., n, d_in] instead of the trace's (the first n tokens of the prompt)."""
    L, n = sae.layer, v.shape[-2]
    if sae.site in ("hook_resid_pre", "hook_resid_post"):
        start = L + (sae.site == "hook_resid_post")
        return run_blocks(lm.arch, v, start, edit=Edit(frozen_ln=frozen_ln))
    x = t.tensor("resid", (L, slice(0, n)))
    if sae.site == "hook_mlp_out":
        edit = Edit(mlp_out=lambda layer, out: v if layer == L else out, frozen_ln=frozen_ln)
    elif sae.site == "hook_attn_out":
        edit = Edit(attn_out=lambda layer, a: v if layer == L else a, frozen_ln=frozen_ln)
    else:  # resid_mid = resid_pre + attn_out
        edit = Edit(attn_out=lambda layer, a: v - x if layer == L else a, frozen_ln=frozen_ln)
    return run_blocks(lm.arch, x.expand(*v.shape[:-2], n, x.shape[-1]), L, edit=edit)


@dataclass(frozen=True)
class Fidelity:
    """The prediction after the prompt with the SAE's reconstruction in place of the activation:
    next_probs [vocab] clean and spliced; loss (mean next-token nats over the prompt) clean and spliced."""

    next_probs_clean: np.ndarray
    next_probs_spliced: np.ndarray
    loss_clean: float
    loss_spliced: float


def fidelity(lm: LoadedModel, t: Trace, sae: SparseAutoencoder) -> Fidelity:
    """What changes when the reconstruction (the error term left out) replaces the activation."""
    def compute() -> LayerArrays:
        with torch.inference_mode():
            x = site_activation(t, sae)
            logits = lm.arch.logits(run_replaced(lm, t, sae, reconstruct(sae, x)))  # [pos, vocab]
            logp = torch.log_softmax(logits, -1)
            ids = torch.as_tensor(t.token_ids)
            spliced = -logp[:-1].gather(1, ids[1:, None]).mean() if t.n_tokens > 1 else torch.tensor(float("nan"))
        return LayerArrays(probs=logp[-1].exp().numpy(), loss=np.array(float(spliced)))

    got = t.memo(("feature_fidelity", sae.key), compute)
    clean = float(-np.nanmean(t.token_logprob[1:])) if t.n_tokens > 1 else float("nan")
    return Fidelity(next_probs_clean=t.next_probs, next_probs_spliced=got["probs"], loss_clean=clean,
                    loss_spliced=float(got["loss"]))


# ---- which features make the prediction -------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureAttribution:
    """Each active feature's effect on logit(token) (or a difference of two) after `pos`, by gradient ×
    activation with frozen LayerNorm scales, summed over positions 0..pos: features [k] (by |effect|),
    effect [k]; error (the error term's part), rest (b_dec and what the SAE's normalisation adds back),
    each computed on its own; linearised (the gradient · the activation, which they add up to)."""

    features: np.ndarray
    effect: np.ndarray
    error: float
    rest: float
    linearised: float
    logit: float
    pos: int


def _direction(lm: LoadedModel, token_id: int, minus_token: int | None) -> torch.Tensor:
    W_U = lm.arch.W_U  # [d_model, vocab]
    return W_U[:, token_id] - W_U[:, minus_token] if minus_token is not None else W_U[:, token_id]


def feature_attribution(lm: LoadedModel, t: Trace, sae: SparseAutoencoder, token_id: int, pos: int = -1,
                        minus_token: int | None = None) -> FeatureAttribution:
    """One backward from the SAE's layer on: d logit / d activation at positions 0..pos, then each
    active feature's activation × (its direction · that gradient)."""
    pos = pos % t.n_tokens
    acts = feature_acts(lm, t, sae)
    x = site_activation(t, sae)[: pos + 1].detach().clone().requires_grad_(True)
    direction = _direction(lm, token_id, minus_token)
    with torch.enable_grad():
        final = run_replaced(lm, t, sae, x, frozen_ln=True)[pos]
        logit = lm.arch.ln_f(final, frozen=True) @ direction
        (grad,) = torch.autograd.grad(logit, x)  # [pos + 1, d_in]
    with torch.inference_mode():
        x = x.detach()
        rows = np.repeat(np.arange(len(acts.l0)), acts.l0)
        upto = rows <= pos
        ids, vals, rows = acts.indices[upto], acts.values[upto], rows[upto]
        _, (mean, shift, scale) = prepare(sae, x)
        reads = (grad @ sae.W_dec.T)[torch.from_numpy(rows), torch.from_numpy(ids)]  # W_dec[i] · g[p]
        if scale is not None:
            reads = reads * scale[torch.from_numpy(rows), 0]
        parts = torch.from_numpy(vals) * reads
        per_feature = torch.zeros(sae.d_sae, dtype=torch.float64).index_add_(0, torch.from_numpy(ids), parts.double())
        error = float(((x - reconstruct(sae, x)) * grad).sum())
        linearised = float((x * grad).sum())
        rest_vec = sae.b_dec.expand_as(x) * (scale if scale is not None else 1.0)  # what no feature writes
        rest_vec = rest_vec + (shift if shift is not None else 0.0) + (mean if mean is not None else 0.0)
        rest = float((rest_vec * grad).sum())
    active = torch.unique(torch.from_numpy(ids))
    order = active[per_feature[active].abs().argsort(descending=True)]
    effect = per_feature[order].numpy()
    return FeatureAttribution(features=order.numpy(), effect=effect, error=error, rest=rest, linearised=linearised,
                              logit=float(logit.detach()), pos=pos)


def removal_effects(lm: LoadedModel, t: Trace, sae: SparseAutoencoder, token_id: int, features, pos: int = -1,
                    minus_token: int | None = None, batch: int = 4, on_step=None) -> np.ndarray:
    """[feature]: the exact change in logit(token) (or the difference) after `pos` when each feature
    alone is taken out of the activation at every position 0..pos (its f · direction subtracted)
    and the rest of the network is rerun. `on_step(i)` before each batch of features."""
    pos = pos % t.n_tokens
    features = [int(f) for f in features]
    acts = feature_acts(lm, t, sae)
    direction = _direction(lm, token_id, minus_token)
    out = np.empty(len(features))
    with torch.inference_mode():
        x = site_activation(t, sae)[: pos + 1]
        f = torch.from_numpy(acts.dense(features)[: pos + 1])  # [pos + 1, feature]
        base = float(lm.arch.ln_f(t.tensor("resid", (t.n_layer, pos))) @ direction)
        dirs = directions(sae, x, features)  # [pos + 1, feature, d_in]
        for s in range(0, len(features), batch):
            if on_step is not None:
                on_step(s)
            cut = (f[:, s:s + batch, None] * dirs[:, s:s + batch]).transpose(0, 1)  # [batch, pos + 1, d_in]
            final = run_replaced(lm, t, sae, x[None] - cut)[:, pos]  # [batch, d_model]
            out[s:s + batch] = (lm.arch.ln_f(final) @ direction).numpy() - base
    return out


@dataclass(frozen=True)
class FeatureChange:
    """Features of one SAE changed inside a run, at every position: knocked out (value None, scale
    0), scaled, or clamped to `value`. The SAE reads the activation as the run computes it (so the
    change composes with knocked-out heads or neurons upstream) and the change is added along each
    feature's direction: x + (target - f) · direction."""

    sae: SparseAutoencoder
    features: tuple[int, ...]
    value: float | None = None
    scale: float = 0.0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The activation x [..., pos, d_in] with the features changed."""
        ids = list(self.features)
        f = encode(self.sae, x)[..., ids]  # [..., pos, feature]
        target = torch.full_like(f, float(self.value)) if self.value is not None else f * self.scale
        return x + ((target - f)[..., None] * directions(self.sae, x, ids)).sum(-2)

    def edit(self, lm: LoadedModel) -> tuple[int, dict]:
        """(the first block the change touches, Edit keyword arguments that make it); a change to the
        residual after the last block has no block to go into: (n_layer, {"final": fn})."""
        check_fits(lm, self.sae)
        L, site = self.sae.layer, self.sae.site
        at = lambda layer, y: self.apply(y) if layer == L else y  # noqa: E731
        if site == "hook_resid_pre":
            return L, {"resid_pre": at}
        if site == "hook_resid_post":
            if L + 1 < lm.n_layer:
                return L + 1, {"resid_pre": lambda layer, y: self.apply(y) if layer == L + 1 else y}
            return lm.n_layer, {"final": self.apply}
        if site == "hook_attn_out":
            return L, {"attn_out": at}
        if site == "hook_mlp_out":
            return L, {"mlp_out": at}
        before = {}  # resid_mid = resid_pre + attn_out: keep resid_pre to change their sum

        def keep(layer, y):
            if layer == L:
                before["x"] = y
            return y
        return L, {"resid_pre": keep, "attn_out": lambda layer, a: (self.apply(before["x"] + a) - before["x"])
                   if layer == L else a}


def steer_features(lm: LoadedModel, t: Trace, sae: SparseAutoencoder, features, *, value: float | None = None,
                   scale: float = 0.0):
    """The prompt rerun with features changed at every position: each feature's activation set to
    `value` (clamp; its direction adds (value - f)), or multiplied by `scale` (0: knocked out).
    Returns the run's core.interventions.Ablation (next-token probabilities, per-token log-probabilities)."""
    from .interventions import ablate

    return ablate(lm, t, features=FeatureChange(sae, tuple(int(f) for f in features), value, scale))
