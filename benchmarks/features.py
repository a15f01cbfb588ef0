"""Sparse features at GPT-2 small's scale: an SAE of gpt2-small-res-jb's shape (d_in 768, 24,576
features, ReLU, centred input) with random weights, on a random model of GPT-2 small's shape.

    python benchmarks/features.py [--tokens 1024] [--corpus-tokens 100000] [--layer 6]

Goals (issue 23), at 1,024 tokens: the features of one layer <= 1 s the first time and <= 0.1 s
cached; the feature attribution of one token <= 3 s; top contexts over 100,000 tokens <= 60 s
(with progress), then from disk <= 1 s. The encoder's biases are set so that about 50 features
fire per token (L0 ~ 50, as the public SAE's middle layers): random weights would fire half of them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import gpt2_small_shaped

from core import ByteBoundedCache, load_model, trace_ids  # noqa: E402
from core.trace import cache_budget_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def build_sae(out: Path, lm, layer: int, ids: list[int], d_sae: int = 24576, l0: int = 50) -> Path:
    """A random SAE of gpt2-small-res-jb's shape, saved by sae-lens, firing ~l0 features a token."""
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=lm.d_model, d_sae=d_sae)
    cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_pre"
    cfg.metadata.model_from_pretrained_kwargs = {"center_writing_weights": True}
    sae = StandardSAE(cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.from_numpy(trace_ids(lm, ids, cache=ByteBoundedCache(0)).resid[layer].copy())
    x = x - x.mean(-1, keepdim=True)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(lm.d_model, d_sae, generator=gen) / lm.d_model**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, lm.d_model, generator=gen) / lm.d_model**0.5)
        sae.b_dec.zero_()
        pre = x @ sae.W_enc
        sae.b_enc.copy_(-torch.quantile(pre, 1 - l0 / d_sae, dim=0))
    sae.save_model(out)
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    warnings.filterwarnings("ignore", message="This SAE has non-empty")  # sae-lens's advice for TransformerLens users
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--corpus-tokens", type=int, default=100_000)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--threads", type=int, help="torch threads (1 on a busy machine times the work itself)")
    args = ap.parse_args()
    os.environ.setdefault("GPT2VIZ_CACHE_DIR", tempfile.mkdtemp())
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(str(gpt2_small_shaped()), device="cpu")
    print(f"{lm.describe()}; {torch.get_num_threads()} torch threads")
    (_, s) = timed(lambda: __import__("sae_lens"))
    print(f"import sae_lens (the first SAE in a process): {s:.1f} s")
    from core.feature_cards import corpus_windows, top_contexts
    from core.features import feature_acts, feature_attribution
    from core.sae import load_sae

    ids = torch.randint(0, lm.d_vocab, (args.tokens,), generator=torch.Generator().manual_seed(1)).tolist()
    path = build_sae(Path(tempfile.mkdtemp()) / "sae", lm, args.layer, ids)
    sae, s = timed(lambda: load_sae(str(path)))
    print(f"load_sae: {s:.3f} s ({sae.d_in} x {sae.d_sae:,}, {sae.nbytes / 2**20:,.0f} MB)")
    t = trace_ids(lm, ids, cache=ByteBoundedCache(cache_budget_for(lm)))
    acts, first = timed(lambda: feature_acts(lm, t, sae))
    _, again = timed(lambda: feature_acts(lm, t, sae))
    held = acts.indptr.nbytes + acts.indices.nbytes + acts.values.nbytes + acts.error_norm.nbytes
    print(f"features of layer {args.layer} at {t.n_tokens} tokens: first {first:.2f} s (goal <= 1), cached "
          f"{again * 1e3:.1f} ms (goal <= 100); mean L0 {acts.l0.mean():.1f}; held per prompt and layer "
          f"{held / 2**20:.2f} MB (sparse; dense would be {4 * t.n_tokens * sae.d_sae / 2**20:,.0f} MB)")
    a, s = timed(lambda: feature_attribution(lm, t, sae, int(t.top_ids[-1, 0])))
    print(f"feature attribution of one token: {s:.2f} s (goal <= 3); {len(a.features):,} features; "
          f"sum + error + rest - linearised = {a.effect.sum() + a.error + a.rest - a.linearised:.2e}")
    text = (ROOT / "bundled" / "texts" / "kjv_genesis.txt").read_text()
    windows = corpus_windows(lm, text * (1 + args.corpus_tokens // 45_000), 128, args.corpus_tokens)
    steps = []
    ctx, s = timed(lambda: top_contexts(lm, sae, windows, on_step=lambda d, n: steps.append(d)))
    print(f"top contexts over {windows.size:,} tokens (Genesis, repeated): {s:.1f} s (goal <= 60), "
          f"{len(steps)} progress steps")
    _, s = timed(lambda: top_contexts(lm, sae, windows))
    print(f"top contexts again, from disk: {s:.2f} s (goal <= 1)")
    sys.stdout.flush()


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
