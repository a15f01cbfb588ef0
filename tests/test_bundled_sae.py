"""The SAEs that ship with the bundled mini GPT-2 (bundled/mini-gpt2-kjv-saes, trained by
training/train_sae.py): checks that only a trained SAE passes, on four chapters that the model
and the SAEs never saw (tests/data/kjv_held_out.txt, 1,885 tokens).

The oracles do not go through the app's code: the residual stream comes from transformers'
GPT2LMHeadModel (output_hidden_states, and a pre-hook on the block or ln_f that reads or
replaces it), the tokens from the `tokenizers` library, the features from sae-lens's own
SAE.load_from_disk / encode / decode. One test then checks that the app (core.load_model,
trace_ids, core.sae.load_sae / encode / reconstruct) reads the same residual and the same
features from the same files.

For every shipped SAE: variance explained >= 0.8, mean L0 <= 32, at most 20% of its features
never active on the text, the next-token loss with the reconstruction spliced in closer to the
clean loss than to the loss with that residual zeroed by >= 80% of the gap, and than to the loss
with it replaced by its mean over the text, and at most 0.25 nats per token above the clean loss
(a random SAE recovers 60-96% of the first gap and 34-79% of the second, since the small model's
loss survives a poor residual, but adds 0.8-3 nats; trained ones add 0.08-0.17), and a feature
whose 50 strongest activations are >= 90% on number tokens (verse and chapter numbers).

The same checks on random SAEs of the same shape, built by sae-lens from the shipped config:
sae-lens's own initialisation (threshold 0: fires on half the features), and the same weights
with one threshold that makes it fire as often as the trained SAE (same L0). They miss variance
explained, the loss increase and L0 (the initialisation), and the number feature before blocks 0-3;
the random test says which two checks a random SAE can pass (dead features at every point, the
number feature in the late residual stream), so those two guard against a degenerate SAE only."""
from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "bundled" / "mini-gpt2-kjv"
SAES = ROOT / "bundled" / "mini-gpt2-kjv-saes"
# Not the residual before block 1: its SAE left 23% of its features silent on the held-out chapters
# (the script ships only SAEs that meet every target there; TRAINING.json, "not_shipped").
HOOKS = [f"blocks.{L}.hook_resid_pre" for L in (0, 2, 3, 4, 5)] + ["blocks.5.hook_resid_post"]
MIDDLE = "blocks.3.hook_resid_pre"
HELD_OUT = (ROOT / "tests" / "data" / "kjv_held_out.txt").read_text()
CONTEXT = 256
FVE, L0, DEAD, RECOVERED, NUMBER_SHARE, TOP = 0.8, 32, 0.2, 0.8, 0.9, 50
MAX_INCREASE = 0.25  # nats per token, spliced minus clean


