"""Load a GPT-2 checkpoint (hub id or local directory) once, read-only, on the best device.

`load_model` is the only way the rest of the code gets a model. It never imports
streamlit; the app wraps it in `st.cache_resource` so every browser session shares
one `LoadedModel`, which nothing mutates after loading.
"""
from __future__ import annotations

import functools
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from i18n import N_, _, language, use_language

from .arch import Arch

GPT2_FAMILY = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2")
DEFAULT_MODEL = "gpt2"
# A small GPT-2 trained here (training/train_mini_gpt2.py) and shipped in the repository, so the
# app shows learned structure with no network; the app falls back to it when gpt2 cannot be had.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled" / "mini-gpt2-kjv"
BUNDLED_NAME = "mini-gpt2-kjv"  # how pages and links name it, wherever the repository lives
# Shown in the app: translate where shown, _(BUNDLED_DESCRIPTION).
BUNDLED_DESCRIPTION = N_("the bundled mini GPT-2 (6 layers, trained here on the King James Bible)")
_FIX_OFFLINE = N_("Run the app once with network access so the model is downloaded (then HF_HUB_OFFLINE=1 works "
                  "without network); where the Hugging Face Hub is blocked, set HF_ENDPOINT to a Hub mirror (for "
                  "example HF_ENDPOINT=https://hf-mirror.com); or pick *Local directory…* in the sidebar (or set "
                  "GPT2VIZ_MODEL) for a checkpoint on disk. The bundled mini GPT-2 is "
                  "in the sidebar's list and needs no network.")
ENV_MODEL = "GPT2VIZ_MODEL"
ENV_DEVICE = "GPT2VIZ_DEVICE"
# Models a link (`?model=`) may load besides the GPT-2 family, the bundled model and GPT2VIZ_MODEL:
# comma-separated hub ids or local directories.
ENV_ALLOWED = "GPT2VIZ_ALLOWED_MODELS"
# For a public server: 1 limits the sidebar, too, to the allowed models (no typed hub id or directory).
ENV_LOCKED = "GPT2VIZ_LOCKED"

# Only what a GPT-2 needs; hub repos also hold TF, Flax, ONNX and tflite copies.
_WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
_LEGACY_WEIGHT_PATTERNS = ["*.json", "pytorch_model*.bin", "*.txt"]

ProgressFn = Callable[[float, str], None]


class ModelLoadError(RuntimeError):
    """A model could not be loaded. `hint` says how to fix it, in words for a person.

    `message` and `hint` are English templates (marked with N_ where raised) filled with the
    named `fields`; `str(e)` and `e.hint` read them in the language of whoever reads them, so a
    failure the shared ModelStore remembers reads right in every session's language. Without
    fields they are shown as given."""

    def __init__(self, message: str, hint: str, **fields):
        super().__init__(message)
        self.template, self.hint_template, self.fields = message, hint, fields

    def __str__(self) -> str:
        return _fill(self.template, self.fields)

    @property
    def hint(self) -> str:
        return _fill(self.hint_template, self.fields)

    def detached(self) -> "ModelLoadError":
        """The same message and fix with no traceback or cause: safe to keep, and to raise again."""
        return ModelLoadError(self.template, self.hint_template, **self.fields)


def _fill(template: str, fields: dict) -> str:
    text = _(template)
    return text.format(**fields) if fields else text


def bundled_model_dir() -> str | None:
    """The mini GPT-2 shipped in the repository, if this checkout has it."""
    return str(BUNDLED_DIR) if (BUNDLED_DIR / "config.json").exists() else None


def default_model_name() -> str:
    """`GPT2VIZ_MODEL` (hub id or local directory, in its one spelling) if set, else `gpt2`."""
    return canonical_name(os.environ.get(ENV_MODEL, "")) or DEFAULT_MODEL


