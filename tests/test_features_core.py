"""core.sae and core.features against independent computations: numpy from the SAE's saved
weights (each architecture's encoder formula, with the stated centring and normalisation),
sae-lens's own encode and decode, and transformers' own forward with hooks (for the gradient
that attribution uses and for the exact removal of a feature).

Random SAEs of each supported architecture are built with sae-lens's classes and saved in its
on-disk format in fixtures, then loaded through `core.sae.load_sae`, the path users take."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from core import trace
from core.features import feature_acts, feature_attribution, removal_effects, site_activation, steer_features
from core.sae import SAELoadError, encode, load_sae, reconstruct

PROMPT = "The cat sat on the mat. The dog ate the bone. hello hello bye bye 你好"
D_SAE = 96


def build_sae(out: Path, architecture: str, hook: str = "blocks.1.hook_resid_pre", *, d_in: int = 64, seed: int = 0,
              centre: bool = False, normalize: str = "none", rescale: bool = False) -> Path:
    """A random SAE of one architecture, saved by sae-lens itself."""
    import sae_lens

    classes = {"standard": ("StandardSAE", {}), "gated": ("GatedSAE", {}), "jumprelu": ("JumpReLUSAE", {}),
               "topk": ("TopKSAE", {"k": 12, "rescale_acts_by_decoder_norm": rescale})}
    name, extra = classes[architecture]
    cfg = getattr(sae_lens, name + "Config")(d_in=d_in, d_sae=D_SAE, normalize_activations=normalize, **extra)
    cfg.metadata.hook_name = hook
    cfg.metadata.model_from_pretrained_kwargs = {"center_writing_weights": centre}
    sae = getattr(sae_lens, name)(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in sae.named_parameters():
            scale = 0.05 if pname in ("b_dec", "r_mag") else 0.3
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
            if pname == "threshold":
                p.copy_(torch.rand(p.shape, generator=gen) * 0.3)
    sae.save_model(out)
    return out


def numpy_encode(path: Path, x: np.ndarray) -> np.ndarray:
    """The encoder written from the saved file and config alone, in float64."""
    cfg = json.loads((path / "cfg.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(path / "sae_weights.safetensors")).items()}
    x = x.astype(np.float64)
    if cfg["metadata"].get("model_from_pretrained_kwargs", {}).get("center_writing_weights"):
        x = x - x.mean(-1, keepdims=True)
    if cfg["normalize_activations"] == "layer_norm":
        x = x - x.mean(-1, keepdims=True)
        x = x / (x.std(-1, ddof=1, keepdims=True) + 1e-5)
    if cfg["apply_b_dec_to_input"]:
        x = x - w["b_dec"]
    arch = cfg["architecture"]
    if arch == "gated":
        return ((x @ w["W_enc"] + w["b_gate"]) > 0) * np.maximum(x @ (w["W_enc"] * np.exp(w["r_mag"])) + w["b_mag"], 0)
    pre = x @ w["W_enc"] + w["b_enc"]
    if arch == "jumprelu":
        return np.where(pre > w["threshold"], np.maximum(pre, 0), 0)
    if arch == "topk":
        if cfg.get("rescale_acts_by_decoder_norm"):
            pre = pre * np.linalg.norm(w["W_dec"], axis=-1)
        out = np.zeros_like(pre)
        top = np.argsort(-pre, axis=-1)[:, : cfg["k"]]
        np.put_along_axis(out, top, np.maximum(np.take_along_axis(pre, top, -1), 0), -1)
        return out
    return np.maximum(pre, 0)


CASES = {
    "standard": dict(architecture="standard"),
    "gated": dict(architecture="gated"),
    "jumprelu": dict(architecture="jumprelu"),
    "topk": dict(architecture="topk"),
    "topk, decoder-norm rescaled": dict(architecture="topk", rescale=True),
    "centred (TransformerLens's centred writing weights)": dict(architecture="standard", centre=True),
    "layer-norm normalised": dict(architecture="standard", normalize="layer_norm"),
}


@pytest.fixture(scope="module")
def t(tiny_lm):
    return trace(tiny_lm, PROMPT)


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request, tmp_path_factory):
    path = build_sae(tmp_path_factory.mktemp("sae") / "s", **CASES[request.param])
    return path, load_sae(str(path))


def test_features_equal_numpy_and_sae_lens(tiny_lm, t, case):
    path, sae = case
    from sae_lens import SAE

    x = site_activation(t, sae)
    want = numpy_encode(path, x.numpy())
    got = encode(sae, x).numpy()
    assert (want > 0).sum() > 0, "the random SAE fires"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    theirs = SAE.load_from_disk(str(path))
    mean = x.mean(-1, keepdim=True) if sae.centre else 0.0  # sae-lens reads TransformerLens's (centred) residual
    with torch.no_grad():
        np.testing.assert_allclose(got, theirs.encode(x - mean).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reconstruct(sae, x).numpy(), (theirs.decode(theirs.encode(x - mean)) + mean).numpy(),
                                   rtol=1e-4, atol=1e-5)
    acts = feature_acts(tiny_lm, t, sae)  # sparse, strongest first, the same numbers
    for p in (0, 5, t.n_tokens - 1):
        ids, vals = acts.at(p)
        np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(got[p] > 0))
        np.testing.assert_allclose(vals, got[p, ids], rtol=1e-6)
        assert np.all(np.diff(vals) <= 0)
    np.testing.assert_allclose(acts.dense([3, 7]), got[:, [3, 7]], rtol=1e-6)
    error = x.numpy() - reconstruct(sae, x).numpy()
    spread = ((x.numpy() - x.numpy().mean(0)) ** 2).sum()
    assert acts.variance_explained == pytest.approx(1 - (error**2).sum() / spread, rel=1e-4)


def test_centring_is_read_from_the_config(tmp_path, tiny_lm, t):
    """The same weights read centred and uncentred give different features: the flag matters."""
    plain = load_sae(str(build_sae(tmp_path / "a", "standard")))
    centred = load_sae(str(build_sae(tmp_path / "b", "standard", centre=True)))
    assert centred.centre and not plain.centre
    x = site_activation(t, plain)
    assert not torch.allclose(encode(plain, x), encode(centred, x), atol=1e-3)


def _frozen_ln_hooks(model):
    """transformers' LayerNorms, with their scale treated as a constant by autograd (the oracle's own)."""
    def hook(module, args, out):
        x = args[0]
        centred = x - x.mean(-1, keepdim=True)
        scale = (centred.pow(2).mean(-1, keepdim=True) + module.eps).sqrt().detach()
        return centred / scale * module.weight + module.bias
    return [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]


def _oracle_gradient(lm, t, layer: int, pos: int, token: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, d logit(token) at pos / d x): x the residual before block `layer`, through transformers' model."""
    ids = torch.tensor([t.token_ids[: pos + 1].tolist()])
    leaf = {}

    def replace(module, args):
        leaf["x"] = args[0].detach().clone().requires_grad_(True)
        return (leaf["x"],) + tuple(args[1:])

    hooks = _frozen_ln_hooks(lm.model) + [lm.model.transformer.h[layer].register_forward_pre_hook(replace)]
    try:
        with torch.enable_grad():
            logit = lm.model(ids).logits[0, pos, token]
            (g,) = torch.autograd.grad(logit, leaf["x"])
    finally:
        for h in hooks:
            h.remove()
    return leaf["x"].detach()[0], g[0]


