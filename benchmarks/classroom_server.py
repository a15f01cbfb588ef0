"""The classroom without the browsers: N sessions' model work at once, on the server's cores alone.

benchmarks/classroom.py drives real Chromium pages, and on a 2-core machine its 30 browsers use ~6x the
CPU of the server, so its times mostly measure the browsers. This runs what each session asks of the
model, as the pages ask it (the shared byte-bounded cache, so the compute lane where the checkout has
one), from N threads started at the same moment, one per session, as Streamlit runs each session's
script on its own thread:

  next       the prompt's trace (the forward) and the Next token figures' numbers;
  attention  layer 0's patterns of every head (the "One layer, all heads" view);
  layer      layer 5's patterns.

Each checkout runs in its own process (`--repo`, default this repository; /tmp/wt-before is a worktree of
the tree before the lane), so "before" and "after" are measured alike, interleaved. Prints p50 / p95 of
each step's seconds per N and of a session's three steps ("session"), and the ratio of the sessions'
p95(N = max) / p50(N = 1); `--same-prompt` gives every session
one prompt (shared work).

    python benchmarks/classroom_server.py [--n 1 10 30] [--tokens 200] [--same-prompt] [--repo A --repo B]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import ROOT, gpt2_small_shaped

CHILD = r"""
import json, sys, threading, time
import numpy as np
sys.path.insert(0, REPO)
from core import load_model
from core.cache import ByteBoundedCache
from core.trace import trace_ids
lm = load_model(MODEL)
rng = np.random.default_rng(7)
warm = trace_ids(lm, list(map(int, rng.integers(0, lm.d_vocab, 20))), cache=ByteBoundedCache())
warm.pattern(0)
out = {}
for ci, n in enumerate(NS):
    cache = ByteBoundedCache(max_bytes=2 * 2**30)  # a fresh class: nothing cached from before
    prompts = [list(map(int, rng.integers(0, lm.d_vocab, TOKENS))) for _ in range(n)]
    if SAME:
        prompts = [prompts[0]] * n
    times = {"next": [], "attention": [], "layer": [], "session": []}
    lock, start = threading.Lock(), threading.Barrier(n)

    def session(ids):
        start.wait()
        t0 = time.perf_counter()
        t = cache.get_or_compute(("trace", tuple(ids)), lambda: trace_ids(lm, ids, cache=cache))
        t.surprisal_bits, t.next_probs.argsort()[-10:]
        t1 = time.perf_counter()
        t.pattern(0)
        t2 = time.perf_counter()
        t.pattern(5)
        t3 = time.perf_counter()
        with lock:
            times["next"].append(t1 - t0); times["attention"].append(t2 - t1); times["layer"].append(t3 - t2)
            times["session"].append(t3 - t0)

    threads = [threading.Thread(target=session, args=(p,)) for p in prompts]
    [th.start() for th in threads]; [th.join() for th in threads]
    out[n] = times
print(json.dumps(out))
"""


def run(repo: Path, ns: list[int], tokens: int, same: bool) -> dict:
    code = (f"REPO={str(repo)!r}; MODEL={str(gpt2_small_shaped())!r}; NS={ns!r}; TOKENS={tokens}; SAME={same}\n"
            + CHILD)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--same-prompt", action="store_true")
    ap.add_argument("--repo", type=Path, action="append", help="checkouts to compare (default: this one)")
    args = ap.parse_args()
    repos = args.repo or [ROOT]
    print(f"load average {os.getloadavg()}; {len(os.sched_getaffinity(0))} cores; {args.tokens} tokens; "
          f"{'one prompt for all' if args.same_prompt else 'own prompts'}")
    results = {}
    for repo in repos:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                                text=True).stdout.strip()
        got = run(repo, args.n, args.tokens, args.same_prompt)
        results[f"{repo} ({commit})"] = got
        print(f"\n{repo} at {commit}")
        print(f"  {'N':>3} {'step':10s} {'p50 s':>7} {'p95 s':>7}")
        for n, times in got.items():
            for step, xs in times.items():
                print(f"  {n:>3} {step:10s} {pct(xs, .5):7.2f} {pct(xs, .95):7.2f}")
        first, last = min(got), max(got)
        ratio = pct(got[last]["session"], .95) / pct(got[first]["session"], .5)
        work = last * pct(got[first]["session"], .5)
        print(f"  p95(N = {last}) / p50(N = {first}) of a session's three steps: {ratio:.1f} "
              f"(N x one session's work alone: {work:.1f} s)")
    name = "classroom_server" + ("-same" if args.same_prompt else "") + ".json"
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "out" / name).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
