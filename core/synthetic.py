"""Build randomly initialised GPT-2 checkpoints with a real byte-level BPE tokenizer, offline.

Tests load a tiny one (a 512-token BPE trained here) through the same `load_model(path)`
code path users take; benchmarks save ones with the GPT-2 family's exact shapes, whose
compute cost is the real one, with GPT-2's own tokenizer (vendored in bundled/gpt2-bpe).
The numbers such a model produces are meaningless; its shapes and code path are not.

    python -m core.synthetic /tmp/tiny-gpt2                   # tiny: 2 layers, 4 heads, d_model 64
    python -m core.synthetic /tmp/gpt2-shaped --small         # GPT2Config() defaults, 124 M parameters
    python -m core.synthetic /tmp/xl-shaped --shape gpt2-xl   # 48 layers, 25 heads, d_model 1,600
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

# A little of everything a prompt may hold: English, Chinese, emoji, code, markup.
_CORPUS = [
    "The best thing about AI is its ability to learn from data and to generate text.",
    "hello hello hello bye bye bye. The cat sat on the mat. The dog ate the bone.",
    "What is ChatGPT doing, and why does it work? It adds one word at a time.",
    "我们的模型在浏览器中运行。注意力机制。你好，世界！",
    "Emoji: 😀 🚀 👍🏽 ❤️ and symbols © ® ™ — “quotes” …",
    "def forward(self, x):\n    return self.mlp(self.attn(x))\n",
    "<b>bold</b> **markdown** [link](http://example.com) & ampersand",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14159",
    "عربى עברית русский Ελληνικά 日本語のテキスト 한국어",
]


GPT2_BPE_DIR = Path(__file__).resolve().parent.parent / "bundled" / "gpt2-bpe"


def gpt2_tokenizer(out_dir: Path):
    """GPT-2's own byte-level BPE (50,257 tokens, vendored in bundled/gpt2-bpe), saved to out_dir:
    random models of GPT-2's shapes then read and write real text, not ⟨id 16967⟩."""
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast(vocab=str(GPT2_BPE_DIR / "vocab.json"), merges=str(GPT2_BPE_DIR / "merges.txt"),
                            bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.model_max_length = 1024
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    return tok


def build_tokenizer(out_dir: Path, vocab_size: int = 512):
    """Train a GPT-2-style byte-level BPE on a small built-in corpus and save it to out_dir."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        _CORPUS * 20,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(out_dir))  # vocab.json + merges.txt, as GPT-2 ships them
    tok = GPT2TokenizerFast(
        vocab=str(out_dir / "vocab.json"),
        merges=str(out_dir / "merges.txt"),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.model_max_length = 1024
    tok.save_pretrained(out_dir)
    return tok


def randomize_layer_norms(model, seed: int = 0) -> None:
    """Give every LayerNorm random gains around 1 and random biases, as trained GPT-2 has.
    GPT2Config's initial gains of 1 and biases of 0 would hide a dropped bias or a
    misnamed LayerNorm."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=gen))


# The GPT-2 family's shapes: (n_layer, n_head, n_embd); vocabulary 50,257 and context 1,024 for all.
SHAPES = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280), "gpt2-xl": (48, 25, 1600)}


def build_shaped(out_dir: str | Path, shape: str, seed: int = 0) -> Path:
    """Save a random model of one GPT-2 size's exact shape (gpt2-xl: 1.6 B parameters, 6.2 GB),
    built on the meta device and filled in place, so memory holds one copy of the weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    tok = gpt2_tokenizer(out) if (GPT2_BPE_DIR / "merges.txt").exists() else build_tokenizer(out)
    n_layer, n_head, n_embd = SHAPES[shape]
    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, bos_token_id=tok.eos_token_id,
                        eos_token_id=tok.eos_token_id)
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    model = model.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif "ln_" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    model.tie_weights()
    randomize_layer_norms(model, seed)
    model.save_pretrained(out)
    (out / "SYNTHETIC.json").write_text(json.dumps({"note": f"random weights in {shape}'s shape, not GPT-2",
                                                    "seed": seed}))
    return out


def build_checkpoint(out_dir: str | Path, *, small: bool = False, seed: int = 0, **config_overrides) -> Path:
    """Save a random GPT-2 (tiny by default; GPT-2 small's shape if `small`) with a tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    real = small and (GPT2_BPE_DIR / "merges.txt").exists()
    tok = gpt2_tokenizer(out) if real else build_tokenizer(out)
    special = dict(bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    if small:
        config = GPT2Config(**special, **config_overrides)  # vocab 50,257, 12 layers, 12 heads, d_model 768
    else:
        shape = dict(n_layer=2, n_head=4, n_embd=64, n_positions=1024, vocab_size=len(tok))
        config = GPT2Config(**{**shape, **special, **config_overrides})
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    randomize_layer_norms(model)
    model.save_pretrained(out)
    (out / "SYNTHETIC.json").write_text(json.dumps({"note": "random weights, not GPT-2", "seed": seed}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--small", action="store_true", help="GPT-2 small's exact shape (124 M parameters)")
    parser.add_argument("--shape", choices=list(SHAPES), help="a GPT-2 size's exact shape (random weights)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.shape:
        print(build_shaped(args.out_dir, args.shape, seed=args.seed))
    else:
        print(build_checkpoint(args.out_dir, small=args.small, seed=args.seed))


if __name__ == "__main__":
    main()