def canonical_name(name: str) -> str:
    """One spelling per model, worked out once where a name comes in (a link, the sidebar, GPT2VIZ_MODEL):
    hub ids as they are, local paths normalised (`/x//y/`, `~/../x/y`) without touching the disk."""
    name = name.strip()
    if not _looks_local(name):
        return name
    try:
        return os.path.normpath(os.path.expanduser(name))
    except (ValueError, RuntimeError):  # a NUL byte, a user that does not exist: kept as written
        return name



MAX_NAME_SHOWN = 80  # characters of a model's name a page shows


def display_name(name: str) -> str:
    """How every page names a model: a hub id as it is, a local checkpoint by its directory's name
    (`mini-gpt2-kjv`), never the path to it on the server; cut to MAX_NAME_SHOWN characters."""
    name = canonical_name(name)
    if name and name == bundled_model_dir():
        return BUNDLED_NAME
    if _looks_local(name):
        name = Path(name).name or name
    return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN - 1] + "…"


# An absolute path (POSIX or Windows); group 1 or 2 is its last part.
_OTHER_PATH = re.compile(r"(?<![\w:/.~])~?/(?:[^\s'\"`<>/]+/)+([^\s'\"`<>/]*)"
                         r"|\b[A-Za-z]:\\(?:[^\s'\"`<>\\]+\\)*([^\s'\"`<>\\]*)")


def _detail(e: BaseException, name: str, path: Path | str | None = None) -> str:
    """What went wrong, for a load error's text: the exception's type and message, with the checkpoint's
    paths (as typed, normalised, expanded; the hub snapshot it was read from) written as the model's
    display_name, and any other absolute path cut to its last part. A load error is shown in pages,
    and no server path belongs there."""
    text, shown = f"{type(e).__name__}: {e}", display_name(name)
    spellings = {name.strip(), canonical_name(name), os.path.expanduser(name.strip())}
    if path is not None:
        spellings |= {str(path), os.path.normpath(str(path))}
    for spelled in sorted((s for s in spellings if s and _looks_local(s)), key=len, reverse=True):
        text = text.replace(spelled, shown)
    return _OTHER_PATH.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)


