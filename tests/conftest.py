"""Fixtures: a tiny random GPT-2 with a real byte-level BPE tokenizer, saved to a temp dir and
loaded through the same `load_model(path)` / GPT2VIZ_MODEL path users take. No network."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test must never reach for the network

from core import load_model  # noqa: E402
from core.synthetic import build_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture
def tiny_env(tiny_model_dir, monkeypatch):
    """GPT2VIZ_MODEL pointing at the tiny checkpoint, as a user would set it."""
    monkeypatch.setenv("GPT2VIZ_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("GPT2VIZ_DEVICE", "cpu")
    return tiny_model_dir


BUNDLED = ROOT / "bundled" / "mini-gpt2-kjv"


@pytest.fixture
def bundled_env(monkeypatch) -> Path:
    """GPT2VIZ_MODEL pointing at the bundled mini GPT-2 (the one trained model here), as a user would
    set it; skipped where the checkout lacks it."""
    if not (BUNDLED / "trained_tokens.json").exists():
        pytest.skip("bundled/mini-gpt2-kjv is not in this checkout")
    monkeypatch.setenv("GPT2VIZ_MODEL", str(BUNDLED))
    monkeypatch.setenv("GPT2VIZ_DEVICE", "cpu")
    return BUNDLED


@pytest.fixture(scope="session")
def tiny_sae_dir(tmp_path_factory) -> Path:
    """A random standard SAE for the tiny model (its residual before block 1, 96 features), saved by
    sae-lens in its on-disk format, as tests.test_features_page builds them."""
    from tests.test_features_page import build_sae

    return build_sae(tmp_path_factory.mktemp("tiny-sae") / "sae")
