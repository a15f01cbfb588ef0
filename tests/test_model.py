"""Loading: the local path users take, and every failure a person can hit, with its fix."""
from __future__ import annotations

import gc
import json
import os
import pathlib
import re
import shutil
import threading
import time
import traceback
import weakref
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

import core.model
from core import ModelLoadError, ModelStore, load_model, pick_device
from core.model import _progress_tqdm, default_model_name, is_allowed_model, models_locked
from core.synthetic import build_checkpoint


def gpt2_parameter_count(n_layer: int, d: int, vocab: int, n_ctx: int) -> int:
    """GPT-2's parameters from its shape (the unembedding tied to wte): embeddings, per block two
    LayerNorms, c_attn (d x 3d), c_proj (d x d), c_fc (d x 4d), c_proj (4d x d), with biases; ln_f."""
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    return vocab * d + n_ctx * d + n_layer * block + 2 * d


def test_the_formula_gives_gpt2_smalls_published_count():
    assert gpt2_parameter_count(12, 768, 50_257, 1024) == 124_439_808  # GPT-2 small, as Hugging Face reports it


def test_local_directory_loads_read_only_in_eval_mode(tiny_lm, tiny_model_dir):
    assert tiny_lm.name == str(tiny_model_dir)
    assert not tiny_lm.model.training
    assert all(not p.requires_grad for p in tiny_lm.model.parameters())
    assert tiny_lm.model.config._attn_implementation == "eager"
    c = tiny_lm.config
    assert tiny_lm.n_params == gpt2_parameter_count(c.n_layer, c.n_embd, c.vocab_size, c.n_positions)
    assert tiny_lm.n_bytes == 4 * tiny_lm.n_params  # float32
    assert f"{tiny_lm.n_params / 1e6:,.1f} M parameters" in tiny_lm.describe() and "cpu" in tiny_lm.describe()


def test_env_var_sets_default_model(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("GPT2VIZ_MODEL", str(tiny_model_dir))
    assert default_model_name() == str(tiny_model_dir)
    assert load_model(device="cpu").name == str(tiny_model_dir)
    monkeypatch.delenv("GPT2VIZ_MODEL")
    assert default_model_name() == "gpt2"


def test_device_is_cuda_when_there_is_one_unless_overridden(monkeypatch):
    monkeypatch.delenv("GPT2VIZ_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")
    monkeypatch.setenv("GPT2VIZ_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")  # the override wins over an available GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("GPT2VIZ_DEVICE")
    assert pick_device() == torch.device("cpu")


def test_device_override_reaches_the_loaded_model(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("GPT2VIZ_DEVICE", "meta")  # a device auto-detection never picks
    lm = load_model(str(tiny_model_dir))
    assert lm.device == torch.device("meta") and next(lm.model.parameters()).device.type == "meta"


@pytest.mark.parametrize("device, says", [("tpu9", "not a device torch knows"), ("cuda:7", "cannot be put on")])
def test_a_device_that_cannot_be_used_is_a_load_error(monkeypatch, tiny_model_dir, device, says):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    monkeypatch.setenv("GPT2VIZ_DEVICE", device)
    with pytest.raises(ModelLoadError) as e:
        load_model(str(tiny_model_dir))
    assert says in str(e.value) and "GPT2VIZ_DEVICE" in e.value.hint


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


# ---- broken checkpoints that transformers would load anyway --------------------------------------
def copy_checkpoint(src, dst, drop=()):
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in drop:
            shutil.copy(f, dst / f.name)
    return dst


def test_weights_missing_for_a_block_are_a_load_error(tmp_path, tiny_model_dir):
    broken = copy_checkpoint(tiny_model_dir, tmp_path / "broken", drop={"model.safetensors"})
    weights = load_file(tiny_model_dir / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".h.1." not in k}, broken / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ModelLoadError) as e:
        load_model(str(broken), device="cpu")
    n_missing = sum(".h.1." in k for k in weights)  # every tensor of block 1
    assert f"lacks {n_missing} of the model's weights" in str(e.value) and "transformer.h.1." in str(e.value)
    assert "save_pretrained" in e.value.hint


def test_weights_of_another_shape_are_a_load_error(tmp_path, tiny_model_dir):
    broken = copy_checkpoint(tiny_model_dir, tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "n_layer": config["n_layer"] + 1}))
    with pytest.raises(ModelLoadError, match=r"lacks \d+ of the model's weights"):
        load_model(str(broken), device="cpu")


def test_a_checkpoint_without_tokenizer_files_is_a_load_error(tmp_path, tiny_model_dir):
    tokenizer_files = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"}
    bare = copy_checkpoint(tiny_model_dir, tmp_path / "bare", drop=tokenizer_files)
    with pytest.raises(ModelLoadError) as e:
        load_model(str(bare), device="cpu")
    assert "no usable tokenizer" in str(e.value)
    assert "tokenizer.json" in e.value.hint and "save_pretrained" in e.value.hint


TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"}


