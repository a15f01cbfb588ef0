"""What one feature means: the tokens its direction pushes up and down, and where it fires in a corpus.

`top_contexts` runs the model over a corpus in windows (only the blocks up to the SAE's layer),
encodes every token and keeps, per feature, its strongest activations with where they were,
how often it fires and a histogram of its activations. It is computed once per (model, SAE,
corpus) and kept on disk (`cache_dir()/features`), so a second visit reads it in well under a
second; a run that is stopped keeps the windows it finished (in this process) and resumes.

Dimension names: batch pos d_in d_sae vocab window.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .arch import block
from .model import LoadedModel
from .projection import cache_dir
from .sae import SparseAutoencoder, check_fits, encode

N_TOP = 24  # strongest activations kept per feature
HIST_EDGES = np.logspace(-3, 3, 37)  # activation histogram bins, 10^-3 .. 10^3 (log-spaced)
_BATCH_TOKENS = 4096  # tokens run through the model at once
_PARTIAL: dict[str, dict] = {}  # corpus runs stopped part-way, by cache key
_LOCK = threading.Lock()


def decoder_tokens(lm: LoadedModel, sae: SparseAutoencoder, feature: int, k: int = 10):
    """The tokens feature `feature`'s direction pushes up and down most when read through ln_f (its
    gain, the centring; the scale, a positive number per position, left out) and the unembedding:
    (up_ids, up_values, down_ids, down_values), values in logits per unit of ln_f's scale."""
    with torch.inference_mode():
        d = sae.W_dec[feature]
        logits = ((d - d.mean()) * lm.arch.ln_f.w) @ lm.arch.W_U  # [vocab]
        up, down = logits.topk(k), (-logits).topk(k)
    return up.indices.numpy(), up.values.numpy(), down.indices.numpy(), -down.values.numpy()


def corpus_windows(lm: LoadedModel, text: str, window: int = 128, max_tokens: int = 100_000) -> np.ndarray:
    """[window_count, window] token ids: the text's first max_tokens tokens in consecutive windows
    (the last partial window dropped)."""
    ids = np.asarray(lm.encode(text)[:max_tokens], dtype=np.int64)
    window = min(window, lm.n_ctx)
    n = len(ids) // window
    return ids[: n * window].reshape(n, window)


@dataclass(frozen=True)
class Contexts:
    """Per feature: top_values [d_sae, N_TOP] (descending, 0 where fewer), top_window / top_pos
    [d_sae, N_TOP] (where, in `windows`); active [d_sae] (tokens it fired on); hist [d_sae, bins]
    (counts of its nonzero activations in HIST_EDGES's bins); n_tokens read; windows [window, pos]."""

    top_values: np.ndarray
    top_window: np.ndarray
    top_pos: np.ndarray
    active: np.ndarray
    hist: np.ndarray
    n_tokens: int
    windows: np.ndarray

    @property
    def density(self) -> np.ndarray:
        """[d_sae] fraction of the corpus's tokens each feature fires on."""
        return self.active / max(self.n_tokens, 1)


def _site_acts(lm: LoadedModel, sae: SparseAutoencoder, ids: torch.Tensor) -> torch.Tensor:
    """[batch, pos, d_in]: the SAE's activation on windows of ids [batch, pos], through blocks 0..layer."""
    embed, pos_embed = lm.arch.embed(ids)
    x = embed + pos_embed
    for w in lm.arch.blocks[: sae.layer + 1]:
        run = block(w, x)
        if w.layer == sae.layer:
            return {"hook_resid_pre": x, "hook_resid_mid": run.resid_mid, "hook_resid_post": run.resid_post,
                    "hook_attn_out": run.attn_out, "hook_mlp_out": run.mlp_out}[sae.site]
        x = run.resid_post
    raise AssertionError("unreachable: the SAE's layer is checked against the model")


