"""Loading: the local path users take, and every failure a person can hit, with its fix."""
from __future__ import annotations

import json

import pytest
import torch

from core import ModelLoadError, ModelStore, load_model, pick_device
from core.model import _progress_tqdm, default_model_name


def test_local_directory_loads_read_only_in_eval_mode(tiny_lm, tiny_model_dir):
    assert tiny_lm.name == str(tiny_model_dir)
    assert not tiny_lm.model.training
    assert all(not p.requires_grad for p in tiny_lm.model.parameters())
    assert tiny_lm.model.config._attn_implementation == "eager"
    assert tiny_lm.n_params == sum(p.numel() for p in tiny_lm.model.parameters())
    assert "M parameters" in tiny_lm.describe() and "cpu" in tiny_lm.describe()


def test_env_var_sets_default_model(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("GPT2VIZ_MODEL", str(tiny_model_dir))
    assert default_model_name() == str(tiny_model_dir)
    assert load_model(device="cpu").name == str(tiny_model_dir)
    monkeypatch.delenv("GPT2VIZ_MODEL")
    assert default_model_name() == "gpt2"


def test_device_override(monkeypatch):
    monkeypatch.setenv("GPT2VIZ_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_missing_directory(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        load_model(str(tmp_path / "nope"))
    assert "No directory" in str(e.value) and "GPT2VIZ_MODEL" in e.value.hint


def test_directory_without_checkpoint(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        load_model(str(tmp_path))
    assert "config.json" in str(e.value) + e.value.hint


def test_not_a_gpt2_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError) as e:
        load_model(str(tmp_path))
    assert "bert" in str(e.value) and "not GPT-2" in str(e.value)


def test_weights_missing(tmp_path, tiny_model_dir):
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ModelLoadError) as e:
        load_model(str(tmp_path))
    assert "model.safetensors" in e.value.hint


def test_hub_model_not_cached_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError) as e:
        load_model("gpt2")
    assert "HF_HUB_OFFLINE=1" in e.value.hint and "GPT2VIZ_MODEL" in e.value.hint


def test_store_remembers_failures_until_forgotten(tmp_path, tiny_model_dir):
    store = ModelStore(max_models=1)
    bad = str(tmp_path / "missing")
    with pytest.raises(ModelLoadError):
        store.get(bad)
    (tmp_path / "missing").mkdir()
    with pytest.raises(ModelLoadError, match="No directory"):
        store.get(bad)  # remembered: not retried on every widget change
    store.forget(bad)
    with pytest.raises(ModelLoadError, match="config.json"):
        store.get(bad)
    lm = store.get(str(tiny_model_dir))
    assert store.get(str(tiny_model_dir)) is lm
    assert len(store._loaded) == 1


def test_download_progress_is_reported():
    seen = []
    bar = _progress_tqdm(lambda f, text: seen.append((f, text)))(total=4 * 2**20, desc="Downloading bytes", unit="B")
    bar.update(2**20)
    bar.update(3 * 2**20)
    bar.close()
    assert [round(f, 2) for f, _ in seen] == [0.25, 1.0]
    assert seen[-1][1] == "Downloading bytes: 4 / 4 MB"
    files = _progress_tqdm(lambda f, text: seen.append((f, text)))(total=7, desc="Fetching 7 files")
    files.update(7)
    files.close()
    assert seen[-1] == (1.0, "Fetching 7 files: 7 / 7")