def test_attribution_is_gradient_times_activation_of_transformers_own_forward(tmp_path, tiny_lm, t):
    sae = load_sae(str(build_sae(tmp_path / "s", "standard")))
    pos, token = t.n_tokens - 1, int(t.top_ids[-1, 0])
    a = feature_attribution(tiny_lm, t, sae, token, pos)
    x, g = _oracle_gradient(tiny_lm, t, 1, pos, token)
    assert a.linearised == pytest.approx(float((x * g).sum()), rel=1e-4, abs=1e-5)
    f = encode(sae, x)
    want = (f * (g @ sae.W_dec.T)).sum(0)  # [d_sae]: sum over positions of f_i (W_dec[i] · g)
    np.testing.assert_allclose(a.effect, want[a.features].numpy(), rtol=1e-4, atol=1e-5)
    err = x - reconstruct(sae, x)
    assert a.error == pytest.approx(float((err * g).sum()), rel=1e-4, abs=1e-5)
    assert a.rest == pytest.approx(float((sae.b_dec * g).sum()), rel=1e-3, abs=1e-5)  # b_dec, at every position
    assert a.effect.sum() + a.error + a.rest == pytest.approx(a.linearised, abs=1e-4)


def test_at_the_last_residual_point_attribution_is_the_direct_logit_parts(tmp_path, tiny_lm, t, tiny_model_dir):
    """After the last block only ln_f and the unembedding remain: with ln_f's scale frozen, a feature's
    effect is exactly its direct logit part, computed here in numpy from the checkpoint's weights."""
    L = tiny_lm.n_layer - 1
    sae = load_sae(str(build_sae(tmp_path / "s", "topk", hook=f"blocks.{L}.hook_resid_post")))
    pos, token = t.n_tokens - 1, int(t.top_ids[-1, 0])
    a = feature_attribution(tiny_lm, t, sae, token, pos)
    w = load_file(str(tiny_model_dir / "model.safetensors"))
    final = t.resid[-1, pos].astype(np.float64)
    scale = np.sqrt(((final - final.mean()) ** 2).mean() + 1e-5)
    read = w["transformer.ln_f.weight"] * w["transformer.wte.weight"][token]  # gain ⊙ unembedding column
    f = encode(sae, torch.from_numpy(t.resid[-1].copy())).numpy()[pos]
    W_dec = sae.W_dec.numpy().astype(np.float64)
    direct = f * (((W_dec - W_dec.mean(-1, keepdims=True)) / scale) @ read)
    np.testing.assert_allclose(a.effect, direct[a.features], atol=1e-4)


