"""Experiments › Knock out parts with sparse features, tiny model and a random SAE saved by sae-lens:
the prediction after a feature is knocked out or clamped equals transformers' own GPT2LMHeadModel with
a forward hook on the SAE's residual that takes the feature's part out (numpy, from the saved weights),
not core's run; the features' controls are in the link, and the picker says what it cannot read."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tests import apptest
from tests.test_features_page import build_sae

PROMPT = "The cat sat on the mat. The cat sat on the"
LAYER = 1  # the SAE reads blocks.1.hook_resid_pre: the input of transformer.h[1]


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory) -> Path:
    return build_sae(tmp_path_factory.mktemp("exp-sae") / "standard", hook=f"blocks.{LAYER}.hook_resid_pre")


@pytest.fixture(autouse=True)
def disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2VIZ_CACHE_DIR", str(tmp_path / "cache"))


def saved(sae: Path) -> tuple[dict, dict]:
    cfg = json.loads((sae / "cfg.json").read_text())
    assert cfg["architecture"] == "standard" and cfg["normalize_activations"] == "none"
    return cfg, {k: v.astype(np.float64) for k, v in load_file(str(sae / "sae_weights.safetensors")).items()}


def numpy_acts(sae: Path, x: np.ndarray) -> np.ndarray:
    """[pos, d_sae]: ReLU((x - b_dec) W_enc + b_enc), from the saved file and config alone."""
    cfg, w = saved(sae)
    return np.maximum((x - (w["b_dec"] if cfg["apply_b_dec_to_input"] else 0)) @ w["W_enc"] + w["b_enc"], 0)


def hooked_next_probs(model_dir: Path, sae: Path, feature: int | None, value: float = 0.0) -> np.ndarray:
    """[vocab]: transformers' next-token probabilities after PROMPT, with `feature` set to `value` at every
    position of the residual before block LAYER (x + (value - a_f) W_dec[f], a_f from numpy), or clean."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    w_dec = saved(sae)[1]["W_dec"]

    def replace(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        xs = x[0].double().numpy()  # [pos, d_model]
        a = numpy_acts(sae, xs)[:, feature]
        new = torch.from_numpy(xs + (value - a)[:, None] * w_dec[feature]).to(x.dtype)[None]
        return ((new, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": new})

    hook = model.transformer.h[LAYER].register_forward_pre_hook(replace, with_kwargs=True) if feature is not None \
        else None
    try:
        with torch.no_grad():
            logits = model(torch.tensor([tok(PROMPT)["input_ids"]])).logits[0, -1].double()
    finally:
        if hook is not None:
            hook.remove()
    return torch.softmax(logits, -1).numpy()


@pytest.fixture(scope="module")
def strongest(tiny_model_dir, sae_dir) -> int:
    """The feature with the most activation over the prompt (by numpy, on transformers' residual)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        x = model(torch.tensor([tok(PROMPT)["input_ids"]]), output_hidden_states=True).hidden_states[LAYER][0]
    return int(np.argmax(numpy_acts(sae_dir, x.double().numpy()).sum(0)))


def open_page(sae: Path, query: dict | None = None, **state):
    base = {"exp_sae": True, "feat_sae_source": "local", "feat_sae_path": str(sae)}
    return apptest.open_page(apptest.EXPERIMENTS, None if query else PROMPT, None if query else {**base, **state},
                             query=query)


def test_knocking_out_and_clamping_a_feature_match_a_hooked_transformers_run(tiny_env, sae_dir, strongest):
    at = open_page(sae_dir, exp_features=str(strongest))
    assert not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "p after" in d.value.columns)
    clean = hooked_next_probs(tiny_env, sae_dir, None)
    knocked = hooked_next_probs(tiny_env, sae_dir, strongest)
    ids = table["id"].to_numpy()
    np.testing.assert_allclose(table["p before"], clean[ids], rtol=1e-4)
    np.testing.assert_allclose(table["p after"], knocked[ids], rtol=1e-4)
    assert np.abs(knocked - clean).max() > 0.01 * clean.max()  # the knock-out moved the prediction (100× rtol)
    assert any(f"#{strongest} knocked out" in c.value for c in at.caption)

    at.radio(key="exp_feat_how").set_value("value").run()
    at.number_input(key="exp_feat_value").set_value(3.0).run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "p after" in d.value.columns)
    np.testing.assert_allclose(table["p after"], hooked_next_probs(tiny_env, sae_dir, strongest, 3.0)[table["id"]],
                               rtol=1e-4)

    link = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert {"exp_sae", "exp_features", "exp_feat_how", "exp_feat_value", "feat_sae_path"} <= set(link)
    fresh = open_page(sae_dir, query=link)  # the link pasted into a new session
    again = next(d.value for d in fresh.dataframe if "p after" in d.value.columns)
    np.testing.assert_allclose(again["p after"], table["p after"], rtol=1e-6)
    assert fresh.number_input(key="exp_feat_value").value == 3.0 and fresh.radio(key="exp_feat_how").value == "value"


def test_the_picker_lists_the_strongest_features_and_says_what_it_cannot_read(tiny_env, sae_dir, strongest):
    at = open_page(sae_dir)
    listed = next(d.value for d in at.dataframe if "writes most" in d.value.columns)
    assert f"#{strongest}" in listed["feature"].tolist()
    assert any("Nothing is picked yet" in i.value for i in at.info)  # no feature typed: the default head
    at.text_input(key="exp_features").input(f"{strongest}, 96, x").run()  # the SAE has 96 features: 0-95
    assert not at.exception
    assert any("96, x" in w.value and "0–95" in w.value for w in at.warning)
    picked = next(d.value for d in at.dataframe if "writes most" in d.value.columns)
    assert picked["feature"].tolist() == [f"#{strongest}"]


def test_the_switch_off_loads_no_sae(tiny_env, sae_dir):
    at = apptest.open_page(apptest.EXPERIMENTS, PROMPT, {"feat_sae_source": "local", "feat_sae_path": str(sae_dir)})
    assert not [w for w in at.text_input if w.key in ("exp_features", "feat_sae_path")]
    assert at.toggle(key="exp_sae").value is False
