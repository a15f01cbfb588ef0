"""Time every weights-page view on a GPT-2-small-shaped model: first computation, cached repeat, JSON size.

    python benchmarks/weights_views.py [/tmp/gpt2-shaped]

The page caches each computation with st.cache_data keyed by the model name; this script
wraps the same core functions the same way, so "cached" is what a repeat visit costs
(a pickle load of the result), and "figure" is building the Plotly figure from it.
The random model's values are meaningless; its shapes, hence the costs, are GPT-2 small's.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("streamlit").setLevel(logging.ERROR)

import streamlit as st  # noqa: E402

from core import load_model  # noqa: E402
from core.weights import get_matrix, normal_pdf, spectrum, view_grid  # noqa: E402
from recipes.weights import block_distributions, stats_table  # noqa: E402
from viz.weights import distribution_figure, matrix_figure, spectrum_figure  # noqa: E402


@st.cache_data(show_spinner=False)
def grid(name, block, kind, head, mode, window, _lm):
    return view_grid(get_matrix(_lm, block, kind, head)[0], mode, window)


@st.cache_data(show_spinner=False)
def singular(name, block, kind, head, _lm):
    return spectrum(get_matrix(_lm, block, kind, head)[0])


@st.cache_data(show_spinner=False)
def distributions(name, kind, _lm):
    return block_distributions(_lm, kind)


@st.cache_data(show_spinner=False)
def table_of(name, _lm):
    return stats_table(_lm)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(path: str) -> None:
    if not (Path(path) / "config.json").exists():
        from core.synthetic import build_checkpoint
        build_checkpoint(path, small=True)
    lm = load_model(path, device="cpu")
    n = lm.name
    print(f"{n}: {lm.n_layer} layers, d_model {lm.d_model}, {lm.n_params:,} parameters\n")

    def grid_view(kind, mode, window=1, block=0, head=None):
        def compute():
            return grid(n, block if kind not in ("W_E", "W_pos") else None, kind, head, mode, window, lm)

        def figure(g):
            _, rows, cols = get_matrix(lm, 0, "W_Q")
            return matrix_figure(g.z, rows, cols, "t", offset=g.offset, step=g.step)
        return compute, figure

    def spectrum_view(kind, block=0):
        def compute():
            return singular(n, block if kind not in ("W_E", "W_pos") else None, kind, None, lm)
        return compute, lambda sp: spectrum_figure(sp.singular_values, "t", effective_rank=sp.effective_rank,
                                                   rank_1pct=sp.rank_1pct)

    def dist_view(kind):
        def figure(res):
            edges, table = res
            c = (edges[:-1] + edges[1:]) / 2
            return distribution_figure(edges, table, "t", highlight=0,
                                       normal=normal_pdf(c, table["mean"][0], table["std"][0]))
        return (lambda: distributions(n, kind, lm)), figure

    views = {
        "matrix W_Q 768×768": grid_view("W_Q", "raw"),
        "matrix W_in 768×3072": grid_view("W_in", "raw"),
        "matrix W_E 50257×768": grid_view("W_E", "raw"),
        "moving avg W_Q, 64": grid_view("W_Q", "moving", 64),
        "block avg W_Q, 64": grid_view("W_Q", "block", 64),
        "moving avg W_in, 64": grid_view("W_in", "moving", 64),
        "moving avg W_E, 64": grid_view("W_E", "moving", 64),
        "distributions W_Q": dist_view("W_Q"),
        "distributions W_in": dist_view("W_in"),
        "stats table": ((lambda: table_of(n, lm)), None),
        "spectrum W_Q": spectrum_view("W_Q"),
        "spectrum W_in": spectrum_view("W_in"),
        "spectrum W_E": spectrum_view("W_E"),
    }
    print(f"{'view':<24}{'first s':>9}{'cached s':>10}{'ratio':>8}{'figure s':>10}{'JSON MB':>9}")
    for label, (compute, figure) in views.items():
        res, first = timed(compute)
        _, again = timed(compute)
        fig_s, size = float("nan"), float("nan")
        if figure is not None:
            (fig, fig_s) = timed(lambda: figure(res))
            size = len(fig.to_json()) / 1e6
        else:
            size = len(res.to_csv(index=False)) / 1e6  # the CSV download
        print(f"{label:<24}{first:>9.3f}{again:>10.4f}{first / max(again, 1e-9):>7.0f}×{fig_s:>10.3f}{size:>9.2f}")
    total = int(table_of(n, lm)["count"].sum())
    print(f"\nstats table total {total:,} == model.parameters() {lm.n_params:,}: {total == lm.n_params}")
    print("(stats table 'JSON MB' column is the CSV download size)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpt2-shaped")
