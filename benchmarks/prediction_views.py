"""Inside the prediction: server time of each view, first visit and again, and its payload.

    python benchmarks/prediction_views.py [--model DIR] [--lengths 128 1024]

Default model: GPT-2 small's shape (random weights, built once into cache/); pass
--model /tmp/shaped/gpt2-xl for the largest shape. Each view does what the page does:
compute from the trace's stored residuals and cached layers, build the figures, serialise
them as st.plotly_chart does. Goals at 1,024 tokens: <= 3 s per view on GPT-2 small's
shape after the trace exists, <= 10 s on gpt2-xl's; each figure <= 1.5 M cells, <= 10 MB.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import gpt2_small_shaped

from core import ByteBoundedCache, load_model, trace_ids  # noqa: E402
from core.prediction import (  # noqa: E402
    cached_lens, direct_logit_attribution, head_writes, neuron_activations, neuron_attribution, neuron_top_tokens,
    token_probs_through_layers, top_neurons,
)
from core.tokens import display_tokens  # noqa: E402
from core.trace import cache_budget_for  # noqa: E402
from viz.attention import figure_cells, head_figure  # noqa: E402
from viz.prediction import (  # noqa: E402
    attribution_figure, lens_grid_figure, lens_lines_figure, neuron_strip_figure, pushes_figure,
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
        return [pushes_figure(display_tokens(lm, up), uv, display_tokens(lm, down), dv, "head"),
                head_figure(t.pattern(L, h), t.tokens, model="m", layer=L, head=h)]

    return {"logit lens": lens, "attribution": attribution, "neurons": neurons, "what a head writes": head}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    args = ap.parse_args()
    lm = load_model(args.model or str(gpt2_small_shaped()), device="cpu")
    print(lm.describe())
    print(f"{'tokens':>6}  {'view':<20} {'first s':>8} {'again s':>8} {'payload MB':>11} {'max cells':>10}")
    rng = np.random.default_rng(0)
    for n in args.lengths:
        t = trace_ids(lm, rng.integers(0, lm.d_vocab, n).tolist(), cache=ByteBoundedCache(cache_budget_for(lm)))
        for name, build in views(lm, t).items():
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