def _key(lm: LoadedModel, sae: SparseAutoencoder, windows: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in (lm.name, sae.source, str(sae.sae_id), sae.hook_name, str(N_TOP)):
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    h.update(sae.W_enc[:, :64].numpy().tobytes())  # the weights themselves, not only their name
    h.update(sae.b_enc.numpy().tobytes())
    h.update(windows.tobytes())
    return h.hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / "features" / f"contexts-{key}.npz"


def contexts_cached(lm: LoadedModel, sae: SparseAutoencoder, windows: np.ndarray) -> bool:
    return _path(_key(lm, sae, windows)).exists()


def top_contexts(lm: LoadedModel, sae: SparseAutoencoder, windows: np.ndarray,
                 on_step: Callable[[int, int], None] | None = None) -> Contexts:
    """Every feature's strongest activations over the corpus `windows` [window, pos] (see Contexts).
    on_step(done, total) is called before each batch of windows (progress, or a Stop)."""
    check_fits(lm, sae)
    key = _key(lm, sae, windows)
    path = _path(key)
    if path.exists():
        try:
            with np.load(path) as f:
                return Contexts(**{k: f[k] for k in ("top_values", "top_window", "top_pos", "active", "hist")},
                                n_tokens=int(f["n_tokens"]), windows=windows)
        except (OSError, ValueError, KeyError):  # a broken cache file: compute again
            path.unlink(missing_ok=True)
    with _LOCK:
        state = _PARTIAL.setdefault(key, {
            "done": 0, "top_values": np.zeros((sae.d_sae, N_TOP), np.float32),
            "top_index": np.zeros((sae.d_sae, N_TOP), np.int64), "active": np.zeros(sae.d_sae, np.int64),
            "hist": np.zeros((sae.d_sae, len(HIST_EDGES) - 1), np.int64), "lock": threading.Lock()})
    with state["lock"]:  # one computation per corpus and SAE; a second session waits for it
        if path.exists() and key not in _PARTIAL:
            return top_contexts(lm, sae, windows)
        return _compute(lm, sae, windows, state, key, path, on_step)


def _compute(lm, sae, windows, state, key, path, on_step) -> Contexts:
    T = windows.shape[1]
    per = max(1, _BATCH_TOKENS // T)
    with torch.inference_mode():
        while state["done"] < len(windows):
            s = state["done"]
            if on_step is not None:
                on_step(s, len(windows))
            ids = torch.from_numpy(windows[s:s + per])
            f = encode(sae, _site_acts(lm, sae, ids)).reshape(-1, sae.d_sae)  # [tokens, d_sae]
            _merge(state, f, s * T)
            state["done"] = s + len(ids)
    out = Contexts(top_values=state["top_values"], top_window=state["top_index"] // T,
                   top_pos=state["top_index"] % T, active=state["active"], hist=state["hist"],
                   n_tokens=int(windows.size), windows=windows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez(tmp, top_values=out.top_values, top_window=out.top_window, top_pos=out.top_pos, active=out.active,
             hist=out.hist, n_tokens=out.n_tokens)
    tmp.replace(path)
    _PARTIAL.pop(key, None)
    return out


def _merge(state: dict, f: torch.Tensor, offset: int) -> None:
    """Fold a batch's activations f [tokens, d_sae] (token i at corpus index offset + i) into the state."""
    k = min(N_TOP, f.shape[0])
    vals, idx = f.topk(k, dim=0)  # [k, d_sae]
    both_v = np.concatenate([state["top_values"], vals.T.numpy()], 1)
    both_i = np.concatenate([state["top_index"], idx.T.numpy() + offset], 1)
    order = np.argsort(-both_v, axis=1, kind="stable")[:, :N_TOP]
    state["top_values"] = np.take_along_axis(both_v, order, 1)
    state["top_index"] = np.take_along_axis(both_i, order, 1)
    nz = f > 0
    state["active"] += nz.sum(0).numpy()
    cols = torch.nonzero(nz, as_tuple=True)[1].numpy()
    nb = len(HIST_EDGES) - 1
    bins = np.clip(np.searchsorted(HIST_EDGES, f[nz].numpy()) - 1, 0, nb - 1)
    state["hist"] += np.bincount(cols * nb + bins, minlength=state["hist"].size).reshape(state["hist"].shape)
