"""Tokens per second: core.sampling (greedy, recording every step's top-10 table) against
transformers' `model.generate(do_sample=False)` on the same prompt, 100 new tokens each,
on a random model of GPT-2 small's shape. Goal: at least 0.8 of generate's rate.

    python benchmarks/generation_speed.py [--tokens 100] [--repeats 3] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch
from common import gpt2_small_shaped, interleaved

from core import load_model
from core.beam import beam_search
from core.sampling import Decoding, generate_ids

PROMPT = "The best thing about AI is its ability to"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--beams", type=int, default=0, help="also time beam search with this many beams")
    args = ap.parse_args()
    lm = load_model(str(gpt2_small_shaped()), device=args.device)
    ids = lm.encode(PROMPT)
    n = args.tokens
    x = torch.tensor([ids], device=lm.device)
    greedy = Decoding(method="greedy", stop_at_eos=False)

    def ours():
        steps = generate_ids(lm, ids, n, greedy)
        assert len(steps) == n

    def sampled():
        steps = generate_ids(lm, ids, n, Decoding(temperature=0.8, top_p=0.9, stop_at_eos=False))
        assert len(steps) == n

    def reference():
        with torch.inference_mode():
            out = lm.model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        assert out.shape[1] == len(ids) + n

    fns = {"model.generate (greedy)": reference, "core.sampling, greedy + top-10 tables": ours,
           "core.sampling, T 0.8 top-p 0.9 + tables": sampled}
    if args.beams:
        fns[f"core.beam.beam_search ({args.beams} beams)"] = lambda: beam_search(lm, ids, n, args.beams)
        fns[f"model.generate ({args.beams} beams)"] = lambda: lm.model.generate(
            x, max_new_tokens=n, min_new_tokens=n, num_beams=args.beams, do_sample=False)

    same = [s.token_id for s in generate_ids(lm, ids, n, greedy)] == \
        lm.model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False)[0, len(ids):].tolist()
    best = interleaved(fns, repeats=args.repeats)
    base = n / best["model.generate (greedy)"]
    print(f"\n{lm.describe()}; prompt {len(ids)} tokens, {n} new tokens, fastest of {args.repeats} interleaved rounds")
    print(f"greedy output identical to model.generate: {same}\n")
    print(f"| {'run':<44} | tokens/s | vs generate |")
    print(f"|{'-' * 46}|---------:|------------:|")
    for name, secs in best.items():
        rate = n / secs
        print(f"| {name:<44} | {rate:8.1f} | {rate / base:10.2f}× |")


if __name__ == "__main__":
    main()
