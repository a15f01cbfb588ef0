"""Cost of the full trace against a bare forward of the same model, in one run.

    python benchmarks/trace_overhead.py [--repeats 5]

On a random GPT-2-small-shaped model (its compute cost is the real one) for 128- and
1,024-token prompts, times:
  bare      transformers' GPT2LMHeadModel forward, sdpa attention, no extra outputs
  eager     transformers with eager attention, output_attentions + output_hidden_states
  trace     core.trace.trace_ids: every pattern, residual, MLP activation, per-position
            surprisal, entropy and top-10, stored as the app caches them
Goal (issue 2): trace / bare <= 1.1 at 128 tokens and <= 1.3 at 1,024 tokens.
"""
from __future__ import annotations

import argparse

import torch

from common import best_of, gpt2_small_shaped, interleaved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    args = parser.parse_args()

    from transformers import GPT2LMHeadModel

    from core import load_model, trace_ids

    path = gpt2_small_shaped()
    lm = load_model(str(path), device="cpu")
    bare_model = GPT2LMHeadModel.from_pretrained(path, attn_implementation="sdpa").eval()
    print(f"model: {lm.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'tokens':>6} {'bare s':>8} {'eager s':>8} {'trace s':>8} {'eager/bare':>11} {'trace/bare':>11} {'goal':>6}")
    gen = torch.Generator().manual_seed(0)
    for n in args.lengths:
        ids = torch.randint(0, lm.d_vocab, (n,), generator=gen).tolist()
        x = torch.tensor([ids])
        with torch.inference_mode():
            best = interleaved({"bare": lambda: bare_model(x), "trace": lambda: trace_ids(lm, ids)}, args.repeats)
            # The eager reference runs apart: its 600 MB of float32 attention, allocated between
            # the other two, would tax whichever runs after it with fresh page faults.
            eager, _ = best_of(lambda: lm.model(x, output_attentions=True, output_hidden_states=True), args.repeats)
        bare, traced = best["bare"], best["trace"]
        goal = 1.1 if n <= 128 else 1.3
        ok = "ok" if traced / bare <= goal else "MISS"
        print(f"{n:>6} {bare:>8.3f} {eager:>8.3f} {traced:>8.3f} {eager / bare:>11.2f} {traced / bare:>11.2f} {goal:>5} {ok}")
    t = trace_ids(lm, ids)
    print(f"trace of {t.n_tokens} tokens holds {t.nbytes / 2**20:,.0f} MB "
          f"(attention {t.attention.nbytes / 2**20:,.0f} MB float16)")


if __name__ == "__main__":
    main()