# ---- the independent oracles: transformers' GPT-2, the tokenizers library, sae-lens -------------------------
@pytest.fixture(scope="module")
def hf():
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(2)
    return GPT2LMHeadModel.from_pretrained(str(MODEL), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def windows() -> list[torch.Tensor]:
    """The held-out chapters as token ids, in consecutive windows of at most 256 (no BOS, as trained)."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode(HELD_OUT, add_special_tokens=False).ids
    return [torch.tensor(ids[i:i + CONTEXT]) for i in range(0, len(ids), CONTEXT)]


@pytest.fixture(scope="module")
def numbers(windows) -> torch.Tensor:
    """[token] bool: the token's text, stripped, is all digits (verse and chapter numbers)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    return torch.tensor([tok.decode([int(i)]).strip().isdigit() for w in windows for i in w])


def site(hf, hook: str) -> torch.nn.Module:
    """The module whose input is the residual at `hook`: block L for its resid_pre, ln_f after the last block."""
    if hook == "blocks.5.hook_resid_post":
        return hf.transformer.ln_f
    return hf.transformer.h[int(hook.split(".")[1])]


@contextmanager
def residual_replaced(hf, hook: str, replace):
    """While inside, the residual at `hook` is replace(residual) [1, pos, d_model] (also just to read it)."""
    handle = site(hf, hook).register_forward_pre_hook(lambda module, args: (replace(args[0]), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


@torch.inference_mode()
def run(hf, windows, hook: str | None = None, replace=None) -> float:
    """Mean next-token loss (nats) over the windows, the residual at `hook` replaced if given."""
    total, n = 0.0, 0
    for w in windows:
        if hook is None:
            logits = hf(w[None]).logits[0]
        else:
            with residual_replaced(hf, hook, replace):
                logits = hf(w[None]).logits[0]
        total += float(F.cross_entropy(logits[:-1], w[1:], reduction="sum"))
        n += len(w) - 1
    return total / n


@pytest.fixture(scope="module")
def resid(hf, windows) -> dict[str, torch.Tensor]:
    """hook -> [token, d_model]: transformers' residual stream at each shipped SAE's point."""
    out = {h: [] for h in HOOKS}
    with torch.inference_mode(), residual_replaced(hf, HOOKS[-1], lambda x: out[HOOKS[-1]].append(x[0]) or x):
        for w in windows:
            states = hf(w[None], output_hidden_states=True).hidden_states  # [n_layer + 1] of [1, pos, d_model]
            for h in HOOKS[:-1]:  # blocks.L.hook_resid_pre is the input to block L
                out[h].append(states[int(h.split(".")[1])][0])
    return {h: torch.cat(v) for h, v in out.items()}


@pytest.fixture(scope="module")
def losses(hf, windows, resid) -> dict:
    """The clean loss, and per hook the loss with that residual set to the zero vector at every position
    (hook) and to its mean over the text's tokens (hook + " mean")."""
    out = {"clean": run(hf, windows)}
    for h in HOOKS:
        out[h] = run(hf, windows, h, torch.zeros_like)
        out[h + " mean"] = run(hf, windows, h, lambda r, m=resid[h].mean(0): m.expand_as(r))
    return out


def sae_lens_sae(path: Path):
    from sae_lens import SAE

    with warnings.catch_warnings():  # its advice to TransformerLens users about center_writing_weights=False
        warnings.filterwarnings("ignore", message=r"\s*This SAE has non-empty model_from_pretrained_kwargs")
        return SAE.load_from_disk(str(path), device="cpu", dtype="float32")


@torch.inference_mode()
def measure(sae, hook: str, hf, windows, resid, numbers, losses, loss: bool = True) -> dict:
    """A sae-lens SAE's numbers on the held-out chapters: variance explained (pooled), mean L0, share of
    features never active, the loss recovered with its reconstruction spliced in, and the best share of
    number tokens among a feature's 50 strongest activations (0 for one active on fewer than 50 tokens)."""
    x = resid[hook]
    f = sae.encode(x)
    err = (x - sae.decode(f)).double().pow(2).sum()
    values, rows = f.topk(TOP, dim=0)  # [50, d_sae]
    share = numbers[rows].double().mean(0) * (values[-1] > 0)
    m = {"fve": float(1 - err / (x - x.mean(0)).double().pow(2).sum()), "l0": float((f > 0).sum(-1).double().mean()),
         "dead": float((f.max(0).values <= 0).double().mean()), "number_share": float(share.max()),
         "number_feature": int(share.argmax()), "tokens": len(x)}
    if loss:
        spliced = run(hf, windows, hook, lambda r: sae.decode(sae.encode(r)))
        m |= {"spliced": spliced, "increase": spliced - losses["clean"],
              "recovered": (losses[hook] - spliced) / (losses[hook] - losses["clean"]),
              "recovered_vs_mean": (losses[hook + " mean"] - spliced) / (losses[hook + " mean"] - losses["clean"])}
    return m


@pytest.fixture(scope="module")
def trained(hf, windows, resid, numbers, losses) -> dict:
    """hook -> the shipped SAE's numbers (`measure`), read from its files by sae-lens."""
    return {h: measure(sae_lens_sae(SAES / h), h, hf, windows, resid, numbers, losses) for h in HOOKS}


def passes(m: dict) -> dict:
    verdicts = {"fve": m["fve"] >= FVE, "l0": m["l0"] <= L0, "dead": m["dead"] <= DEAD,
                "number": m["number_share"] >= NUMBER_SHARE}
    if "recovered" in m:
        verdicts |= {"loss": m["recovered"] >= RECOVERED, "loss vs mean": m["recovered_vs_mean"] >= RECOVERED,
                     "loss increase": m["increase"] <= MAX_INCREASE}
    return verdicts


def random_saes(tmp_path: Path, hook: str, x: torch.Tensor, target_l0: float, seed: int = 0) -> dict:
    """Random SAEs of the shipped SAE's shape and config, initialised and saved by sae-lens and read back
    by it: 'init' as sae-lens starts one, 'same L0' the same weights with the one threshold at which it
    fires target_l0 features a token on x [token, d_model]."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    cfg = JumpReLUSAEConfig.from_dict(json.loads((SAES / hook / "cfg.json").read_text()))
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*This SAE has non-empty model_from_pretrained_kwargs")
        JumpReLUSAE(cfg).save_model(tmp_path / hook)
    init, same_l0 = sae_lens_sae(tmp_path / hook), sae_lens_sae(tmp_path / hook)
    with torch.no_grad():
        pre = (x - same_l0.b_dec) @ same_l0.W_enc + same_l0.b_enc
        same_l0.threshold.fill_(float(pre.flatten().topk(round(target_l0 * len(x))).values[-1]))
    return {"init": init, "same L0": same_l0}


# ---- the tests --------------------------------------------------------------------------------------------
def test_the_saes_are_in_sae_lens_format_one_per_shipped_point_and_small():
    assert sorted(p.name for p in SAES.iterdir() if p.is_dir()) == sorted(HOOKS)
    total = sum(f.stat().st_size for f in SAES.rglob("*") if f.is_file())
    assert total <= 10 * 2**20, f"{total / 2**20:.1f} MB"
    training = json.loads((SAES / "TRAINING.json").read_text())
    assert training["shipped"] == HOOKS
    for hook in HOOKS:
        assert {p.name for p in (SAES / hook).iterdir()} == {"cfg.json", "sae_weights.safetensors",
                                                            "sparsity.safetensors"}
        cfg = json.loads((SAES / hook / "cfg.json").read_text())
        assert cfg["architecture"] == "jumprelu" and cfg["d_in"] == 192 and cfg["normalize_activations"] == "none"
        meta = cfg["metadata"]
        assert meta["hook_name"] == hook and meta["model_name"] == "mini-gpt2-kjv"
        assert meta["context_size"] == CONTEXT and meta["prepend_bos"] is False
        assert meta["model_from_pretrained_kwargs"] == {"center_writing_weights": False}
        assert {"fve", "l0", "dead_share", "loss_recovered"} <= set(training["held_out"][hook])


def test_the_app_reads_the_same_residual_and_the_same_features(hf, windows, resid):
    """core's trace of a window equals transformers' residual, and core.sae's features and reconstruction
    from the shipped files equal sae-lens's, at every shipped point."""
    from core import ByteBoundedCache, load_model, trace_ids
    from core.sae import encode, load_sae, reconstruct

    lm = load_model(str(MODEL), device="cpu")
    t = trace_ids(lm, windows[0].tolist(), cache=ByteBoundedCache(0))
    n = len(windows[0])
    for hook in HOOKS:
        x = resid[hook][:n]
        point = int(hook.split(".")[1]) + hook.endswith("resid_post")
        torch.testing.assert_close(t.tensor("resid", (point,)).float(), x, rtol=1e-4, atol=1e-4)
        ours, theirs = load_sae(str(SAES / hook)), sae_lens_sae(SAES / hook)
        assert ours.hook_name == hook and not ours.centre and ours.log_density.shape == (ours.d_sae,)
        with torch.no_grad():
            f = theirs.encode(x)
            torch.testing.assert_close(encode(ours, x), f, rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(reconstruct(ours, x), theirs.decode(f), rtol=1e-5, atol=1e-4)


def test_each_shipped_sae_meets_every_target_on_held_out_chapters(trained):
    assert all(m["tokens"] > 1800 for m in trained.values())
    failed = {h: [k for k, ok in passes(m).items() if not ok] for h, m in trained.items()}
    assert not any(failed.values()), (failed, trained)


def test_random_saes_of_the_same_shape_miss_the_targets(tmp_path, hf, windows, resid, numbers, losses, trained):
    """At every point no random SAE comes near the variance explained or the loss, and sae-lens's
    initialisation fires ten times too many features; at the middle point a random SAE's reconstruction
    also recovers too little of either ablation gap (after block 4 sae-lens's initialisation recovers
    over 80% of the zeroing gap: zeroing the last residual is that drastic). A random SAE has no number
    feature before blocks 0, 2 and 3; after block 3 a random direction at the trained L0 finds one too
    (numbers have a dominant direction in the late residual stream), so there the number check alone
    does not tell trained from random.
    Nor does the dead-feature check: a random SAE leaves at most ~13% of its features silent."""
    for hook in HOOKS:
        randoms = random_saes(tmp_path, hook, resid[hook], trained[hook]["l0"])
        scores = {name: measure(sae, hook, hf, windows, resid, numbers, losses) for name, sae in randoms.items()}
        verdicts = {name: passes(m) for name, m in scores.items()}
        assert all(passes(trained[hook]).values()), (hook, trained[hook])
        assert not any(v["fve"] or v["loss increase"] for v in verdicts.values()), (hook, scores)
        if hook == MIDDLE:
            assert not any(v["loss"] or v["loss vs mean"] for v in verdicts.values()), scores
        assert all(m["fve"] < 0 for m in scores.values()), (hook, scores)
        assert not verdicts["init"]["l0"] and verdicts["same L0"]["l0"], (hook, scores)
        assert abs(scores["same L0"]["l0"] - trained[hook]["l0"]) < 1
        if int(hook.split(".")[1]) <= 3 and hook.endswith("resid_pre"):
            assert not any(v["number"] for v in verdicts.values()), (hook, scores)


def test_the_script_records_numbers_the_test_reproduces(losses, trained):
    """TRAINING.json's numbers on these chapters (measured by the script through the app's code) agree
    with the independent measurement here."""
    recorded = json.loads((SAES / "TRAINING.json").read_text())["test_chapters"]
    assert abs(losses["clean"] - recorded["clean_loss"]) < 2e-3
    for hook, m in trained.items():
        r = recorded[hook]
        assert abs(m["fve"] - r["fve"]) < 2e-3 and abs(m["l0"] - r["l0"]) < 0.05, (hook, m, r)
        assert abs(m["recovered"] - r["loss_recovered"]) < 2e-3, (hook, m, r)
        assert abs(losses[hook] - r["zeroed_loss"]) < 2e-3, (hook, losses[hook], r)
