"""Experiments page costs on GPT-2 small's shape (random weights, built once into cache/), CPU.

    python benchmarks/experiments.py [--tokens 20]

Times, for a prompt of --tokens tokens: the head-ablation scan (every head and every MLP
layer knocked out alone: 144 + 12 interventions, batched one forward per layer; goal <= 15 s
on this 2-core CPU), one ablation of three heads, and activation patching of the residual
stream (layer x position) and of every head (layer x head).
"""
from __future__ import annotations

import argparse
import time

import torch
from common import gpt2_small_shaped

from core import ByteBoundedCache, load_model, trace_ids  # noqa: E402
from core.interventions import ablate, head_ablation_scan, patch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=20)
    args = ap.parse_args()
    lm = load_model(str(gpt2_small_shaped()), device="cpu")
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, lm.d_vocab, (args.tokens,), generator=gen).tolist()
    other = list(ids)
    other[args.tokens // 2] = (other[args.tokens // 2] + 1) % lm.d_vocab
    t = trace_ids(lm, ids, cache=ByteBoundedCache(2**30))
    corrupted = trace_ids(lm, other, cache=ByteBoundedCache(2**30))
    print(f"{lm.describe()}; {args.tokens}-token prompt; torch {torch.__version__}, {torch.get_num_threads()} threads")
    n = lm.n_layer * lm.n_head
    for name, fn in [
        ("head-ablation scan", lambda: head_ablation_scan(lm, t, int(t.top_ids[-1, 0]))),
        ("ablate 3 heads (zero)", lambda: ablate(lm, t, heads=[(0, 1), (5, 5), (9, 2)])),
        ("ablate 3 heads (mean)", lambda: ablate(lm, t, heads=[(0, 1), (5, 5), (9, 2)], mode="mean")),
        ("patch the residual, layer x position", lambda: patch(lm, t, corrupted, "resid")),
        ("patch every head, layer x head", lambda: patch(lm, t, corrupted, "head")),
    ]:
        t0 = time.perf_counter()
        fn()
        s = time.perf_counter() - t0
        extra = f"  ({s / (n + lm.n_layer) * 1e3:.1f} ms per head or MLP layer; goal <= 15 s)" if "scan" in name else ""
        print(f"{name:<40} {s:>7.2f} s{extra}", flush=True)


if __name__ == "__main__":
    main()