def allowed_models() -> list[str]:
    """What a link may load: the GPT-2 family, the bundled model, GPT2VIZ_MODEL and GPT2VIZ_ALLOWED_MODELS."""
    names = list(GPT2_FAMILY) + [n for n in (bundled_model_dir(), default_model_name()) if n]
    names += [canonical_name(n) for n in os.environ.get(ENV_ALLOWED, "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def link_name(name: str) -> str:
    """The model as a link names it: an allowed local checkpoint by its directory's name (the bundled
    model is `mini-gpt2-kjv` on every server), so no link carries the server's path; anything else
    (a hub id, a directory typed in this sidebar) as it is."""
    name = canonical_name(name)
    if name and name == bundled_model_dir():
        return BUNDLED_NAME
    if not _looks_local(name):
        return name
    short = display_name(name)
    local = [n for n in allowed_models() if _looks_local(n)]
    mine = [n for n in local if display_name(n) == short]
    return short if mine == [name] and short not in GPT2_FAMILY else name


def model_from_link(value: str) -> str:
    """The model a link's `model=` names, in its one spelling: an allowed local checkpoint's short
    name is that checkpoint; anything else is canonical_name(value)."""
    value = value.strip()
    if value == BUNDLED_NAME and bundled_model_dir():
        return bundled_model_dir()
    local = [n for n in allowed_models() if _looks_local(n) and display_name(n) == value]
    return local[0] if len(local) == 1 and not _looks_local(value) else canonical_name(value)


def is_allowed_model(name: str) -> bool:
    """Whether `name` is one the operator allows links to load (compared as written, never looked up on disk)."""
    wanted = canonical_name(name)
    return bool(wanted) and any(canonical_name(n) == wanted for n in allowed_models())


def models_locked() -> bool:
    """GPT2VIZ_LOCKED=1: only allowed models, from the sidebar too (for a public server)."""
    return os.environ.get(ENV_LOCKED, "").strip().lower() in ("1", "true", "yes", "on")


def pick_device(preferred: str | None = None) -> torch.device:
    """CUDA if available, else Apple MPS, else CPU; `GPT2VIZ_DEVICE` or `preferred` overrides."""
    choice = (preferred or os.environ.get(ENV_DEVICE, "")).strip().lower()
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A GPT-2 language model, its tokenizer and the facts pages show about it.

    The model is in eval mode with eager attention and gradients disabled. The fast
    tokenizer is not thread-safe, so every call goes through `tokenizer_lock`.
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    forward_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The token ids the model learned, where its directory lists them (TRAINED_TOKENS_FILE);
    # None: every token (as for GPT-2, trained on text that uses nearly all of its vocabulary).
    trained_token_ids: tuple[int, ...] | None = field(default=None, repr=False)

    @property
    def config(self):
        return self.model.config

    @functools.cached_property
    def arch(self) -> Arch:
        """The checkpoint's weights as per-head views and the one block's inputs (core.arch)."""
        return Arch.of(self.model)

    @property
    def n_layer(self) -> int:
        return self.config.n_layer

    @property
    def n_head(self) -> int:
        return self.config.n_head

    @property
    def d_model(self) -> int:
        return self.config.n_embd

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def d_mlp(self) -> int:
        """The MLP's width: the config's n_inner, or 4 d_model when it has none (GPT-2's own)."""
        return self.config.n_inner or 4 * self.d_model

    @property
    def n_ctx(self) -> int:
        return self.config.n_positions

    @property
    def d_vocab(self) -> int:
        return self.config.vocab_size

    @property
    def n_params(self) -> int:
        """Distinct parameters (the tied unembedding counted once), as transformers counts them."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def label(self) -> str:
        """The model's name as every page shows it (display_name): the hub id, or a local directory's name."""
        return display_name(self.name)

    @property
    def n_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def encode(self, text: str) -> list[int]:
        with self.tokenizer_lock:
            return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def id_to_piece(self, ids: list[int]) -> list[str | None]:
        """The tokenizer's raw pieces (`Ġcat`), None for ids the tokenizer does not know."""
        with self.tokenizer_lock:
            return [self.tokenizer.convert_ids_to_tokens(int(i)) for i in ids]

    def describe(self) -> str:
        return (f"{self.name}: {self.n_params / 1e6:,.1f} M parameters, "
                f"{self.n_bytes / 2**20:,.0f} MB on {self.device.type}")


def _looks_local(name: str) -> bool:
    """Written as a path; hub ids look like `gpt2` or `org/name`."""
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or (len(name) > 1 and name[1] == ":")


def _is_local(name: str) -> bool:
    """A path on disk, or clearly meant as one (a name the file system cannot even look up, such as one
    over 255 bytes, is not on disk)."""
    if _looks_local(name):
        return True
    try:
        return Path(name).expanduser().exists()
    except (OSError, ValueError, RuntimeError):
        return False


def _progress_tqdm(progress: ProgressFn):
    """A tqdm class that reports download progress (bytes) to `progress(fraction, text)`, in the
    language of the session that asked (the hub downloads on threads of its own)."""
    from tqdm.auto import tqdm

    lang = language()

    class _Reporter(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            out = super().update(n)
            total = self.total or 0
            if total:
                if self.unit == "B":
                    done = f"{self.n / 2**20:,.0f} / {total / 2**20:,.0f} MB"
                else:
                    done = f"{self.n:,.0f} / {total:,.0f}"
                with use_language(lang):
                    what = self.desc or _("Downloading")
                progress(min(self.n / total, 1.0), f"{what}: {done}")
            return out

    return _Reporter


def _fetch(name: str, progress: ProgressFn | None) -> Path:
    """A local directory holding the checkpoint: the path itself, or a hub snapshot. Errors name the
    model as pages do (display_name), never by its path."""
    if _is_local(name):
        path = Path(name).expanduser()
        try:
            is_dir = path.is_dir()
        except (OSError, ValueError):  # "File name too long", a NUL byte
            is_dir = False
        if not is_dir:
            raise ModelLoadError(
                N_("No directory at {path}."),
                N_("Check the path, or give a Hugging Face Hub id such as gpt2. `{env}` sets the default."),
                path=display_name(name), env=ENV_MODEL,
            )
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    kwargs = {"tqdm_class": _progress_tqdm(progress)} if progress else {}
    try:
        path = Path(snapshot_download(name, allow_patterns=_WEIGHT_PATTERNS, **kwargs))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(name, allow_patterns=_LEGACY_WEIGHT_PATTERNS, **kwargs))
        return path
    except RepositoryNotFoundError as e:
        raise ModelLoadError(
            N_("The Hugging Face Hub has no model called '{name}'."),
            N_("Pick one of the GPT-2 family (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2) "
               "or a local checkpoint directory."),
            name=display_name(name),
        ) from e
    except LocalEntryNotFoundError as e:
        raise ModelLoadError(
            N_("'{name}' is not in the local Hugging Face cache and the Hub cannot be reached."), _FIX_OFFLINE,
            name=display_name(name),
        ) from e
    except Exception as e:  # network errors come in many types across hub versions
        raise ModelLoadError(N_("Downloading '{name}' failed: {error}"), _FIX_OFFLINE, name=display_name(name),
                             error=_detail(e, name)) from e


def load_model(name: str | None = None, device: str | None = None, progress: ProgressFn | None = None) -> LoadedModel:
    """Load a GPT-2 LM (hub id or local directory) read-only on `device` (auto if None).

    Raises ModelLoadError with a `hint` when the checkpoint cannot be had or is not GPT-2; its text names
    the model by its display_name, never by a path on this machine.
    """
    name = (name or default_model_name()).strip()
    shown = display_name(name)
    if progress:  # at once: importing transformers and reading the checkpoint may take seconds
        progress(0.0, _("Opening {name}…").format(name=shown))
    from transformers import AutoConfig, AutoTokenizer, GPT2LMHeadModel

    try:
        dev = pick_device(device)
    except RuntimeError as e:  # torch.device("tpu9")
        raise ModelLoadError(N_("'{device}' is not a device torch knows ({error})."),
                             N_("Set {env} to cpu, cuda, cuda:1 or mps, or unset it to pick the best one."),
                             device=device or os.environ.get(ENV_DEVICE, ""), error=str(e), env=ENV_DEVICE) from e
    path = _fetch(name, progress)
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as e:
        raise ModelLoadError(
            N_("'{name}' has no readable config.json ({error})."),
            N_("Point to a directory saved with transformers' save_pretrained, holding config.json, "
               "the weights (model.safetensors) and the tokenizer files."),
            name=shown, error=_detail(e, name, path),
        ) from e
    if getattr(config, "model_type", None) != "gpt2":
        raise ModelLoadError(
            N_("'{name}' is a {kind} model, not GPT-2."),
            N_("This app reads GPT-2 checkpoints only: gpt2, gpt2-medium, gpt2-large, gpt2-xl, "
               "distilgpt2, or a local directory saved from one of them."),
            name=shown, kind=getattr(config, "model_type", "unknown"),
        )
    if progress:
        progress(1.0, _("Loading {name} onto {device}").format(name=shown, device=dev.type))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model, report = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager", dtype=torch.float32,
                                                        output_loading_info=True)
    except Exception as e:
        raise ModelLoadError(
            N_("'{name}' could not be read as a GPT-2 checkpoint ({error})."),
            N_("The directory needs config.json, model.safetensors (or pytorch_model.bin) and the "
               "tokenizer files (tokenizer.json, or vocab.json with merges.txt)."),
            name=shown, error=_detail(e, name, path),
        ) from e
    _check_weights(shown, report, config)
    _check_tokenizer(shown, tokenizer, config)
    try:
        model.to(dev).eval().requires_grad_(False)
    except (RuntimeError, AssertionError) as e:  # "Torch not compiled with CUDA enabled", no such GPU
        raise ModelLoadError(N_("'{name}' cannot be put on {device} ({error})."),
                             N_("Set {env}=cpu, or unset {env} to pick the best device this machine has."),
                             name=shown, device=str(dev), error=_detail(e, name), env=ENV_DEVICE) from e
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=dev,
                       trained_token_ids=_trained_tokens(path, config.vocab_size))