def broken_checkpoint(kind: str, root: pathlib.Path, good: pathlib.Path) -> pathlib.Path:
    """A checkpoint directory broken in one way a person can hit, named `kind` (or no directory at all)."""
    path = root / "models" / kind
    if kind == "missing":
        return path
    if kind in ("empty", "bert", "no-weights"):
        path.mkdir(parents=True)
        if kind == "bert":
            (path / "config.json").write_text(json.dumps({"model_type": "bert"}))
        if kind == "no-weights":
            shutil.copy(good / "config.json", path / "config.json")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    copy_checkpoint(good, path, drop=TOKENIZER_FILES if kind == "no-tokenizer" else ())
    if kind == "half-written-config":
        (path / "config.json").write_text('{"n_layer": ')
    if kind == "garbage-weights":
        (path / "model.safetensors").write_bytes(b"\0" * 100)
    if kind == "another-shape":
        config = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**config, "n_layer": config["n_layer"] + 1}))
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "half-written-config", "bert", "no-weights", "garbage-weights",
                                  "another-shape", "no-tokenizer"])
def test_a_load_error_names_the_directory_never_its_path(tmp_path, tiny_model_dir, kind):
    """Load errors are shown in pages: they name the checkpoint as pages do (its directory's name), in the
    message, the fix and the library's own words quoted in them, and never say where it is on the server."""
    path = broken_checkpoint(kind, tmp_path, tiny_model_dir)
    with pytest.raises(ModelLoadError) as e:
        load_model(str(path), device="cpu")
    text = f"{e.value} {e.value.hint}"
    assert kind in str(e.value), text
    assert str(tmp_path) not in text and str(path.parent) not in text and "/models/" not in text, text
    assert not re.search(r"(?<![\w:/.])/(?:[^\s/'\"]+/)+", text), text  # no other absolute path either


def test_a_complete_checkpoint_encodes_text(tiny_lm):
    assert len(tiny_lm.encode("Hello, world")) >= 2


# ---- which models a link may load --------------------------------------------------------------
def test_links_may_load_the_family_the_default_and_the_allowed_list(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT2VIZ_MODEL", str(tmp_path / "default-model"))
    monkeypatch.setenv("GPT2VIZ_ALLOWED_MODELS", f"org/fine-tuned, {tmp_path / 'extra'}/")
    for name in ["gpt2", "gpt2-xl", "distilgpt2", str(tmp_path / "default-model"), "org/fine-tuned",
                 str(tmp_path / "extra"), str(tmp_path / "extra") + "/", str(tmp_path / "x" / ".." / "extra")]:
        assert is_allowed_model(name), name
    for name in ["EleutherAI/gpt-j-6b", "org/fine-tuned-2", "/", "/etc", str(tmp_path), str(tmp_path / "extra2"),
                 "~", "../extra", "", "gpt2 ", "GPT2-XL"]:
        assert not is_allowed_model(name) or name.strip() == "gpt2", name
    monkeypatch.delenv("GPT2VIZ_MODEL")
    monkeypatch.delenv("GPT2VIZ_ALLOWED_MODELS")
    assert not is_allowed_model(str(tmp_path / "default-model")) and not is_allowed_model("org/fine-tuned")


def test_deciding_what_a_link_may_load_never_looks_at_the_link_s_path(monkeypatch):
    looked = []

    def recording(real):
        def look(self, *a, **k):
            looked.append(str(self))
            return real(self, *a, **k)
        return look

    for name in ("exists", "stat", "is_dir", "resolve"):
        monkeypatch.setattr(pathlib.Path, name, recording(getattr(pathlib.Path, name)))
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: looked.append(str(p)) or real_exists(p))
    verdicts = [is_allowed_model(n) for n in ("/etc/passwd", "../../secrets", "~/private", "gpt2")]
    monkeypatch.undo()
    assert verdicts == [False, False, False, True]
    assert not [p for p in looked if "passwd" in p or "secrets" in p or "private" in p], looked


def test_locking_is_off_unless_the_operator_says_so(monkeypatch):
    monkeypatch.delenv("GPT2VIZ_LOCKED", raising=False)
    assert not models_locked()
    for on in ("1", "true", "YES"):
        monkeypatch.setenv("GPT2VIZ_LOCKED", on)
        assert models_locked()
    monkeypatch.setenv("GPT2VIZ_LOCKED", "0")
    assert not models_locked()


# ---- the store: one load per model, a lock per name, bounded memory ------------------------------
class FakeLoads:
    """load_model stand-in: records calls; a name in `gates` blocks until its event is set."""

    def __init__(self):
        self.calls, self.gates, self.started = [], {}, {}

    def __call__(self, name, progress=None):
        self.calls.append(name)
        self.started.setdefault(name, threading.Event()).set()
        if name in self.gates:
            assert self.gates[name].wait(30), "test gate never opened"
        if name.startswith("bad"):
            raise ModelLoadError(f"No directory at {name}.", "Check the path.")
        return SimpleNamespace(name=name)


@pytest.fixture
def fake_loads(monkeypatch):
    fake = FakeLoads()
    monkeypatch.setattr(core.model, "load_model", fake)
    return fake


