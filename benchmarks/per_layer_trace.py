"""The per-layer trace: its cost against a bare forward, what it stores, per-layer reads, memory.

    python benchmarks/per_layer_trace.py small [--repeats 9]
        GPT-2 small's shape (built once into cache/): trace / bare forward at 128 and 1,024
        tokens. Goal: <= 1.05 at both.
    python benchmarks/per_layer_trace.py shape --shape gpt2-xl [--dir /tmp/shaped/gpt2-xl]
        One size's shape at 1,024 tokens (built on first use, gpt2-xl: ~6 GB on disk): the
        stored trace (goal <= 400 MB for gpt2-xl), trace / bare (goal <= 1.1), and the first
        and cached read of one layer's pattern, one head's pattern and one layer's MLP
        activations (goals <= 3 s and <= 0.1 s), plus the views that read every layer.
    python benchmarks/per_layer_trace.py memory --shape gpt2-xl [--dir …]
        Peak resident memory of a process that loads the model and traces 5 different
        1,024-token prompts, reading a layer of each, with the app's cache budget for that
        model. Goal for gpt2-xl: <= 9 GB (the weights alone are 6.2 GB).

"bare" is transformers' own GPT2LMHeadModel forward with sdpa attention and no extra
outputs, on the same weights (the trace never calls the attention module, so the same
model object serves both). Bare and trace take turns, fastest of N each: a shared 2-core
machine drifts, so only ratios measured in one run mean anything.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from common import gpt2_small_shaped, interleaved

from core import ByteBoundedCache, load_model, trace_ids  # noqa: E402  (common puts the repo on sys.path)
from core.attention import attended_by, attends_to, head_across_layers, pattern_summaries  # noqa: E402
from core.synthetic import build_shaped  # noqa: E402
from core.trace import cache_budget_for  # noqa: E402


def _model(shape: str, directory: str | None):
    from pathlib import Path

    if shape == "gpt2":
        path = gpt2_small_shaped()
    else:
        path = Path(directory or f"/tmp/shaped/{shape}")
        if not (path / "model.safetensors").exists() and not (path / "model.safetensors.index.json").exists():
            print(f"building a random {shape}-shaped checkpoint in {path} …", flush=True)
            build_shaped(path, shape)
    return load_model(str(path), device="cpu")


def _ids(lm, n: int, seed: int) -> list[int]:
    return torch.randint(0, lm.d_vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bare_vs_trace(lm, lengths: list[int], repeats: int, goal: float) -> None:
    bare = lm.model
    bare.set_attn_implementation("sdpa")
    print(f"{'tokens':>6} {'bare s':>8} {'trace s':>8} {'trace/bare':>11} {'goal':>5} {'stored MB':>10}")
    for n in lengths:
        ids = _ids(lm, n, n)
        x = torch.tensor([ids])
        with torch.inference_mode():
            best = interleaved({"bare": lambda: bare(x),
                                "trace": lambda: trace_ids(lm, ids, cache=ByteBoundedCache(0))}, repeats)
        ratio = best["trace"] / best["bare"]
        stored = trace_ids(lm, ids, cache=ByteBoundedCache(0)).nbytes / 2**20
        print(f"{n:>6} {best['bare']:>8.3f} {best['trace']:>8.3f} {ratio:>11.3f} {goal:>5} {stored:>10.1f}  "
              f"{'ok' if ratio <= goal else 'MISS'}", flush=True)


def per_layer_reads(lm) -> None:
    t = trace_ids(lm, _ids(lm, lm.n_ctx, 1), cache=ByteBoundedCache(cache_budget_for(lm)))
    L, h = lm.n_layer // 2, lm.n_head // 2
    print(f"\nper-layer reads at {t.n_tokens} tokens (layer {L}, head {h}); goals: first <= 3 s, cached <= 0.1 s")
    print(f"{'read':<34} {'first s':>8} {'cached s':>9} {'MB':>7}")
    for name, fn in [
        ("one head's pattern", lambda: t.pattern(L + 1, h)),
        ("one layer's patterns (all heads)", lambda: t.pattern(L)),
        ("one layer's pre-softmax scores", lambda: t.attn_scores(L)),
        ("one layer's MLP activations", lambda: t.layer_act(L, "mlp_post")),
    ]:
        first = _timed(fn)
        cached = min(_timed(fn) for _ in range(3))
        print(f"{name:<34} {first:>8.3f} {cached:>9.4f} {fn().nbytes / 2**20:>7.1f}  "
              f"{'ok' if first <= 3 and cached <= 0.1 else 'MISS'}", flush=True)
    side = 128
    print("\nviews that read every layer (computed once per prompt, then cached):")
    for name, fn in [
        ("one head across layers (pooled)", lambda: head_across_layers(t, h, side)),
        ("token focus: row of the last token", lambda: attends_to(t, t.n_tokens - 1)),
        ("token focus: column of token 0", lambda: attended_by(t, 0)),
        ("every pattern: entropy + layer means", lambda: pattern_summaries(t, side)),
    ]:
        print(f"{name:<38} {_timed(fn):>8.2f} s", flush=True)


def memory(lm, prompts: int) -> None:
    cache = ByteBoundedCache(cache_budget_for(lm))
    print(f"model loaded: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB; "
          f"cache budget {cache.max_bytes / 2**20:,.0f} MB")
    for i in range(prompts):
        t = trace_ids(lm, _ids(lm, lm.n_ctx, 100 + i), cache=cache)
        cache.get_or_compute(("prompt", i), lambda: t, expected_bytes=t.nbytes)  # kept as the app keeps it
        t.pattern(i % lm.n_layer)
        t.layer_act(i % lm.n_layer, "mlp_post")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"after prompt {i + 1}: peak RSS {rss:.2f} GB, cache {cache.nbytes / 2**20:,.0f} MB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["small", "shape", "memory"])
    ap.add_argument("--shape", default="gpt2-xl", choices=["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"])
    ap.add_argument("--dir", help="where the shaped checkpoint is (or is built)")
    ap.add_argument("--repeats", type=int, default=0, help="interleaved rounds (default 9 small, 3 other shapes)")
    ap.add_argument("--prompts", type=int, default=5)
    args = ap.parse_args()
    lm = _model("gpt2" if args.what == "small" else args.shape, args.dir)
    print(f"{lm.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    if args.what == "small":
        bare_vs_trace(lm, [128, 1024], args.repeats or 9, 1.05)
    elif args.what == "shape":
        bare_vs_trace(lm, [1024], args.repeats or 3, 1.1)
        per_layer_reads(lm)
    else:
        memory(lm, args.prompts)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
