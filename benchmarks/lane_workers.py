"""How many compute-lane workers make the total fastest on this machine (core.lane's default).

Many sessions at once, each asking for its own prompt's trace (~200 tokens, GPT-2 small's shape)
and one layer's attention patterns, through the shared cache and the lane, as the app does. Each
configuration (workers x torch threads per worker) runs in its own process (torch's thread count is
per process); the wall time for all sessions is printed, and its ratio to the 1-worker lane.

    python benchmarks/lane_workers.py [--sessions 12] [--tokens 200]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import ROOT, gpt2_small_shaped


def one(workers: int, threads: int, sessions: int, tokens: int) -> float:
    env = dict(os.environ, GPT2VIZ_LANE_WORKERS=str(workers), GPT2VIZ_LANE_THREADS=str(threads))
    code = f"""
import sys, threading, time
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from core import load_model
from core.cache import ByteBoundedCache
from core.trace import trace_ids
lm = load_model({str(gpt2_small_shaped())!r})
cache = ByteBoundedCache(max_bytes=4 * 2**30)
rng = np.random.default_rng(0)
prompts = [list(map(int, rng.integers(0, lm.d_vocab, {tokens}))) for _ in range({sessions})]
def session(ids):
    t = cache.get_or_compute(("t", tuple(ids)), lambda: trace_ids(lm, ids, cache=cache))
    t.pattern(5)
session(prompts[0][:20])  # warm up
t0 = time.perf_counter()
threads = [threading.Thread(target=session, args=(p,)) for p in prompts]
[th.start() for th in threads]; [th.join() for th in threads]
print(time.perf_counter() - t0)
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    configs = [(1, cores), (cores, 1)] + ([(2, cores // 2)] if cores >= 4 else [])
    print(f"{cores} cores · load average {os.getloadavg()[0]:.2f} · {args.sessions} sessions x {args.tokens} tokens")
    best = {c: float("inf") for c in configs}
    for _ in range(args.rounds):  # interleaved, so a change in load hits every configuration alike
        for c in configs:
            best[c] = min(best[c], one(*c, args.sessions, args.tokens))
    base = best[configs[0]]
    for (w, th), s in best.items():
        print(f"  {w} worker(s) x {th} torch thread(s): {s:6.2f} s  ({s / base:.2f}x the 1-worker lane)")
    out = ROOT / "benchmarks" / "out" / "lane_workers.json"
    out.write_text(json.dumps({f"{w}x{t}": s for (w, t), s in best.items()} | {"cores": cores,
                                                                                 "time": time.ctime()}))


if __name__ == "__main__":
    main()
