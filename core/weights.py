"""A GPT-2's parameters as named, read-only numpy arrays: matrices, smoothing, statistics, spectra.

Everything here reads the model's real parameters; no prompt is involved.

transformers' GPT-2 stores its linear layers as `Conv1D`, whose weight is (in, out):
rows are inputs and columns are outputs, so `x @ W + b` is the layer. `attn.c_attn`
holds the query, key and value projections side by side along the columns,
(d_model, 3 * d_model) = [W_Q | W_K | W_V], and head h of W_Q is columns
h*d_head : (h+1)*d_head of the first third. `attn.c_proj` (W_O) reads the heads'
outputs concatenated along its rows, so head h writes through rows h*d_head : (h+1)*d_head.

Parameter kinds follow TransformerLens' names (W_Q, W_K, W_V, W_O, W_in, W_out, W_E,
W_pos, b_*, ln*), and dimension names its vocabulary (d_model, d_mlp, d_head, vocab, n_ctx).

    kinds = catalogue()                       # what can be shown, with friendly labels
    w, rows, cols = get_matrix(lm, 3, "W_Q")   # (d_model, d_model), "d_model (input)", ...
    smooth = moving_average(w, 64)             # (d_model - 63, d_model - 63)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy import stats as sps

from i18n import N_

from .arch import Arch, BlockWeights


@dataclass(frozen=True)
class Kind:
    """One kind of parameter: where it lives in the checkpoint and what its axes mean.

    `source` is the parameter name inside a block (`attn.c_attn.weight`) or inside
    `transformer` for model-wide kinds (the tensor itself is read from core.arch's views);
    `head_axis` is the axis (0 rows, 1 columns, -1 a vector's only
    axis) that splits into heads, or None when the kind has no per-head view.
    """

    key: str
    label: str
    source: str
    rows: str | None  # None for vectors
    cols: str
    per_block: bool = True
    head_axis: int | None = None

    @property
    def is_matrix(self) -> bool:
        return self.rows is not None


# label, rows and cols are English, marked for the catalog; shown translated: _(kind.label), _(kind.rows)
_KINDS = [
    Kind("W_Q", N_("Attention query weights W_Q"), "attn.c_attn.weight", N_("d_model (input)"), N_("head × d_head (query)"), head_axis=1),  # noqa: E501 (a table row)
    Kind("W_K", N_("Attention key weights W_K"), "attn.c_attn.weight", N_("d_model (input)"), N_("head × d_head (key)"), head_axis=1),  # noqa: E501 (a table row)
    Kind("W_V", N_("Attention value weights W_V"), "attn.c_attn.weight", N_("d_model (input)"), N_("head × d_head (value)"), head_axis=1),  # noqa: E501 (a table row)
    Kind("W_O", N_("Attention output projection W_O"), "attn.c_proj.weight", N_("head × d_head (input)"), N_("d_model (output)"), head_axis=0),  # noqa: E501 (a table row)
    Kind("W_in", N_("MLP up-projection W_in"), "mlp.c_fc.weight", N_("d_model (input)"), N_("d_mlp (output)")),
    Kind("W_out", N_("MLP down-projection W_out"), "mlp.c_proj.weight", N_("d_mlp (input)"), N_("d_model (output)")),
    Kind("b_Q", N_("Query bias b_Q"), "attn.c_attn.bias", None, N_("head × d_head"), head_axis=-1),
    Kind("b_K", N_("Key bias b_K"), "attn.c_attn.bias", None, N_("head × d_head"), head_axis=-1),
    Kind("b_V", N_("Value bias b_V"), "attn.c_attn.bias", None, N_("head × d_head"), head_axis=-1),
    Kind("b_O", N_("Attention output bias b_O"), "attn.c_proj.bias", None, "d_model"),
    Kind("b_in", N_("MLP up-projection bias b_in"), "mlp.c_fc.bias", None, "d_mlp"),
    Kind("b_out", N_("MLP down-projection bias b_out"), "mlp.c_proj.bias", None, "d_model"),
    Kind("ln1_w", N_("LayerNorm before attention: gain"), "ln_1.weight", None, "d_model"),
    Kind("ln1_b", N_("LayerNorm before attention: bias"), "ln_1.bias", None, "d_model"),
    Kind("ln2_w", N_("LayerNorm before MLP: gain"), "ln_2.weight", None, "d_model"),
    Kind("ln2_b", N_("LayerNorm before MLP: bias"), "ln_2.bias", None, "d_model"),
    Kind("W_E", N_("Token embedding W_E (tied to the unembedding)"), "wte.weight", N_("vocab (token id)"), "d_model", per_block=False),  # noqa: E501 (a table row)
    Kind("W_pos", N_("Position embedding W_pos"), "wpe.weight", N_("n_ctx (position)"), "d_model", per_block=False),
    Kind("lnf_w", N_("Final LayerNorm: gain"), "ln_f.weight", None, "d_model", per_block=False),
    Kind("lnf_b", N_("Final LayerNorm: bias"), "ln_f.bias", None, "d_model", per_block=False),
]
KINDS: dict[str, Kind] = {k.key: k for k in _KINDS}


def catalogue() -> list[Kind]:
    """Every parameter kind the weights page can show, matrices first, in model order."""
    return list(_KINDS)


def _torch_model(model) -> torch.nn.Module:
    """Accept a LoadedModel or the transformers model itself."""
    return getattr(model, "model", model)


def _arch(model) -> Arch:
    """The canonical weight views (core.arch) of a LoadedModel or of a transformers GPT-2."""
    return model.arch if isinstance(getattr(model, "arch", None), Arch) else Arch.of(_torch_model(model))


def n_blocks(model) -> int:
    return _arch(model).n_layer


# kind -> its tensor in the canonical views: a block's (or the model's) attribute, and per head (head=None: all
# heads side by side, as the checkpoint stores them, rows = inputs). All are views of the checkpoint's tensors.
def _per_block(name: str, head: int | None) -> Callable[[BlockWeights], torch.Tensor]:
    def read(w: BlockWeights) -> torch.Tensor:
        t = getattr(w, name)
        if head is not None:
            return t[head]
        if name in ("W_Q", "W_K", "W_V"):  # [head, d_model, d_head] -> [d_model, head × d_head]
            return t.permute(1, 0, 2).flatten(1)
        return t.flatten(0, 1) if name in ("W_O", "b_Q", "b_K", "b_V") else t
    return read


_MODEL_WIDE = {"W_E": lambda a: a.W_E, "W_pos": lambda a: a.W_pos, "lnf_w": lambda a: a.ln_f.w,
               "lnf_b": lambda a: a.ln_f.b}
_LN = {"ln1_w": ("ln1", "w"), "ln1_b": ("ln1", "b"), "ln2_w": ("ln2", "w"), "ln2_b": ("ln2", "b")}


def _tensor(model, block: int | None, kind: Kind, head: int | None = None) -> torch.Tensor:
    arch = _arch(model)
    if not kind.per_block:
        return _MODEL_WIDE[kind.key](arch).detach()
    if block is None or not 0 <= int(block) < arch.n_layer:
        raise ValueError(f"{kind.key} lives in every block; pick a block in 0..{arch.n_layer - 1}, not {block!r}.")
    w = arch.blocks[int(block)]
    if kind.key in _LN:
        ln, part = _LN[kind.key]
        return getattr(getattr(w, ln), part).detach()
    return _per_block(kind.key, head)(w).detach()


def get_matrix(model, block: int | None, kind: str, head: int | None = None) -> tuple[np.ndarray, str | None, str]:
    """One parameter as a read-only float32 numpy array (no copy on CPU), with its axes' names.

    Returns (array, row_dim_name, col_dim_name). Matrices are (rows, cols) in Conv1D
    orientation, rows = inputs; vectors are 1-D and row_dim_name is None. `block` is the
    layer index (ignored for model-wide kinds: W_E, W_pos, lnf_*). `head` narrows
    W_Q/W_K/W_V (columns), W_O (rows) and b_Q/b_K/b_V to one head's d_head slice.
    """
    spec = KINDS[kind]
    rows, cols = spec.rows, spec.cols
    if head is not None:
        if spec.head_axis is None:
            raise ValueError(f"{kind} has no per-head view.")
        n_head = _arch(model).blocks[0].n_head
        if not 0 <= head < n_head:
            raise ValueError(f"head must be in 0..{n_head - 1}, not {head}.")
        name = f"d_head (head {head})"
        if spec.head_axis == 0:
            rows = f"{name}, input"
        else:
            cols = f"{name}" + (f", {cols.split('(')[-1].rstrip(')')}" if "(" in cols else "")
    t = _tensor(model, block, spec, head)
    arr = t.to("cpu", torch.float32).numpy()  # a view of the parameter itself when it is float32 on the CPU
    arr.flags.writeable = False  # so nothing downstream can edit the model through it
    return arr, rows, cols


def _moving_mean_rows(a: np.ndarray, window: int, chunk_bytes: int = 32 * 2**20) -> np.ndarray:
    """Moving mean along axis 0 ('valid'): (R, C) -> (R - window + 1, C), float64 sums in chunks."""
    r, c = a.shape
    out = np.empty((r - window + 1, c), dtype=np.float32)
    step = max(1, chunk_bytes // (8 * (r + 1)))
    for c0 in range(0, c, step):
        cs = np.zeros((r + 1, min(step, c - c0)), dtype=np.float64)
        np.cumsum(a[:, c0:c0 + step], axis=0, dtype=np.float64, out=cs[1:])
        out[:, c0:c0 + step] = (cs[window:] - cs[:-window]) / window
    return out


def moving_average(matrix: np.ndarray, window: int) -> np.ndarray:
    """The mean over every window×window square ('valid' positions only).

    (R, C) -> (R - w + 1, C - w + 1) with w = min(window, R, C); out[i, j] is
    matrix[i:i+w, j:j+w].mean(). The box filter is separable, so it runs as two 1-D
    moving means with float64 running sums: O(R·C) for any window.
    """
    a = np.asarray(matrix, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"moving_average needs a matrix, got shape {a.shape}.")
    w = max(1, min(int(window), *a.shape))
    return np.ascontiguousarray(_moving_mean_rows(_moving_mean_rows(a, w).T, w).T)


def block_average(matrix: np.ndarray, window: int) -> np.ndarray:
    """The mean of each non-overlapping window×window tile: (R, C) -> (ceil(R/w), ceil(C/w)).

    Edge tiles that the window does not fill are averaged over the cells they have.
    """
    a = np.asarray(matrix, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"block_average needs a matrix, got shape {a.shape}.")
    w = max(1, int(window))
    if w == 1:
        return a.copy()
    r_idx, c_idx = np.arange(0, a.shape[0], w), np.arange(0, a.shape[1], w)
    sums = np.add.reduceat(np.add.reduceat(a, r_idx, axis=0, dtype=np.float64), c_idx, axis=1)
    r_n = np.diff(np.append(r_idx, a.shape[0]))
    c_n = np.diff(np.append(c_idx, a.shape[1]))
    return (sums / np.outer(r_n, c_n)).astype(np.float32)


def fit_to_budget(matrix: np.ndarray, max_cells: int) -> tuple[np.ndarray, int]:
    """(display array, k): the matrix itself (k = 1) if it has at most `max_cells` cells (a
    browser's budget, viz.common.CELL_BUDGET), else its block average over k×k tiles with the
    smallest k that fits."""
    a = np.asarray(matrix, dtype=np.float32)
    if a.ndim == 1 or a.size <= max_cells:
        return a, 1
    r, c = a.shape
    k = 2
    while -(-r // k) * -(-c // k) > max_cells:
        k += 1
    return block_average(a, k), k


# ---- distributions ------------------------------------------------------------------------------
def _moments(v: np.ndarray, chunk: int = 1 << 20) -> dict[str, float]:
    """mean, std, min, max, norm (‖v‖₂) and excess kurtosis (Fisher: 0 for a normal, as
    scipy.stats.kurtosis) of a flat float32 array: two passes of float64 sums in chunks, so
    W_E (38 M values) never needs a 300 MB float64 copy."""
    mean = sum(float(v[i:i + chunk].sum(dtype=np.float64)) for i in range(0, v.size, chunk)) / v.size
    sq = m2 = m4 = 0.0
    for i in range(0, v.size, chunk):
        c = v[i:i + chunk].astype(np.float64)
        sq += float(np.dot(c, c))
        c -= mean
        c2 = c * c
        m2 += float(c2.sum())
        m4 += float(np.dot(c2, c2))
    m2, m4 = m2 / v.size, m4 / v.size
    return dict(mean=mean, std=float(np.sqrt(m2)), min=float(v.min()), max=float(v.max()), norm=float(np.sqrt(sq)),
                kurtosis=m4 / m2**2 - 3.0 if m2 > 0 else float("nan"))


@dataclass(frozen=True)
class BlockHistograms:
    """Histograms of one parameter kind's values in every block, on shared bin edges, and each
    block's moments. Every value is counted; nothing is sampled."""

    edges: np.ndarray  # [bins + 1] over the values' full range
    blocks: list  # [block] block numbers, or ["all"] for a model-wide kind (W_E, W_pos, ln_f)
    n: np.ndarray  # [block] int64: values counted
    mean: np.ndarray  # [block] float64, as are std, kurtosis (excess, Fisher: 0 for a normal), min and max
    std: np.ndarray
    kurtosis: np.ndarray
    min: np.ndarray
    max: np.ndarray
    density: np.ndarray  # [block, bins] float32: each block's histogram, normalised to integrate to 1


def block_histograms(model, kind: str, bins: int = 200) -> BlockHistograms:
    """Histograms and moments of one parameter kind's values in every block (see BlockHistograms)."""
    spec = KINDS[kind]
    blocks = list(range(n_blocks(model))) if spec.per_block else [None]

    def values(b) -> np.ndarray:  # fetched again per pass: one block's copy alive at a time
        return get_matrix(model, b, kind)[0].ravel()

    ranges = [(float(v.min()), float(v.max())) for v in map(values, blocks)]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if hi <= lo:  # a constant parameter (e.g. untrained LayerNorm gains) still gets a bin
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    sizes, moments, densities = [], [], []
    for b in blocks:
        v = values(b)
        density, _ = np.histogram(v, bins=edges, density=True)
        sizes.append(v.size)
        moments.append(_moments(v))
        densities.append(density.astype(np.float32))

    def column(name: str) -> np.ndarray:
        return np.array([m[name] for m in moments], dtype=np.float64)

    return BlockHistograms(edges, ["all" if b is None else b for b in blocks], np.array(sizes, dtype=np.int64),
                           column("mean"), column("std"), column("kurtosis"), column("min"), column("max"),
                           np.stack(densities))


def normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The normal density N(mean, std²) at x (zeros where std is 0)."""
    if std <= 0:
        return np.zeros_like(np.asarray(x, dtype=np.float64))
    return sps.norm.pdf(x, loc=mean, scale=std)


# ---- statistics table ---------------------------------------------------------------------------
def _friendly(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "transformer":
        parts = parts[1:]
    if parts[0] == "h":
        block, source = int(parts[1]), ".".join(parts[2:])
        labels = [k.key for k in _KINDS if k.per_block and k.source == source]
        return f"block {block}: " + (" | ".join(labels) if labels else source)
    source = ".".join(parts)
    labels = [k.key for k in _KINDS if not k.per_block and k.source == source]
    return " | ".join(labels) if labels else source


@dataclass(frozen=True)
class ParameterStats:
    """One parameter tensor as the statistics table lists it."""

    name: str  # the checkpoint's name
    kind: str  # friendly: block and W_Q | W_K | W_V ...
    shape: tuple[int, ...]
    count: int
    mean: float
    std: float
    min: float
    max: float
    frobenius: float  # ‖w‖_F


def parameter_stats(model) -> list[ParameterStats]:
    """Every distinct parameter once (the tied unembedding is W_E), in checkpoint order; the counts
    sum to the model's own parameter count, sum(p.numel() for p in model.parameters())."""
    rows = []
    for name, p in _torch_model(model).named_parameters():  # deduplicates tied weights
        m = _moments(p.detach().to("cpu", torch.float32).numpy().ravel())
        rows.append(ParameterStats(name, _friendly(name), tuple(p.shape), p.numel(), m["mean"], m["std"], m["min"],
                                   m["max"], m["norm"]))
    return rows


# ---- spectrum -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spectrum:
    """Singular values of one matrix and three readings of its rank.

    singular_values: (min(R, C),) descending.
    effective_rank: Roy & Vetterli (2007), exp(H(p)) with p = σ / Σσ and H the Shannon
        entropy: min(R, C) when all σ are equal, 1 when one direction carries everything.
    rank_1pct: how many σ exceed 1% of σ_max.
    stable_rank: ‖W‖_F² / σ_max² = Σσ² / σ_max², never above the true rank.
    """

    singular_values: np.ndarray
    effective_rank: float
    rank_1pct: int
    stable_rank: float


def spectrum(matrix: np.ndarray, chunk_rows: int = 4096) -> Spectrum:
    """Singular values of a (R, C) matrix as the square roots of the eigenvalues of its Gram
    matrix on the short side (float64, built in row chunks): for GPT-2 small's 768×3072
    W_in this takes ~0.4 s where a full SVD takes ~8 s, and agrees to ~1e-7·σ_max."""
    a = np.asarray(matrix, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"spectrum needs a matrix, got shape {a.shape}.")
    if a.shape[0] < a.shape[1]:
        a = a.T  # (long, short): the Gram matrix is short × short
    gram = np.zeros((a.shape[1], a.shape[1]), dtype=np.float64)
    for r0 in range(0, a.shape[0], chunk_rows):
        part = a[r0:r0 + chunk_rows].astype(np.float64)
        gram += part.T @ part
    s = np.sqrt(np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None))
    return Spectrum(s.astype(np.float32), *rank_measures(s))


def rank_measures(s: np.ndarray) -> tuple[float, int, float]:
    """(effective_rank, rank_1pct, stable_rank) of singular values s; see Spectrum."""
    s = np.asarray(s, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.0, 0, 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum())), int((s > 0.01 * s.max()).sum()), float((s**2).sum() / s.max() ** 2)


