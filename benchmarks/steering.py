"""Steering's speed on a random model of GPT-2 small's shape (124 M parameters):

1. steered against plain generation, 40 new tokens, both through core.steering.generate (cached
   keys and values), measured interleaved in one run: plain tokens/s ÷ steered tokens/s (that is,
   steered time ÷ plain time). Goal ≤ 1.1: the steer costs at most 10%.
2. the Steering page's coefficient sweep: 9 coefficients, each a steered continuation of 20
   tokens, p(word) at the next token and the continuation's perplexity under the unsteered model
   (recipes.steering.sweep_point, what the page runs). Goal ≤ 10 s.

    python benchmarks/steering.py [--tokens 40] [--sweep-tokens 20] [--repeats 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch
from common import gpt2_small_shaped, interleaved

from core import load_model
from core.steering import contrast_vector, generate
from recipes.steering import Steer, sweep_coefficients, sweep_point

PROMPT = "I hate you because"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--sweep-tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(str(gpt2_small_shaped()), device=args.device)
    ids = [lm.tokenizer.bos_token_id] + lm.encode(PROMPT)
    layer, c, n = 6, 5.0, args.tokens
    vector = contrast_vector(lm, "Love", "Hate", layer)

    def plain():
        assert len(list(generate(lm, ids, n, temperature=1.0, seed=0))) == n

    def steered():
        assert len(list(generate(lm, ids, n, vector=vector, layer=layer, coefficient=c, temperature=1.0, seed=0))) == n

    best = interleaved({"plain": plain, "steered": steered}, repeats=args.repeats)
    print(f"\n{lm.describe()}; prompt {len(ids)} tokens (<|endoftext|> first), {n} new tokens, "
          f"fastest of {args.repeats} interleaved rounds")
    print("| run | tokens/s |\n|---|---:|")
    for name, secs in best.items():
        print(f"| {name} (core.steering.generate) | {n / secs:8.1f} |")
    ratio = best["steered"] / best["plain"]
    verdict = "met" if ratio <= 1.1 else "MISSED"
    print(f"\nplain ÷ steered tokens/s (steered ÷ plain time): {ratio:.3f} (goal ≤ 1.1: {verdict})")

    s = Steer(vector, layer, c, tuple(ids), "benchmark")
    word = lm.encode(" love")[0]
    t0 = time.perf_counter()
    points = [sweep_point(lm, s, k, word, args.sweep_tokens, 1.0, 0) for k in sweep_coefficients(s)]
    secs = time.perf_counter() - t0
    assert len(points) == 9 and all(len(p.ids) == args.sweep_tokens for p in points)
    print(f"coefficient sweep, 9 points × {args.sweep_tokens} tokens (+ p(word) and perplexity): {secs:.2f} s "
          f"(goal ≤ 10 s: {'met' if secs <= 10 else 'MISSED'})")


if __name__ == "__main__":
    main()