def _oracle_removed_logit(lm, t, layer: int, pos: int, token: int, cut: torch.Tensor) -> float:
    """logit(token) at pos from transformers' forward, with cut [pos + 1, d_model] subtracted from the
    residual before block `layer`."""
    ids = torch.tensor([t.token_ids[: pos + 1].tolist()])
    hook = lm.model.transformer.h[layer].register_forward_pre_hook(lambda m, args: (args[0] - cut,) + tuple(args[1:]))
    try:
        with torch.inference_mode():
            return float(lm.model(ids).logits[0, pos, token])
    finally:
        hook.remove()


def test_removal_is_exact_and_steering_equals_a_hook(tmp_path, tiny_lm, t):
    sae = load_sae(str(build_sae(tmp_path / "s", "jumprelu")))
    pos, token = t.n_tokens - 1, int(t.top_ids[-1, 0])
    top = feature_attribution(tiny_lm, t, sae, token, pos).features[:5]
    got = removal_effects(tiny_lm, t, sae, token, top, pos, batch=2)
    x = site_activation(t, sae)[: pos + 1]
    f = encode(sae, x)
    base = float(t.next_logits[token])
    for i, feat in enumerate(top):
        cut = f[:, feat, None] * sae.W_dec[feat]
        assert got[i] == pytest.approx(_oracle_removed_logit(tiny_lm, t, 1, pos, token, cut) - base, abs=1e-4)
    knocked = steer_features(tiny_lm, t, sae, top[:2])
    cut = f[:, top[:2]] @ sae.W_dec[top[:2]]
    want = _oracle_removed_logit(tiny_lm, t, 1, pos, token, cut)
    assert float(knocked.next_logits[token]) == pytest.approx(want, abs=1e-4)


def test_bad_saes_get_clear_messages(tmp_path, tiny_lm):
    from core.sae import check_fits

    wide = load_sae(str(build_sae(tmp_path / "wide", "standard", d_in=32)))
    with pytest.raises(SAELoadError, match="32 dimensions"):
        check_fits(tiny_lm, wide)
    deep = load_sae(str(build_sae(tmp_path / "deep", "standard", hook="blocks.7.hook_resid_pre")))
    with pytest.raises(SAELoadError, match="blocks.7"):
        check_fits(tiny_lm, deep)
    with pytest.raises(SAELoadError, match="hook_z|residual stream"):
        load_sae(str(build_sae(tmp_path / "z", "standard", hook="blocks.0.attn.hook_q")))
    good = build_sae(tmp_path / "good", "standard")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    data = (corrupt / "sae_weights.safetensors").read_bytes()
    (corrupt / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])  # half-written
    with pytest.raises(SAELoadError, match="could not be read") as e:
        load_sae(str(corrupt))
    assert str(tmp_path) not in str(e.value)  # the name, never a server path
    (corrupt / "sae_weights.safetensors").unlink()
    with pytest.raises(SAELoadError, match="sae_weights.safetensors"):
        load_sae(str(corrupt))
    assert load_sae(str(good)).log_density is None  # no sparsity file: loads, without densities
    with pytest.raises(SAELoadError, match="No SAE directory or sae-lens release"):
        load_sae("no-such-release")


def test_a_release_without_the_hub_says_so(monkeypatch):
    from core.sae import registry

    releases = registry()
    assert "gpt2-small-res-jb" in releases  # sae-lens's own registry, read from its package
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SAELoadError, match="Hugging Face Hub"):
        load_sae("gpt2-small-res-jb", "blocks.6.hook_resid_pre")