# ---- display grids --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """A matrix view ready to draw, at most `max_cells` cells.

    z: (rows, cols) float32. Cell (i, j) is centred on original row offset + i*step and
    column offset + j*step, so axes keep the matrix's own indices after smoothing or
    downsampling. downsample: the extra k×k tile mean applied to fit the budget (1: none).
    """

    z: np.ndarray
    offset: float
    step: float
    downsample: int


def view_grid(matrix: np.ndarray, mode: str = "raw", window: int = 1, *, max_cells: int) -> Grid:
    """The matrix as drawn: "raw", "moving" (moving_average) or "block" (block_average) over
    `window`, then tile-averaged by the smallest k that fits `max_cells`."""
    a = np.asarray(matrix, dtype=np.float32)
    if mode == "raw":
        w, base, offset, step = 1, a, 0.0, 1.0
    elif mode == "moving":
        w = max(1, min(int(window), *a.shape))
        base, offset, step = moving_average(a, w), (w - 1) / 2, 1.0
    elif mode == "block":
        w = max(1, int(window))
        base, offset, step = block_average(a, w), (w - 1) / 2, float(w)
    else:
        raise ValueError(f"mode must be raw, moving or block, not {mode!r}.")
    z, k = fit_to_budget(base, max_cells)
    return Grid(z, offset + step * (k - 1) / 2, step * k, k)
