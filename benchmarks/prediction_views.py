"""Inside the prediction: server time of each view, first visit and again, and its payload.

    python benchmarks/prediction_views.py [--model DIR] [--lengths 128 1024] [--threads N]

Default model: GPT-2 small's shape (random weights, built once into cache/); pass
--model /tmp/shaped/gpt2-xl for the largest shape. Each view does what the page does:
compute from the trace's stored residuals and cached layers, build the figures, serialise
them as st.plotly_chart does. "first" starts from the trace alone (every per-layer array
and every derived result dropped from the cache, as when the view is the first one opened),
"again" is the same view rerun (a widget change elsewhere on the page). Goals at 1,024
tokens: <= 3 s per view on GPT-2 small's shape after the trace exists, <= 10 s on
gpt2-xl's; each figure <= 1.5 M cells, the page <= 10 MB.

Random weights spread attention evenly, the contribution graph's slowest case (no part is
small enough to skip); a trained GPT-2 puts most of it on a few tokens.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import gpt2_small_shaped

from core import ByteBoundedCache, load_model, trace_ids  # noqa: E402
from core.contributions import contribution_graph  # noqa: E402
from core.prediction import (  # noqa: E402
    cached_lens,
    direct_logit_attribution,
    head_writes,
    neuron_activations,
    neuron_attribution,
    neuron_top_tokens,
    token_probs_through_layers,
    top_neurons,
)
from core.tokens import display_tokens  # noqa: E402
from core.trace import cache_budget_for  # noqa: E402
from viz.attention import figure_cells, head_figure  # noqa: E402
from viz.prediction import (  # noqa: E402
    attribution_figure,
    contribution_graph_figure,
    lens_grid_figure,
    lens_lines_figure,
    neuron_strip_figure,
    pushes_figure,
)


def views(lm, t):
    pos, L, h = t.n_tokens - 1, lm.n_layer // 2, 0
    target = int(t.top_ids[pos, 0])

    def lens():
        positions = np.arange(max(0, pos - 23), pos + 1)
        ln = cached_lens(lm, t, positions, 5, None)
        tops = [[display_tokens(lm, ln.top_ids[r, c]) for c in range(len(positions))] for r in range(t.n_layer + 1)]
        return [lens_grid_figure(tops, ln.top_probs, ln.top_probs[..., 0], positions, t.tokens, "lens", "p"),
                lens_lines_figure(token_probs_through_layers(lm, t, pos, t.top_ids[pos, :5]), ["a"] * 5, "lines")]

    def attribution():
        a = direct_logit_attribution(lm, t, target, pos)
        neuron_attribution(lm, t, target, pos, 15)
        return [attribution_figure(a.heads, a.mlp, a.attn_bias, a.embed, a.pos_embed, a.ln_bias, "dla")]

    def neurons():
        ids, _ = top_neurons(t, L, pos, 16)
        up, uv, down, dv = neuron_top_tokens(lm, L, int(ids[0]), 12)
        return [neuron_strip_figure(neuron_activations(t, L, ids), ids.tolist(), L, t.tokens, "strip"),
                pushes_figure(display_tokens(lm, up), uv, display_tokens(lm, down), dv, "writes")]

    def head():
        up, uv, down, dv = head_writes(lm, t, L, h, pos, 12)
        direct_logit_attribution(lm, t, target, pos)  # the caption: this head's part of the logit
        return [pushes_figure(display_tokens(lm, up), uv, display_tokens(lm, down), dv, "head"),
                head_figure(t.pattern(L, h), t.tokens, model="m", layer=L, head=h)]

    def graph(threshold):
        def build():
            edges = contribution_graph(lm, t, pos, threshold)
            return [contribution_graph_figure(edges, t.tokens, lm.n_layer, pos, f"graph {threshold}")]
        return build

    return {"logit lens": lens, "attribution": attribution, "neurons": neurons, "what a head writes": head,
            "graph, bar 0.04": graph(0.04), "graph, bar 0.01": graph(0.01)}


def matmul_gflops(d: int, repeats: int = 10) -> float:
    a, b = torch.randn(1024, d), torch.randn(d, d)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 1024 * d * d * repeats / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--threads", type=int, help="torch threads (on a shared, busy machine 1 thread times the work "
                    "itself; two threads there mostly wait on each other)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model or str(gpt2_small_shaped()), device="cpu")
    print(lm.describe())
    print(f"this machine now: {matmul_gflops(lm.d_model):.0f} GFLOP/s on a [1024, d_model] x [d_model, d_model] "
          f"float32 product, {torch.get_num_threads()} threads (a busy machine: compare ratios)")
    print(f"{'tokens':>6}  {'view':<20} {'first s':>8} {'again s':>8} {'payload MB':>11} {'max cells':>10}")
    rng = np.random.default_rng(0)
    warm = trace_ids(lm, rng.integers(0, lm.d_vocab, 16).tolist(), cache=ByteBoundedCache(cache_budget_for(lm)))
    for build in views(lm, warm).values():  # first calls of torch kernels, plotly validators, pandas
        build()
    for n in args.lengths:
        t = trace_ids(lm, rng.integers(0, lm.d_vocab, n).tolist(), cache=ByteBoundedCache(cache_budget_for(lm)))
        for name, build in views(lm, t).items():
            t.cache.clear()  # only the trace itself: the view computes everything else it needs
            t0 = time.perf_counter()
            figs = build()
            payload = sum(len(f.to_json()) for f in figs)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            [f.to_json() for f in build()]
            again = time.perf_counter() - t0
            print(f"{n:>6}  {name:<20} {first:>8.2f} {again:>8.2f} {payload / 1e6:>11.2f} "
                  f"{max(figure_cells(f) for f in figs):>10,}", flush=True)


if __name__ == "__main__":
    main()