def test_a_slow_download_does_not_hold_up_other_models(fake_loads):
    store = ModelStore(max_models=3)
    store.get("ready")
    fake_loads.gates["big"] = threading.Event()
    fake_loads.started["big"] = threading.Event()
    results, told = {}, []

    def session(i: int) -> None:
        results[i] = store.get("big", progress=lambda fraction, text: told.append(text))

    slow = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(2)]
    slow[0].start()
    assert fake_loads.started["big"].wait(10)
    slow[1].start()
    deadline = time.time() + 10
    while not told and time.time() < deadline:  # until the second session waits on the first one's load
        time.sleep(0.01)
    others = {}
    meanwhile = threading.Thread(target=lambda: others.update(ready=store.get("ready"), other=store.get("other")),
                                 daemon=True)
    meanwhile.start()
    meanwhile.join(10)
    # a model loaded already, and another model, while the download still runs
    assert not meanwhile.is_alive() and others["ready"].name == "ready" and others["other"].name == "other"
    assert all(t.is_alive() for t in slow)  # both sessions still wait for "big"
    fake_loads.gates["big"].set()
    for t in slow:
        t.join(10)
    assert results[0] is results[1] and fake_loads.calls.count("big") == 1  # two sessions, one load
    assert told == ["Another session is loading big; waiting for it"]  # the second one is told why it waits


def test_failures_are_remembered_and_do_not_push_models_out(fake_loads):
    evicted = []
    store = ModelStore(max_models=2, on_evict=evicted.append)
    good = store.get("good")
    for _ in range(3):
        for bad in ("bad-1", "bad-2"):
            with pytest.raises(ModelLoadError, match="No directory"):
                store.get(bad)
        assert store.get("good") is good
    assert evicted == [] and fake_loads.calls == ["good", "bad-1", "bad-2"]  # each failure tried once


def test_a_remembered_failure_is_raised_fresh_each_time(fake_loads):
    store = ModelStore()
    errors = []
    for _ in range(3):
        try:
            store.get("bad")
        except ModelLoadError as e:
            errors.append(e)
    assert len({id(e) for e in errors}) == 3 and all(str(e) == str(errors[0]) and e.hint for e in errors)
    depth = [len(traceback.extract_tb(e.__traceback__)) for e in errors]
    assert depth[2] == depth[1]  # tracebacks do not pile up on one stored exception


def test_the_least_recently_used_model_goes_first(fake_loads):
    evicted = []
    store = ModelStore(max_models=2, on_evict=evicted.append)
    store.get("a")
    store.get("b")
    store.get("a")  # used again
    store.get("c")
    assert evicted == ["b"] and store.loaded_names() == ["a", "c"]


def test_evicted_models_are_freed(tmp_path):
    """Real checkpoints through the real loader: after eviction nothing keeps a model alive."""
    dirs = [build_checkpoint(tmp_path / f"m{i}", seed=i) for i in range(3)]
    store = ModelStore(max_models=1)
    refs = []
    for d in dirs:
        lm = store.get(str(d))
        refs.append(weakref.ref(lm.model))
        del lm
    gc.collect()
    assert [r() is not None for r in refs] == [False, False, True]


# ---- issue 25: names as the file system and pages take them ----------------------------------------------
@pytest.mark.parametrize("name", ["a" * 300, "/tmp/" + "b" * 300, "org/" + "c" * 300, "~/" + "d" * 256])
def test_a_name_too_long_for_the_file_system_is_a_load_error(name):
    """Path.exists() raises OSError (File name too long) past 255 bytes: a load error with its fix instead."""
    with pytest.raises(ModelLoadError):
        load_model(name, device="cpu")


def test_loading_says_what_it_does_at_once_and_names_the_model(tiny_model_dir):
    said = []
    load_model(str(tiny_model_dir), device="cpu", progress=lambda f, text: said.append(text))
    assert said[0].startswith("Opening") and said[-1].startswith("Loading")
    assert all(str(tiny_model_dir.parent) not in text and tiny_model_dir.name in text for text in said)


def test_one_display_name_and_one_spelling_per_model(monkeypatch, tmp_path):
    from core.model import BUNDLED_NAME, bundled_model_dir, canonical_name, display_name, link_name, model_from_link

    assert canonical_name("/x//y/") == canonical_name("/x/./y") == canonical_name("/x/z/../y") == "/x/y"
    assert canonical_name("gpt2") == "gpt2" and display_name("gpt2-xl") == "gpt2-xl"
    assert display_name("/srv/models/my-ckpt/") == "my-ckpt" and len(display_name("/" + "e" * 300)) <= 80
    if bundled_model_dir():
        assert display_name(bundled_model_dir()) == BUNDLED_NAME == link_name(bundled_model_dir())
    monkeypatch.setenv("GPT2VIZ_MODEL", str(tmp_path / "served") + "/")
    assert link_name(str(tmp_path / "served")) == "served" and model_from_link("served") == str(tmp_path / "served")
    assert link_name(str(tmp_path / "typed-here")) == str(tmp_path / "typed-here")  # not allowed: as typed
