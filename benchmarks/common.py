"""Shared by the benchmarks: a GPT-2-small-shaped random checkpoint and timing helpers."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPED_DIR = ROOT / "cache" / "gpt2-small-random"


def gpt2_small_shaped() -> Path:
    """A random model with GPT2Config() defaults (124 M parameters), built once into cache/."""
    if not (SHAPED_DIR / "model.safetensors").exists():
        from core.synthetic import build_checkpoint

        print(f"building a random GPT-2-small-shaped checkpoint in {SHAPED_DIR} …", flush=True)
        build_checkpoint(SHAPED_DIR, small=True)
    return SHAPED_DIR


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Fastest seconds of each function, calling them in turn each round so that a change
    in machine load hits all of them alike (ratios stay fair on a shared 2-core box)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def best_of(fn, repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """(min, median) seconds of `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)
