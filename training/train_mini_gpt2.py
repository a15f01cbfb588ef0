"""Train the mini GPT-2 that ships with the app (bundled/mini-gpt2-kjv), on a 2-core CPU.

    apt-get install bible-kjv          # Debian's King James Bible (public domain) and its reader
    python training/train_mini_gpt2.py --out bundled/mini-gpt2-kjv [--seed 0]

A genuine GPT-2 (transformers' GPT2LMHeadModel, tied embeddings) of a small shape, 6 layers
x 6 heads, d_model 192, context 256, with GPT-2's own byte-level BPE tokenizer (the 50,257
tokens of bundled/gpt2-bpe), trained on the King James Version of the Bible as Debian's
bible-kjv package prints it. Every 20th chapter is held out; the script prints the held-out
loss and the best previous-token and induction heads as it goes, and writes the checkpoint
in float16 (safetensors) with the tokenizer, a TRAINING.json of what it measured, and
trained_tokens.json, the tokens it saw often enough to learn (the app's induction probe uses them).
Seeded: the same seed, text, steps and thread count give the same weights on the same machine.

What it takes for attention circuits to form within the hour (measured: see README):
- the position embedding starts as sinusoids at about the token embedding's size (std 0.05,
  no weight decay). At std 0.2 the heads learned to attend by content only (the latest
  newline or colon) and no previous-token head formed; at 0.02 the positions faded;
- the first 1,200 steps read 32-token windows (as many tokens a step), where a head that
  prefers the token before gets a larger share of the weight, so it is rewarded sooner;
- 30% of the rows are random tokens (drawn at the text's frequencies) repeated to fill the row,
  where only copying helps: find the earlier copy of the current token and predict what came
  next. Induction heads form by step 700 and read what a previous-token head writes, which
  rewards a clean previous-token head: block 0's head 5 puts 0.53 of its weight on the token
  before at step 800 and 0.98 at step 2,000 (on 32-token windows; without these rows, 0.36 at
  step 1,200), and 0.94 on 256-token windows at the end. A quarter of the other rows are a
  random span of the text repeated twice;
- for speed, the first 90% of steps take the softmax over the 9,759 tokens the training text
  uses (the output layer is most of the cost: 0.7 s a step instead of 2.2), the rest over all
  50,257, so every token's probability is learned; float32 throughout (bfloat16 autocast is
  ~25x slower on CPUs without bfloat16 units).

Without the random-token rows (the recipe until then: a quarter of the rows a repeated span of
the text) no induction head formed, and the best previous-token head stopped at 0.43: on text
it put 0.34 of its weight on the token itself, a local average rather than a previous-token
head. Tried then, and not kept (score on 256-token held-out windows): sinusoids with periods
from 2.5 to 512 positions (0.35 at step 1,500, against 0.38); the position embedding's learning
rate x3 (no change up to step 1,100); from the step-2,000 checkpoint, 200-400 more steps with
75% repeated-span rows, with half the rows random tokens repeated, or without weight decay
(0.42-0.44, no induction head: too late, once the heads had settled).
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
STEPS, BATCH, LR, WARMUP, REPEAT_SHARE, RANDOM_SHARE = 3000, 8, 3e-3, 100, 0.25, 0.3
SHORT_STEPS, SHORT_CONTEXT, POSITION_STD, POSITION_LR = 1200, 32, 0.05, 1.0
INIT_STD, TEXT_VOCAB_SHARE = 0.04, 0.9
LEARNED_MIN_COUNT = 20  # a token the text uses this often has a learned embedding (see write_trained_tokens)


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


def batches(ids: np.ndarray, batch: int, ctx: int, rng: np.random.Generator, repeat_share: float,
            random_share: float = 0.0):
    """Endless batches [batch, ctx + 1] of random windows of the text. `random_share` of rows are
    instead a run of random tokens (drawn at the text's frequencies) repeated until the row is
    full, where only copying helps: find the earlier copy of the current token and predict what
    came after it (an induction head). Of the other rows, `repeat_share` are a random span of the
    text repeated twice, then the text that follows."""
    while True:
        rows = []
        for _ in range(batch):
            if rng.random() < random_share:
                n = int(rng.integers(3, (ctx + 1) // 2 + 1))
                row = np.resize(ids[rng.integers(0, len(ids), n)], ctx + 1)  # r, r, r, … cut at ctx + 1
            elif rng.random() < repeat_share:
                n = int(rng.integers(max(2, ctx // 16), ctx // 2))
                s = int(rng.integers(0, len(ids) - ctx - 1))
                span = ids[s:s + n]
                row = np.concatenate([span, span, ids[s + n:s + n + ctx + 1 - 2 * n]])
            else:
                s = int(rng.integers(0, len(ids) - ctx - 1))
                row = ids[s:s + ctx + 1]
            rows.append(row)
        yield torch.from_numpy(np.stack(rows).astype(np.int64))


def sinusoids(n_positions: int, d_model: int, std: float = 0.02) -> torch.Tensor:
    """[n_positions, d_model] sines and cosines of the position at geometric frequencies (the
    original Transformer's encoding), scaled to GPT-2's initial standard deviation. A start for
    the learned position embedding: position p - 1 is a fixed rotation of position p, so one
    query/key map can attend to "the token just before" at every position at once, and a
    previous-token head forms within the hour instead of not at all."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freq = 10_000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return (table * std / table.std()).float()


def loss_and_backward(model, x: torch.Tensor, chunk: int = 256, bf16: bool = True,
                      vocab: torch.Tensor | None = None, index: torch.Tensor | None = None) -> float:
    """Mean next-token cross-entropy over the full 50,257-token softmax of x[:, :-1] -> x[:, 1:],
    with its gradients accumulated into the model. The same loss as GPT2LMHeadModel(labels=…),
    computed `chunk` positions at a time so the [tokens, 50,257] logits never exist at once
    (the output layer is most of the cost; in pieces it stays in the CPU's caches better);
    matrix products in bfloat16 (autocast), the softmax and loss in float32."""
    inputs, targets = x[:, :-1], x[:, 1:].reshape(-1)
    if vocab is not None:  # the softmax over the tokens the text uses: targets as positions in `vocab`
        targets = index[targets]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = model.transformer(inputs).last_hidden_state
    hidden = hidden.reshape(-1, hidden.shape[-1])
    detached = hidden.detach().requires_grad_()
    weight, n, total = model.lm_head.weight, targets.numel(), 0.0
    rows = None
    if vocab is not None:  # gradients of the chunks gather in a leaf, then flow to the embedding's rows once
        rows = weight[vocab]
        weight = rows.detach().requires_grad_()
    for i in range(0, n, chunk):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = detached[i:i + chunk] @ weight.T
        loss = torch.nn.functional.cross_entropy(logits.float(), targets[i:i + chunk], reduction="sum") / n
        loss.backward()
        total += loss.item()
    if rows is not None:
        rows.backward(weight.grad)
    hidden.backward(detached.grad)
    return total


@torch.no_grad()
def held_out_loss(model, ids: np.ndarray, ctx: int, max_windows: int = 64) -> float:
    """Mean next-token loss (nats) over non-overlapping windows of the held-out chapters, float32."""
    model.eval()
    starts = list(range(0, len(ids) - ctx - 1, ctx))[:max_windows]
    total, count = 0.0, 0
    for i in range(0, len(starts), 16):
        x = torch.from_numpy(np.stack([ids[s:s + ctx + 1] for s in starts[i:i + 16]]).astype(np.int64))
        logits = model(x[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                                 reduction="sum")
        total, count = total + loss.item(), count + x[:, 1:].numel()
    model.train()
    return total / count


@torch.no_grad()
def circuit_scores(model, ids: np.ndarray, ctx: int, tokens: np.ndarray, bos: int) -> dict:
    """The best previous-token head (mean attention to the token just before, over a few
    held-out windows) and the best induction head (on [bos] + r + r, r random tokens of
    `tokens`, those the model has learned: mean attention from the second copy to the token after
    the earlier occurrence), as the app's head atlas measures them; from transformers' own
    attention weights (eager attention)."""
    model.eval()
    model.set_attn_implementation("eager")
    x = torch.from_numpy(np.stack([ids[s:s + ctx] for s in range(0, 4 * ctx, ctx)]).astype(np.int64))
    att = torch.stack(model(x, output_attentions=True).attentions)  # [layer, batch, head, q, k]
    previous = att.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, -1))  # [layer, head]
    n = (ctx - 1) // 2
    r = tokens[np.random.default_rng(0).integers(0, len(tokens), n)]  # the atlas draws its own; any will do here
    seq = torch.tensor([[bos, *r, *r]])
    att = torch.stack(model(seq, output_attentions=True).attentions)[:, 0]  # [layer, head, q, k]
    j = torch.arange(n - 1)
    induction = att[:, :, 1 + n + j, 2 + j].mean(-1)
    model.set_attn_implementation("sdpa")
    model.train()
    out = {}
    for name, s in (("previous", previous), ("induction", induction)):
        L, h = divmod(int(s.argmax()), s.shape[1])
        out[name] = (L, h, round(float(s[L, h]), 3))
    return out


def write_trained_tokens(out: Path, token_ids: list[int]) -> None:
    """The tokens the model has learned, as the app reads them (core.model.TRAINED_TOKENS_FILE):
    those the training text uses at least LEARNED_MIN_COUNT times. The app's induction probe
    draws its random tokens from these: the rest of GPT-2's 50,257 never occurred or too rarely
    for their embeddings to learn (measured on the shipped model, the induction head's score on
    random tokens seen at least 1 / 5 / 20 / 50 times: 0.18 / 0.44 / 0.76 / 0.87)."""
    (out / "trained_tokens.json").write_text(json.dumps({
        "about": f"the token ids that occur at least {LEARNED_MIN_COUNT} times in the training text",
        "token_ids": [int(i) for i in token_ids]}, separators=(",", ":")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bundled" / "mini-gpt2-kjv"))
    ap.add_argument("--text", help="a plain-text file instead of the KJV from Debian's bible reader")
    ap.add_argument("--steps", type=int, default=STEPS, help="training steps (the learning-rate schedule spans them)")
    ap.add_argument("--minutes", type=float, default=150.0,
                    help="safety stop: end early after this long (the result then depends on the machine's speed)")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--warmup", type=int, default=WARMUP)
    ap.add_argument("--repeat-share", type=float, default=REPEAT_SHARE,
                    help="share of the text rows that are a span of the text repeated twice")
    ap.add_argument("--random-share", type=float, default=RANDOM_SHARE,
                    help="share of the rows that are random tokens of the text repeated to fill the row")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--checkpoints", help="also save the model here at every evaluation (a folder per step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast for the matrix products (faster only on CPUs with bfloat16 units)")
    ap.add_argument("--short-steps", type=int, default=SHORT_STEPS,
                    help="the first steps read shorter windows (--short-context tokens, as many tokens a step)")
    ap.add_argument("--short-context", type=int, default=SHORT_CONTEXT)
    ap.add_argument("--position-init", choices=["sinusoid", "random"], default="sinusoid",
                    help="start the learned position embedding as sinusoids (default) or GPT-2's random normal")
    ap.add_argument("--position-std", type=float, default=POSITION_STD,
                    help="standard deviation of the sinusoids (GPT-2 starts every weight at 0.02)")
    ap.add_argument("--position-lr", type=float, default=POSITION_LR,
                    help="the position embedding's learning rate as a multiple of --lr (no weight decay on it)")
    ap.add_argument("--init-std", type=float, default=INIT_STD,
                    help="standard deviation of the initial weights (GPT-2: 0.02 at d_model 768)")
    ap.add_argument("--text-vocab-share", type=float, default=TEXT_VOCAB_SHARE,
                    help="this share of the steps (the first ones) takes the softmax over the tokens the training "
                         "text uses only; the rest over all 50,257")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(args.threads)
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
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                        initializer_range=args.init_std)
    model = GPT2LMHeadModel(config)
    short_rows = args.batch * SHAPE["n_positions"] // args.short_context
    if args.position_init == "sinusoid":
        with torch.no_grad():
            model.transformer.wpe.weight.copy_(sinusoids(SHAPE["n_positions"], SHAPE["n_embd"], args.position_std))
    model.set_attn_implementation("sdpa")
    model.train()
    text_vocab, counts = (torch.from_numpy(a.astype(np.int64)) for a in np.unique(train_ids, return_counts=True))
    learned = text_vocab[counts >= LEARNED_MIN_COUNT].numpy()  # tokens seen often enough to learn
    text_index = torch.full((len(tok),), -100, dtype=torch.long)
    text_index[text_vocab] = torch.arange(len(text_vocab))
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; {torch.get_num_threads()} threads; "
          f"{args.steps} steps of {args.batch} x {SHAPE['n_positions']} tokens (the first {args.short_steps} of "
          f"{short_rows} x {args.short_context}), {args.random_share:.0%} rows of repeated random tokens, "
          f"{args.repeat_share:.0%} of the rest a repeated span of the text",
          flush=True)
    wpe = model.transformer.wpe.weight
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and p is not wpe]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1, "lr_scale": 1.0},
                             {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
                             {"params": [wpe], "weight_decay": 0.0, "lr_scale": args.position_lr}],
                            lr=args.lr, betas=(0.9, 0.95))
    ctx = SHAPE["n_positions"]
    t0 = time.time()
    short = batches(train_ids, short_rows, args.short_context, rng, args.repeat_share, args.random_share)
    data = batches(train_ids, args.batch, ctx, rng, args.repeat_share, args.random_share)
    step, history, last, recent = 0, [], time.time(), []
    while step < args.steps:
        if time.time() - t0 > args.minutes * 60:
            print(f"stopped by the {args.minutes:g}-minute safety limit at step {step} of {args.steps}", flush=True)
            break
        # linear warmup, then cosine decay to a tenth of the peak over the given steps
        progress = min(1.0, step / args.steps)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        opt.zero_grad(set_to_none=True)
        restricted = step < args.text_vocab_share * args.steps
        loss = loss_and_backward(model, next(short if step < args.short_steps else data), bf16=args.bf16,
                                 vocab=text_vocab if restricted else None, index=text_index)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        recent.append(loss)
        if step % 25 == 0 or step == 1:
            now = time.time()
            msg = (f"step {step:>5}  {now - t0:>6.0f} s ({(now - last) / (1 if step == 1 else 25):.2f} s/step)  "
                   f"lr {lr:.2e}  train loss {np.mean(recent):.3f}")
            last, recent = now, []
            if step % args.eval_every == 0:
                held = held_out_loss(model, held_ids, ctx)
                c = circuit_scores(model, held_ids, ctx, learned, tok.eos_token_id)
                history.append({"step": step, "held_out_loss": round(held, 4), "previous": c["previous"],
                                "induction": c["induction"]})
                msg += (f"  held-out loss {held:.3f} (perplexity {math.exp(held):.1f})  best previous-token head "
                        "{0}.{1} {2:.2f}, induction {3}.{4} {5:.2f}".format(*c["previous"], *c["induction"]))
                wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
                msg += f"  |wte| {wte.norm(dim=1).mean():.2f} |wpe| {wpe.norm(dim=1).mean():.2f}"
                if args.checkpoints:
                    model.save_pretrained(Path(args.checkpoints) / f"step{step}")
                last = time.time()
            print(msg, flush=True)
    minutes = (time.time() - t0) / 60
    held = held_out_loss(model, held_ids, ctx, max_windows=10_000)
    c = circuit_scores(model, held_ids, ctx, learned, tok.eos_token_id)
    print(f"done: {step} steps in {minutes:.1f} min; held-out loss {held:.3f}, perplexity {math.exp(held):.1f}; "
          "best previous-token head {0}.{1} {2:.2f}, induction {3}.{4} {5:.2f}".format(*c["previous"], *c["induction"]),
          flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().half().save_pretrained(out)
    tok.save_pretrained(out)
    write_trained_tokens(out, learned.tolist())
    (out / "TRAINING.json").write_text(json.dumps({
        "model": "GPT2LMHeadModel", **SHAPE, "vocab": len(tok),
        "tokenizer": "GPT-2's byte-level BPE (bundled/gpt2-bpe)",
        "text": "King James Version of the Bible (1611, public domain), as Debian's bible-kjv 4.x prints it",
        "held_out": "every 20th chapter (chapters 7, 27, 47, …)", "train_tokens": int(len(train_ids)),
        "held_out_tokens": int(len(held_ids)), "steps": step, "batch": args.batch, "context": ctx, "seed": args.seed,
        "position_init": args.position_init, "position_std": args.position_std,
        "position_lr": args.position_lr, "init_std": args.init_std, "text_vocab_share": args.text_vocab_share,
        "short_steps": args.short_steps, "short_context": args.short_context, "lr": args.lr, "warmup": args.warmup,
        "schedule": "linear warmup, cosine decay to lr/10 over the steps",
        "precision": "bfloat16 autocast (float32 weights, softmax and loss)" if args.bf16 else "float32",
        "minutes": round(minutes, 1), "threads": torch.get_num_threads(), "repeat_share": args.repeat_share,
        "random_share": args.random_share,
        "held_out_loss": round(held, 4), "held_out_perplexity": round(math.exp(held), 1),
        "previous_token_head": {"layer": c["previous"][0], "head": c["previous"][1], "score": c["previous"][2]},
        "induction_head": {"layer": c["induction"][0], "head": c["induction"][1], "score": c["induction"][2]},
        "history": history,
    }, indent=1))
    print(f"saved to {out}", flush=True)


if __name__ == "__main__":
    main()
