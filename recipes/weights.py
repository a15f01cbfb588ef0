"""The Weights page's views of the model's own parameters, no prompt involved: one matrix (or
vector), its smoothed views, its values across blocks, the table of every parameter, its spectrum.

A view takes what it draws (a grid, a spectrum, the distributions, the table) when the caller
has it cached; without it the view computes it with core."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.weights import (
    KINDS,
    Grid,
    Kind,
    Spectrum,
    block_histograms,
    get_matrix,
    normal_pdf,
    parameter_stats,
    spectrum,
    view_grid,
)
from i18n import N_, _
from viz import common
from viz.common import esc
from viz.weights import distribution_figure, kurtosis_figure, matrix_figure, spectrum_figure, vector_figure

from . import Figure, Metric, Row, Text, View, translated_table

VIEWS = [N_("Matrix"), N_("Smoothed"), N_("Across blocks"), N_("All parameters"), N_("Spectrum")]
SMOOTHING = {"moving": N_("Moving average"), "block": N_("Block average")}
HOW_TO_READ = {
    "conv1d": N_("Conv1D orientation: the layer computes x @ W + b, so row i holds what input dimension i "
                 "contributes to every output."),
    "W_E": N_("A lookup table: row i is the vector token id i adds to the residual stream; the same matrix, "
              "transposed, turns the last residual into the logits (the weights are tied)."),
    "W_pos": N_("A lookup table: row i is the vector added to the residual stream at position i."),
}
NEEDS_A_MATRIX = (N_("Smoothing"), N_("A spectrum"))  # what the page passes to needs_matrix
STATS = ("mean", "std", "kurtosis", "min", "max")


def grid_data(raw: np.ndarray, mode: str, window: int) -> Grid:
    """The matrix as drawn (raw, moving or block average), tile-averaged to the browser's cell budget."""
    return view_grid(raw, mode, window, max_cells=common.CELL_BUDGET)


def kind_label(key: str) -> str:
    return _(KINDS[key].label)  # core marks the kinds' labels for the catalog


def head_label(head) -> str:
    return _("all heads") if head == "all" else _("head {head}").format(head=head)


@dataclass(frozen=True)
class Selection:
    """One parameter of one block (and head), as picked: its values and how to name it."""
    key: str
    kind: Kind
    block: int | None  # None: a model-wide parameter
    head: int | None  # None: all heads, or a kind without heads
    raw: np.ndarray  # [rows, cols] or [cols]
    rows: str | None
    cols: str
    where: str  # "block 1, head 2", or "" for model-wide parameters
    label: str  # the kind's label and where
    shape: str  # "768 × 2,304"
    model: str  # the model's label, escaped for titles


def select(lm, key: str, block, head) -> Selection:
    """The parameter `key` of `block` and `head` as the pickers give them ("all" heads); a block
    or head the kind does not have is ignored."""
    kind = KINDS[key]
    block = block if kind.per_block else None
    head = head if kind.head_axis is not None and head != "all" else None
    if block is not None and head is not None:
        where = _("block {block}, head {head}").format(block=block, head=head)
    elif block is not None:
        where = _("block {block}").format(block=block)
    else:  # a kind with heads lives in every block, so a head comes with a block
        where = ""
    raw, rows, cols = get_matrix(lm, block, key, head)
    return Selection(key, kind, block, head, raw, rows, cols, where, _(kind.label) + (f" · {where}" if where else ""),
                     " × ".join(f"{s:,}" for s in raw.shape), esc(lm.label))


def needs_matrix(what: str) -> View:
    """`what`: the English name of the view (one of NEEDS_A_MATRIX), shown translated."""
    return View([Text(_("{what} needs a matrix. Pick a weight matrix (W_Q … W_out, W_E, W_pos) above.").format(
        what=_(what)), "info")])