# A checkpoint trained on a narrow text may list the tokens it learned, {"token_ids": [...]} (the
# bundled mini GPT-2: the 2,972 tokens the King James Bible uses at least 20 times); probes that
# draw random tokens (the induction atlas) draw from these, as the others' embeddings never learned.
TRAINED_TOKENS_FILE = "trained_tokens.json"


def _trained_tokens(path: Path, vocab_size: int) -> tuple[int, ...] | None:
    """The ids in the checkpoint's TRAINED_TOKENS_FILE; None if it has none or it is not a list
    of at least two valid ids (then probes use every token, as for any checkpoint)."""
    f = Path(path) / TRAINED_TOKENS_FILE
    try:
        ids = json.loads(f.read_text())["token_ids"]
        ids = tuple(sorted({int(i) for i in ids}))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(ids) < 2 or ids[0] < 0 or ids[-1] >= vocab_size:
        return None
    return ids


# Buffers GPT-2 rebuilds itself, and the unembedding when it is tied to the token embedding.
_REBUILT = (".attn.bias", ".attn.masked_bias")


def _check_weights(name: str, report: dict, config) -> None:
    """transformers fills weights a checkpoint lacks with random numbers and only logs it: refuse.
    `name`: the model as pages name it (display_name)."""
    missing = sorted(k for k in report.get("missing_keys", ()) if not k.endswith(_REBUILT)
                     and not (k == "lm_head.weight" and getattr(config, "tie_word_embeddings", True)))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in report.get("mismatched_keys", ()))
    if not missing and not mismatched:
        return
    bad = missing or mismatched
    if missing:
        message = (N_("The checkpoint '{name}' lacks {n} of the model's weights ({keys} and {more} more); GPT-2 "
                      "would run with random numbers in their place.") if len(bad) > 4 else
                   N_("The checkpoint '{name}' lacks {n} of the model's weights ({keys}); GPT-2 would run with "
                      "random numbers in their place."))
    else:
        message = (N_("The checkpoint '{name}' has tensors of the wrong shape for {n} of the model's weights ({keys} "
                      "and {more} more); GPT-2 would run with random numbers in their place.") if len(bad) > 4 else
                   N_("The checkpoint '{name}' has tensors of the wrong shape for {n} of the model's weights ({keys}); "
                      "GPT-2 would run with random numbers in their place."))
    raise ModelLoadError(
        message,
        N_("The weights file in {path} is incomplete or belongs to another model shape. Save the model again with "
           "transformers' save_pretrained; for a hub model, delete its folder from the Hugging Face cache "
           "(huggingface-cli delete-cache) so it is downloaded again."),
        name=name, n=len(bad), keys=", ".join(bad[:4]), more=len(bad) - 4, path=name,
    )


def _check_tokenizer(name: str, tokenizer, config) -> None:
    """A directory without tokenizer files gives an empty tokenizer that turns any text into no tokens.
    `name`: the model as pages name it (display_name)."""
    try:
        probe = list(tokenizer("Hello, world", add_special_tokens=False)["input_ids"])
    except Exception:  # a tokenizer too broken to run
        probe = []
    fix = N_("Put the tokenizer files of the model it was trained from (tokenizer.json, or vocab.json and merges.txt) "
             "in the checkpoint directory; for GPT-2: "
             "AutoTokenizer.from_pretrained('gpt2').save_pretrained(directory).")
    if not probe:
        raise ModelLoadError(N_("'{name}' has no usable tokenizer: it turns text into no tokens at all."), fix,
                             name=name)
    if max(probe) >= config.vocab_size:
        raise ModelLoadError(N_("'{name}''s tokenizer does not match its model: it gives token ids up to {top:,}, "
                                "and the model knows {vocab:,}."), fix, name=name, top=max(probe),
                             vocab=config.vocab_size)