def test_top_contexts_are_the_corpus_strongest_and_come_back_from_disk(tmp_path, tiny_lm, monkeypatch):
    """Against a brute force: every window traced by the app's own forward (itself held to transformers
    by tests/test_trace.py), every token encoded in numpy from the saved weights."""
    from core import ByteBoundedCache, trace_ids
    from core.feature_cards import HIST_EDGES, N_TOP, contexts_cached, corpus_windows, top_contexts

    monkeypatch.setenv("GPT2VIZ_CACHE_DIR", str(tmp_path / "cache"))
    path = build_sae(tmp_path / "s", "topk", hook="blocks.1.hook_resid_mid")
    sae = load_sae(str(path))
    windows = corpus_windows(tiny_lm, PROMPT * 40, window=32, max_tokens=700)
    steps = []
    got = top_contexts(tiny_lm, sae, windows, on_step=lambda done, total: steps.append((done, total)))
    assert steps and steps[0] == (0, len(windows)) and got.n_tokens == windows.size
    acts = np.stack([numpy_encode(path, trace_ids(tiny_lm, w.tolist(), cache=ByteBoundedCache(1 << 24))
                                  .layer_act(1, "resid_mid")) for w in windows])  # [window, pos, d_sae]
    flat = acts.reshape(-1, sae.d_sae)
    np.testing.assert_array_equal(got.active, (flat > 0).sum(0))
    want_top = -np.sort(-flat, axis=0)[:N_TOP].T  # [d_sae, N_TOP]
    np.testing.assert_allclose(got.top_values, want_top, rtol=1e-4, atol=1e-5)
    f = int(np.argmax(got.active))
    np.testing.assert_allclose(acts[got.top_window[f, 0], got.top_pos[f, 0], f], got.top_values[f, 0], rtol=1e-4)
    assert got.hist[f].sum() == got.active[f]
    assert np.histogram(np.clip(flat[:, f][flat[:, f] > 0], HIST_EDGES[0], HIST_EDGES[-1] * 0.999),
                        HIST_EDGES)[0].tolist() == got.hist[f].tolist()
    assert contexts_cached(tiny_lm, sae, windows)
    again = top_contexts(tiny_lm, sae, windows, on_step=lambda *a: pytest.fail("read from disk, not computed"))
    np.testing.assert_array_equal(again.top_values, got.top_values)


def test_decoder_tokens_are_the_directions_reading_through_ln_f(tmp_path, tiny_lm, tiny_model_dir):
    from core.feature_cards import decoder_tokens

    sae = load_sae(str(build_sae(tmp_path / "s", "standard")))
    w = load_file(str(tiny_model_dir / "model.safetensors"))
    d = sae.W_dec.numpy()[5].astype(np.float64)
    logits = ((d - d.mean()) * w["transformer.ln_f.weight"]) @ w["transformer.wte.weight"].T
    up, up_v, down, down_v = decoder_tokens(tiny_lm, sae, 5, k=6)
    np.testing.assert_array_equal(up, np.argsort(-logits)[:6])
    np.testing.assert_array_equal(down, np.argsort(logits)[:6])
    np.testing.assert_allclose(up_v, np.sort(logits)[::-1][:6], rtol=1e-4)


@pytest.mark.parametrize("hook", ["blocks.0.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.0.hook_resid_mid",
                                  "blocks.1.hook_resid_post"])
def test_a_feature_knocked_out_inside_a_run_equals_transformers_hooked_at_its_site(tmp_path, tiny_lm, t, hook):
    """Every site the app reads, with a head of block 0 knocked out as well: the SAE reads the
    activation as the changed run computes it (transformers' forward, hooked, is the oracle)."""
    from core.features import FeatureChange
    from core.interventions import ablate

    sae = load_sae(str(build_sae(tmp_path / "s", "standard", hook=hook)))
    feats = feature_attribution(tiny_lm, t, sae, int(t.top_ids[-1, 0])).features[:3]
    change = FeatureChange(sae, tuple(int(f) for f in feats))
    got = ablate(tiny_lm, t, heads=[(0, 2)], features=change)
    L, site = sae.layer, sae.site
    blk, hs = tiny_lm.model.transformer.h[L], tiny_lm.d_head
    seen = {}
    hooks = [tiny_lm.model.transformer.h[0].attn.c_proj.register_forward_pre_hook(
        lambda m, a: (a[0].index_fill(-1, torch.arange(2 * hs, 3 * hs), 0.0),))]
    if site == "hook_attn_out":
        hooks.append(blk.attn.register_forward_hook(lambda m, i, o: (change.apply(o[0]),) + tuple(o[1:])))
    elif site == "hook_mlp_out":
        hooks.append(blk.mlp.register_forward_hook(lambda m, i, o: change.apply(o)))
    elif site == "hook_resid_mid":
        hooks.append(blk.register_forward_pre_hook(lambda m, a: seen.update(x=a[0])))
        hooks.append(blk.attn.register_forward_hook(
            lambda m, i, o: (change.apply(seen["x"] + o[0]) - seen["x"],) + tuple(o[1:])))
    else:  # after the last block: before ln_f
        hooks.append(tiny_lm.model.transformer.ln_f.register_forward_pre_hook(lambda m, a: (change.apply(a[0]),)))
    try:
        with torch.inference_mode():
            want = tiny_lm.model(torch.tensor([t.token_ids.tolist()])).logits[0, -1]
    finally:
        for h in hooks:
            h.remove()
    np.testing.assert_allclose(got.next_logits, want.numpy(), rtol=1e-5, atol=1e-4)
    assert not np.allclose(got.next_logits, ablate(tiny_lm, t, heads=[(0, 2)]).next_logits, atol=1e-4)