def matrix(lm, s: Selection, grid: Grid | None = None) -> View:
    """The matrix (tile-mean downsampled to the cell budget) or the vector, and its statistics."""
    kind = s.kind
    if kind.is_matrix:
        g = grid if grid is not None else grid_data(s.raw, "raw", 1)
        head_size = lm.d_model // lm.n_head if s.head is None and kind.head_axis in (0, 1) else None
        note = (" · " + _("downsampled {n}× (mean of {n}×{n} tiles)").format(n=g.downsample)
                if g.downsample > 1 else "")
        view = View([Figure("weights_matrix", matrix_figure(
            g.z, s.rows, s.cols, f"{s.label} · {s.shape}{note} · {s.model}", offset=g.offset, step=g.step,
            head_size=head_size, head_axis=kind.head_axis)),
            Text((_("{how} Red is positive, blue negative, white zero. Colours are clipped at the 99.5th percentile "
                    "of |w| (shown on the colour bar); hover a cell for its exact value. Thin lines separate the "
                    "heads.") if head_size else
                  _("{how} Red is positive, blue negative, white zero. Colours are clipped at the 99.5th percentile "
                    "of |w| (shown on the colour bar); hover a cell for its exact value.")).format(
                how=_(HOW_TO_READ.get(s.key, HOW_TO_READ["conv1d"]))))])
    else:
        head_size = lm.d_model // lm.n_head if s.head is None and kind.head_axis == -1 else None
        title = _("{label} · {shape} values · {model}").format(label=s.label, shape=s.shape, model=s.model)
        view = View([Figure("weights_vector", vector_figure(s.raw, s.cols, title, head_size=head_size))])
    raw = s.raw
    return view.add(Text(_("mean {mean:.4g} · std {std:.4g} · min {min:.4g} · max {max:.4g}").format(
        mean=raw.mean(), std=raw.std(), min=raw.min(), max=raw.max())))


