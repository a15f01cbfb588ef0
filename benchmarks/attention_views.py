"""Payload and server time of each attention view at 128 and 1,024 tokens, GPT-2-small shape.

    python benchmarks/attention_views.py [--model /tmp/gpt2-shaped] [--repeat 3]

Builds a random GPT-2-small-shaped checkpoint once (core.synthetic) if the directory is
empty; its numbers are meaningless but its array sizes, and so the costs, are the real
ones. For each view it times what the page does (compute the layer or slice from the trace's
residuals, build the figure, serialise it as st.plotly_chart does with fig.to_json): "first"
is the first visit, with an empty per-layer cache; "again" is a rerun. It reports the
bytes sent and the heatmap cells, against the page budget (~10 MB) and the figure
budget (CELL_BUDGET). The prompt's forward itself is timed once per length, for scale.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import ByteBoundedCache, load_model  # noqa: E402
from core.attention import (  # noqa: E402
    attended_by,
    attends_to,
    head_across_layers,
    head_scores,
    induction_scores,
    pattern_summaries,
)
from core.synthetic import build_checkpoint  # noqa: E402
from core.trace import cache_budget_for, trace_ids  # noqa: E402
from viz.attention import (  # noqa: E402
    CELL_BUDGET,
    PAIR_GRID_CELLS,
    atlas_figure,
    figure_cells,
    focus_figure,
    head_across_layers_figure,
    head_figure,
    layer_heads_figure,
    layer_means_figure,
    panel_side,
    scores_figure,
)

PAGE_BUDGET_BYTES = 10_000_000


def views(lm, t, induction: np.ndarray) -> dict:
    """View name -> function returning the figures that view sends (as the page builds them)."""
    L, h, m = lm.n_layer // 2, 3, lm.name
    pos = t.n_tokens - 1
    side = panel_side(lm.n_layer, PAIR_GRID_CELLS)

    def across():
        grids, block = head_across_layers(t, h, side)
        return head_across_layers_figure(grids, t.tokens, model=m, head=h, cell_budget=PAIR_GRID_CELLS, block=block)

    def means():
        done = pattern_summaries(t, side)
        return layer_means_figure(done["means"], t.tokens, model=m, cell_budget=PAIR_GRID_CELLS, block=done["block"])

    def focus():
        to, frm = attends_to(t, pos).mean(axis=1, dtype=np.float32), attended_by(t, pos).mean(axis=1, dtype=np.float32)
        return [focus_figure(to, t.tokens, np.arange(pos + 1), pos, model=m, direction="to", head=None),
                focus_figure(frm, t.tokens, np.arange(pos, t.n_tokens), pos, model=m, direction="from", head=None)]

    return {
        "atlas: previous token": lambda: [atlas_figure(head_scores(t, with_entropy=False)["previous"], model=m,
                                                       metric="Previous token", description="")],
        "atlas: entropy (every pattern)": lambda: [atlas_figure(pattern_summaries(t, side)["entropy"], model=m,
                                                                metric="Entropy", description="")],
        "atlas: induction (cached)": lambda: [atlas_figure(induction, model=m, metric="Induction", description="")],
        "one layer, all heads": lambda: [layer_heads_figure(t.pattern(L), t.tokens, model=m, layer=L)],
        "one head": lambda: [head_figure(t.pattern(L, h), t.tokens, model=m, layer=L, head=h)],
        "one head + pre-softmax": lambda: [
            head_figure(t.pattern(L, h), t.tokens, model=m, layer=L, head=h),
            scores_figure(t.attn_scores(L, h), t.tokens, model=m, layer=L, head=h),
        ] if 2 * t.n_tokens**2 <= CELL_BUDGET else [
            scores_figure(t.attn_scores(L, h), t.tokens, model=m, layer=L, head=h),
        ],
        "across layers + means": lambda: [across(), means()],
        "token focus (last token)": focus,
    }


def measure(build, repeat: int) -> tuple[float, float, float, int, int]:
    """ms of the first build, best-of-`repeat` ms to build again and to serialise, JSON bytes,
    largest figure's cells."""
    t0 = time.perf_counter()
    build()
    first = time.perf_counter() - t0
    best_build = best_json = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        figs = build()
        t1 = time.perf_counter()
        payload = sum(len(f.to_json()) for f in figs)
        t2 = time.perf_counter()
        best_build, best_json = min(best_build, t1 - t0), min(best_json, t2 - t1)
    return first * 1e3, best_build * 1e3, best_json * 1e3, payload, max(figure_cells(f) for f in figs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/gpt2-shaped")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    args = ap.parse_args()
    path = Path(args.model)
    if not (path / "config.json").exists() and not (path / "model.safetensors.index.json").exists():
        print(f"building a GPT-2-small-shaped random checkpoint in {path} …")
        build_checkpoint(path, small=True)
    lm = load_model(str(path), device="cpu")
    print(f"{lm.describe()}; {lm.n_layer} layers x {lm.n_head} heads")
    t0 = time.perf_counter()
    induction = induction_scores(lm)
    print(f"induction atlas (one forward on 401 tokens, cached per model): "
          f"{(time.perf_counter() - t0) * 1e3:,.0f} ms\n")
    rng = np.random.default_rng(0)
    header = (f"{'tokens':>6}  {'view':<30} {'first ms':>9} {'again ms':>9} {'json ms':>8} {'payload MB':>11} "
              f"{'max cells':>10}  ok")
    print(header + "\n" + "-" * len(header))
    for n in args.lengths:
        ids = rng.integers(0, lm.d_vocab, size=n).tolist()
        t0 = time.perf_counter()
        t = trace_ids(lm, ids, cache=ByteBoundedCache(cache_budget_for(lm)))
        print(f"{n:>6}  {'(the prompt forward)':<30} {(time.perf_counter() - t0) * 1e3:>9,.0f}")
        for name, build in views(lm, t, induction).items():
            f_ms, b_ms, j_ms, payload, cells = measure(build, args.repeat)
            ok = "yes" if payload <= PAGE_BUDGET_BYTES and cells <= CELL_BUDGET else "OVER"
            print(f"{n:>6}  {name:<30} {f_ms:>9,.0f} {b_ms:>9,.0f} {j_ms:>8,.0f} {payload / 1e6:>11.2f} "
                  f"{cells:>10,}  {ok}", flush=True)
    print(f"\nbudgets: {PAGE_BUDGET_BYTES / 1e6:.0f} MB per page (one view per rerun: tabs run lazily), "
          f"{CELL_BUDGET:,} cells per figure")


if __name__ == "__main__":
    main()
