"""Train the mini GPT-2 that ships with the app (bundled/mini-gpt2-kjv), on a 2-core CPU.

    apt-get install bible-kjv          # Debian's King James Bible (public domain) and its reader
    python training/train_mini_gpt2.py --out bundled/mini-gpt2-kjv [--minutes 40] [--seed 0]

A genuine GPT-2 (transformers' GPT2LMHeadModel, tied embeddings) of a small shape, 6 layers
x 6 heads, d_model 192, context 256, with GPT-2's own byte-level BPE tokenizer (the 50,257
tokens of bundled/gpt2-bpe), trained on the King James Version of the Bible as Debian's
bible-kjv package prints it. Every 20th chapter is held out; the script prints the held-out
loss as it goes and writes the checkpoint in float16 (safetensors) with the tokenizer and a
TRAINING.json of what it measured. Seeded: the same seed, text and step count give the
same weights on the same machine.

One training sequence in ten is a random span of the text repeated twice, which rewards
"find the earlier copy of this token and say what came next" (an induction head). The
shipped checkpoint (40 minutes, 287 steps of 16 x 256 tokens) has learned the text's words
and statistics (held-out perplexity 67.5) but not yet such attention circuits: its heads
still spread their weight almost evenly, so it shows no previous-token or induction head.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
BPE = ROOT / "bundled" / "gpt2-bpe"
SHAPE = dict(n_layer=6, n_head=6, n_embd=192, n_positions=256)
REPEAT_SHARE = 0.1


def kjv_text() -> str:
    """The whole KJV as Debian's `bible` reader prints it: chapter headings, numbered verses."""
    if not shutil.which("bible"):
        raise SystemExit("Needs Debian's bible-kjv package (apt-get install bible-kjv), or give --text FILE.")
    out = subprocess.run(["bible", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    return out


def chapters(text: str) -> list[str]:
    """Chapters with each verse on one line ("  3 And God said, …"), the reader's wrapping undone."""
    parts = re.split(r"\n(?=\S[^\n]* \d+\n)", text.strip())
    cleaned = []
    for part in parts:
        lines = part.split("\n")
        verses, current = [], ""
        for line in lines[1:]:
            if re.match(r"^\s+\d+ ", line):
                if current:
                    verses.append(current)
                current = line.strip()
            elif line.strip():
                current += " " + line.strip()
        if current:
            verses.append(current)
        cleaned.append(lines[0].strip() + "\n" + "\n".join(verses) + "\n")
    return cleaned


def tokenizer():
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast(vocab=str(BPE / "vocab.json"), merges=str(BPE / "merges.txt"), bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.model_max_length = SHAPE["n_positions"]
    return tok


def batches(ids: np.ndarray, batch: int, ctx: int, rng: np.random.Generator):
    """Endless batches [batch, ctx + 1] of random windows; REPEAT_SHARE of rows are a random
    span repeated twice (then the next tokens), which rewards copying from context."""
    while True:
        rows = []
        for _ in range(batch):
            if rng.random() < REPEAT_SHARE:
                n = int(rng.integers(16, ctx // 2))
                s = int(rng.integers(0, len(ids) - ctx - 1))
                span = ids[s:s + n]
                row = np.concatenate([span, span, ids[s + n:s + n + ctx + 1 - 2 * n]])
            else:
                s = int(rng.integers(0, len(ids) - ctx - 1))
                row = ids[s:s + ctx + 1]
            rows.append(row)
        yield torch.from_numpy(np.stack(rows).astype(np.int64))


@torch.no_grad()
def held_out_loss(model, ids: np.ndarray, ctx: int, max_windows: int = 64) -> float:
    """Mean next-token loss (nats) over non-overlapping windows of the held-out chapters."""
    model.eval()
    starts = list(range(0, len(ids) - ctx - 1, ctx))[:max_windows]
    total, count = 0.0, 0
    for i in range(0, len(starts), 16):
        x = torch.from_numpy(np.stack([ids[s:s + ctx + 1] for s in starts[i:i + 16]]).astype(np.int64))
        logits = model(x[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        total, count = total + loss.item(), count + x[:, 1:].numel()
    model.train()
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bundled" / "mini-gpt2-kjv"))
    ap.add_argument("--text", help="a plain-text file instead of the KJV from Debian's bible reader")
    ap.add_argument("--minutes", type=float, default=40.0, help="stop after this long (and after --steps)")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tok = tokenizer()
    text = Path(args.text).read_text() if args.text else kjv_text()
    chs = chapters(text)
    train_text = "".join(c for i, c in enumerate(chs) if i % 20 != 7)
    held_text = "".join(c for i, c in enumerate(chs) if i % 20 == 7)
    train_ids = np.array(tok(train_text)["input_ids"], dtype=np.int32)
    held_ids = np.array(tok(held_text)["input_ids"], dtype=np.int32)
    print(f"{len(chs):,} chapters: {len(train_ids):,} training tokens, {len(held_ids):,} held out", flush=True)

    config = GPT2Config(**SHAPE, vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
    model = GPT2LMHeadModel(config)
    model.train()
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; {torch.get_num_threads()} threads",
          flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    ctx, warmup = SHAPE["n_positions"], 100
    budget_s = args.minutes * 60
    t0 = time.time()
    data = batches(train_ids, args.batch, ctx, rng)
    step, history = 0, []
    est_steps = args.steps
    while step < args.steps and time.time() - t0 < budget_s:
        # cosine decay over the time budget (a run stopped by the clock still ends at a low rate)
        progress = max(step / est_steps, (time.time() - t0) / budget_s)
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        x = next(data)
        loss = model(x[:, :-1], labels=x[:, :-1]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0 or step == 1:
            msg = f"step {step:>5}  {time.time() - t0:>6.0f} s  lr {lr:.2e}  train loss {loss.item():.3f}"
            if step % 200 == 0:
                held = held_out_loss(model, held_ids, ctx)
                history.append((step, round(held, 4)))
                msg += f"  held-out loss {held:.3f} (perplexity {math.exp(held):.1f})"
            print(msg, flush=True)
    held = held_out_loss(model, held_ids, ctx, max_windows=10_000)
    minutes = (time.time() - t0) / 60
    print(f"done: {step} steps in {minutes:.1f} min; held-out loss {held:.3f}, perplexity {math.exp(held):.1f}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().half().save_pretrained(out)
    tok.save_pretrained(out)
    (out / "TRAINING.json").write_text(json.dumps({
        "model": "GPT2LMHeadModel", **SHAPE, "vocab": len(tok), "tokenizer": "GPT-2's byte-level BPE (bundled/gpt2-bpe)",
        "text": "King James Version of the Bible (1611, public domain), as Debian's bible-kjv 4.x prints it",
        "held_out": "every 20th chapter (chapters 7, 27, 47, …)", "train_tokens": int(len(train_ids)),
        "held_out_tokens": int(len(held_ids)), "steps": step, "batch": args.batch, "context": ctx, "seed": args.seed,
        "minutes": round(minutes, 1), "threads": torch.get_num_threads(), "repeat_share": REPEAT_SHARE,
        "held_out_loss": round(held, 4), "held_out_perplexity": round(math.exp(held), 1), "history": history,
    }, indent=1))
    print(f"saved to {out}", flush=True)


if __name__ == "__main__":
    main()