def window_range(s: Selection) -> tuple[int, int]:
    """The smoothing window's largest value and its default (the essay's 64 where it fits)."""
    top = min(s.raw.shape)
    return top, min(64, max(1, top // 4))


def smoothed(s: Selection, window: int, grids: dict[str, Grid] | None = None) -> View:
    """Moving and block averages over window × window, side by side (`grids`: mode -> Grid)."""
    figures = []
    for mode, name in SMOOTHING.items():
        g = (grids or {}).get(mode)
        g = g if g is not None else grid_data(s.raw, mode, window)
        note = " · " + _("downsampled {n}×").format(n=g.downsample) if g.downsample > 1 else ""
        figures.append(Figure(f"weights_smooth_{mode}", common.fit_to_column(matrix_figure(
            g.z, s.rows, s.cols, _("{average} over {window}×{window} · {key}{where}{note} · {model}").format(
                average=_(name), window=window, key=s.key, where=" · " + s.where if s.where else "", note=note,
                model=s.model), offset=g.offset, step=g.step, colorbar=_("mean"), height=520), 0.5)))
    return View([Row(figures), Text(_(
        "Left: the mean of the window×window square around every position (a sliding window). Right: the mean of "
        "each non-overlapping window×window tile. Averaging cancels noise, so what survives is structure shared by "
        "neighbouring rows and columns. Each figure has its own colour scale, centred on zero: red positive, blue "
        "negative."))])


def across_blocks(lm, s: Selection, log_y: bool, distributions=None) -> View:
    """The kind's values in every block, the selected block thick, with a normal fit; excess
    kurtosis by block; and the statistics table. `distributions`: block_distributions' result."""
    edges, dist = distributions if distributions is not None else block_distributions(lm, s.key)
    pick = s.block if s.kind.per_block else "all"
    row = dist.set_index("block").loc[pick]
    centres = (edges[:-1] + edges[1:]) / 2
    key = s.kind.key
    return View([
        Figure("weights_dist", distribution_figure(edges, dist, _("{key} values in every block · {model}").format(
            key=key, model=s.model), highlight=pick, log_y=log_y, normal=normal_pdf(centres, row["mean"], row["std"]))),
        Text(_("One line per block (dark = early, yellow = late); the thick line is {which} (pick another above) and "
               "the dashed curve the normal distribution with its mean and standard deviation. On the log scale a "
               "normal is a parabola; tails above it are heavier than Gaussian.").format(
            which=_("all") if pick == "all" else _("block {block}").format(block=pick))),
        Figure("weights_kurtosis", kurtosis_figure(dist, _("Excess kurtosis of {key} by block · {model}").format(
            key=key, model=s.model))),
        translated_table("weights_dist_table", dist.drop(columns="density"), f"{key}-distribution-by-block",
                         formats={c: "{:.4g}" for c in STATS}),
    ])


def block_distributions(lm, kind: str, bins: int = 200) -> tuple[np.ndarray, pd.DataFrame]:
    """(edges [bins + 1], a table with one row per block (a single row "all" for a model-wide kind):
    block, n, mean, std, kurtosis, min, max and `density`, the [bins] histogram), from
    core.weights.block_histograms."""
    h = block_histograms(lm, kind, bins)
    return h.edges, pd.DataFrame({"block": h.blocks, "n": h.n, "mean": h.mean, "std": h.std, "kurtosis": h.kurtosis,
                                  "min": h.min, "max": h.max, "density": list(h.density)})


def stats_table(lm) -> pd.DataFrame:
    """Every distinct parameter once (core.weights.parameter_stats): name, kind, shape, count, mean,
    std, min, max, frobenius."""
    return pd.DataFrame([{"name": p.name, "kind": p.kind, "shape": " × ".join(str(d) for d in p.shape),
                          "count": p.count, "mean": p.mean, "std": p.std, "min": p.min, "max": p.max,
                          "frobenius": p.frobenius} for p in parameter_stats(lm)])


def all_parameters(lm, table=None) -> View:
    """Every parameter tensor's count and statistics; their total against the model's own count."""
    table = stats_table(lm) if table is None else table
    total = int(table["count"].sum())
    view = View([Row([Metric(_("Parameters, summed over the table"), f"{total:,}"),
                      Metric(_("The model's own count"), f"{lm.n_params:,}")])])
    if total == lm.n_params:
        view.add(Text(_("They agree: each distinct parameter is listed once. The unembedding (lm_head) is the token "
                        "embedding W_E itself, tied, so it is not counted twice.")))
    else:
        view.add(Text(_("The table misses {n:,} parameters; please report this.").format(n=lm.n_params - total),
                      "error"))
    return view.add(translated_table("weights_param_table", table, "parameters", height=460,
                                     formats={"count": "{:,}",
                                              **{c: "{:.4g}" for c in ("mean", "std", "min", "max", "frobenius")}}))


def spectrum_view(s: Selection, sp: Spectrum | None = None) -> View:
    """The singular values of the matrix, on a log scale, and four measures of its rank."""
    sp = sp if sp is not None else spectrum(s.raw)
    return View([
        Row([Metric(_("Full rank"), f"{len(sp.singular_values):,}"),
             Metric(_("Effective rank"), f"{sp.effective_rank:,.1f}",
                    help=_("exp of the entropy of σ/Σσ (Roy & Vetterli 2007): the full rank if every direction is "
                           "equally strong, 1 if one direction carries everything.")),
             Metric(_("σ above {share} of σ_max").format(share="1%"), f"{sp.rank_1pct:,}"),  # no "% o": not a %-format
             Metric(_("Stable rank"), f"{sp.stable_rank:,.1f}", help=_("‖W‖²_F / σ_max²: how many directions as "
                                                                       "strong as the strongest would hold the same "
                                                                       "total energy."))]),
        Figure("weights_spectrum", spectrum_figure(sp.singular_values, _("Singular values of {label} · {shape} · "
                                                                         "{model}").format(
            label=s.label, shape=s.shape, model=s.model), effective_rank=sp.effective_rank, rank_1pct=sp.rank_1pct)),
        Text(_("A random matrix has a smooth, slowly falling spectrum; a few large singular values standing above the "
               "rest are directions the training made important.")),
    ])
