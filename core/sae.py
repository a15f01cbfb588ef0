"""Sparse autoencoders (SAEs): loaded through sae-lens, applied in the convention they were trained in.

An SAE rewrites one activation of GPT-2 (a residual-stream point, or an attention or MLP
output) as a few active features out of thousands: f = act(x' W_enc + b_enc), x ≈ f W_dec +
b_dec. `load_sae` takes a directory in sae-lens's on-disk format (cfg.json,
sae_weights.safetensors, optionally sparsity.safetensors) or a release and SAE id from
sae-lens's registry (downloaded once into the Hugging Face cache), loads it with sae-lens
itself, and keeps what the app computes with as plain tensors. Everything about how its
input is prepared is read from its own config, never from a per-release table:

- the hook point (`metadata.hook_name`, TransformerLens's names: blocks.L.hook_resid_pre, ...);
- centring: an SAE trained on TransformerLens's GPT-2 with centred writing weights
  (`metadata.model_from_pretrained_kwargs.center_writing_weights`) reads the residual minus its
  mean over d_model, which is what that model's residual is;
- `normalize_activations` (layer_norm, constant_norm_rescale; expected_average_only_in is
  folded into the weights by sae-lens where it knows the factor, and a no-op otherwise, as in
  sae-lens);
- `apply_b_dec_to_input`; the architecture's encoder (standard ReLU, gated, JumpReLU, TopK,
  with TopK's `rescale_acts_by_decoder_norm` folded into the weights).

sae-lens (with TransformerLens) takes ~10-20 s to import, so it is imported only here, only when
an SAE is loaded. Its registry (pretrained_saes.yaml) is read from the installed package
without importing it, for the list of releases.

Dimension names: pos d_in d_sae.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from i18n import N_, _

SITES = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
ARCHITECTURES = ("standard", "gated", "jumprelu", "topk")
_HOOK = re.compile(r"^blocks\.(\d+)\.(" + "|".join(SITES) + r")$")


class SAELoadError(ValueError):
    """An SAE that cannot be loaded or does not fit the model; the message says how to fix it."""


@dataclass(frozen=True, eq=False)
class SparseAutoencoder:
    """One SAE's weights and conventions. W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in]
    (each row a feature's direction in the activation's space, as the SAE adds it), b_dec [d_in];
    threshold [d_sae] (JumpReLU); k (TopK); b_gate, r_mag, b_mag [d_sae] (gated); log_density
    [d_sae] (log10 of how often each feature fires, from sparsity.safetensors, if shipped)."""

    name: str
    source: str
    sae_id: str | None
    architecture: str
    hook_name: str
    layer: int
    site: str
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    apply_b_dec_to_input: bool
    centre: bool
    normalize: str
    threshold: torch.Tensor | None = None
    k: int | None = None
    b_gate: torch.Tensor | None = None
    r_mag: torch.Tensor | None = None
    b_mag: torch.Tensor | None = None
    log_density: torch.Tensor | None = None
    neuronpedia: str | None = None
    model_name: str | None = None

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def key(self) -> tuple:
        """Identifies the SAE in caches: where it came from and its weights' identity."""
        return ("sae", self.source, self.sae_id, self.hook_name, self.d_sae, id(self.W_enc))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.W_enc, self.W_dec, self.b_enc, self.b_dec))


# ---- applying it ------------------------------------------------------------------------------------------
def prepare(sae: SparseAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """The activation x [..., d_in] as the SAE reads it (centred, normalised as trained), and
    what `unprepare` needs to map a reconstruction back."""
    x = x.float()
    mean = x.mean(-1, keepdim=True) if sae.centre else None
    if mean is not None:
        x = x - mean
    scale = shift = None
    if sae.normalize == "layer_norm":  # as sae-lens: in, centred and divided by the (unbiased) std + 1e-5; out, × std
        shift = x.mean(-1, keepdim=True)
        x = x - shift
        scale = x.std(-1, keepdim=True)
        x = x / (scale + 1e-5)
    elif sae.normalize == "constant_norm_rescale":
        scale = x.norm(dim=-1, keepdim=True) / sae.d_in**0.5
        x = x / scale
    return x, (mean, shift, scale)


def unprepare(sae: SparseAutoencoder, y: torch.Tensor, undo: tuple) -> torch.Tensor:
    """A reconstruction in the SAE's space -> the activation's own space (undoes `prepare`)."""
    mean, shift, scale = undo
    if scale is not None:
        y = y * scale
    if shift is not None:
        y = y + shift
    return y + mean if mean is not None else y


def encode_prepared(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """[..., d_in] (already prepared) -> feature activations [..., d_sae], by the architecture."""
    if sae.apply_b_dec_to_input:
        x = x - sae.b_dec
    if sae.architecture == "gated":
        gate = (x @ sae.W_enc + sae.b_gate) > 0
        return gate * torch.relu(x @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag)
    pre = x @ sae.W_enc + sae.b_enc
    if sae.architecture == "jumprelu":
        return torch.relu(pre) * (pre > sae.threshold)
    if sae.architecture == "topk":
        values, idx = pre.topk(min(sae.k, sae.d_sae), dim=-1)
        return torch.zeros_like(pre).scatter_(-1, idx, values.relu())
    return torch.relu(pre)


def encode(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """The model's activation x [..., d_in] -> feature activations [..., d_sae]."""
    return encode_prepared(sae, prepare(sae, x)[0])


def reconstruct(sae: SparseAutoencoder, x: torch.Tensor, f: torch.Tensor | None = None) -> torch.Tensor:
    """The SAE's reconstruction of x [..., d_in] in the activation's own space, from the features
    f [..., d_sae] (default: x's own). x - reconstruct(x) is the error term."""
    prepared, undo = prepare(sae, x)
    if f is None:
        f = encode_prepared(sae, prepared)
    return unprepare(sae, f @ sae.W_dec + sae.b_dec, undo)


def directions(sae: SparseAutoencoder, x: torch.Tensor, features) -> torch.Tensor:
    """[..., feature, d_in]: what one unit of each feature adds to the activation x [..., d_in] in
    the model's space (W_dec's row, times the normalisation's scale at x where it has one)."""
    _, (_, _, scale) = prepare(sae, x)
    rows = sae.W_dec[torch.as_tensor(features, dtype=torch.long)]  # [feature, d_in]
    return rows.expand(*x.shape[:-1], *rows.shape) if scale is None else scale[..., None, :] * rows


# ---- loading ----------------------------------------------------------------------------------------------
def _hook(name: str) -> tuple[int, str]:
    m = _HOOK.match(name or "")
    if not m:
        raise SAELoadError(_("This SAE reads “{hook}”; the app applies SAEs to the residual stream "
                             "(blocks.L.hook_resid_pre, hook_resid_mid, hook_resid_post) and to attention "
                             "and MLP outputs (blocks.L.hook_attn_out, hook_mlp_out).").format(hook=name))
    return int(m.group(1)), m.group(2)


def from_sae_lens(sae, *, source: str, sae_id: str | None, name: str, sparsity=None,
                  neuronpedia: str | None = None) -> SparseAutoencoder:
    """Our SparseAutoencoder from a loaded sae-lens SAE: its tensors, its config's conventions."""
    cfg = sae.cfg
    architecture = cfg.architecture()
    if architecture not in ARCHITECTURES:
        raise SAELoadError(_("“{name}” is a {arch} SAE; the app reads standard, gated, JumpReLU and TopK SAEs.").format(
            name=name, arch=architecture))
    if cfg.normalize_activations not in ("none", "expected_average_only_in", "layer_norm", "constant_norm_rescale"):
        raise SAELoadError(_("“{name}” normalises its input by {how}, which the app does not apply.").format(
            name=name, how=cfg.normalize_activations))
    if getattr(cfg, "reshape_activations", "none") != "none":
        raise SAELoadError(_("“{name}” reads the heads' outputs z; the app applies SAEs to the residual stream and "
                             "to attention and MLP outputs.").format(name=name))
    meta = cfg.metadata
    layer, site = _hook(meta.hook_name)
    kwargs = meta.model_from_pretrained_kwargs or {}
    t = lambda v: None if v is None else v.detach().to("cpu", torch.float32).contiguous()  # noqa: E731
    W_enc, b_enc, W_dec = t(sae.W_enc), t(getattr(sae, "b_enc", None)), t(sae.W_dec)
    if architecture == "topk" and getattr(cfg, "rescale_acts_by_decoder_norm", False):
        norms = W_dec.norm(dim=-1).clamp_min(1e-8)  # topk of pre * |W_dec|, decoded as (f / |W_dec|) W_dec
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    return SparseAutoencoder(
        name=name, source=source, sae_id=sae_id, architecture=architecture, hook_name=meta.hook_name, layer=layer,
        site=site, W_enc=W_enc, b_enc=b_enc if b_enc is not None else torch.zeros(W_enc.shape[1]), W_dec=W_dec,
        b_dec=t(sae.b_dec), apply_b_dec_to_input=bool(cfg.apply_b_dec_to_input),
        centre=bool(kwargs.get("center_writing_weights", False)), normalize=cfg.normalize_activations,
        threshold=t(getattr(sae, "threshold", None)), k=getattr(cfg, "k", None), b_gate=t(getattr(sae, "b_gate", None)),
        r_mag=t(getattr(sae, "r_mag", None)), b_mag=t(getattr(sae, "b_mag", None)),
        log_density=t(sparsity), neuronpedia=neuronpedia, model_name=meta.model_name)


@contextlib.contextmanager
def _quiet():
    """sae-lens advises TransformerLens users how to load the model for SAEs with model kwargs; this
    app applies those kwargs itself (see `from_sae_lens`), so that advice is not printed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*This SAE has non-empty model_from_pretrained_kwargs")
        yield


def _local_sparsity(path: Path) -> torch.Tensor | None:
    f = path / "sparsity.safetensors"
    if not f.exists():
        return None
    from safetensors.torch import load_file

    try:
        return load_file(str(f)).get("sparsity")
    except Exception:  # a broken sparsity file only loses the density column
        return None


def load_sae(source: str, sae_id: str | None = None) -> SparseAutoencoder:
    """An SAE from a directory in sae-lens's format, or from a release and id in sae-lens's registry
    (downloaded once into the Hugging Face cache). Raises SAELoadError with a fix."""
    source = (source or "").strip()
    path = Path(source).expanduser()
    try:
        local = len(source.encode()) < 4096 and path.is_dir()
    except OSError:
        local = False
    if local:
        if not (path / "cfg.json").exists() or not (path / "sae_weights.safetensors").exists():
            raise SAELoadError(_("“{name}” is not an SAE in sae-lens's format: it needs cfg.json and "
                                 "sae_weights.safetensors.").format(name=path.name))
        try:
            json.loads((path / "cfg.json").read_text())
            with _quiet():
                from sae_lens import SAE

                sae = SAE.load_from_disk(str(path), device="cpu", dtype="float32")
        except Exception as e:  # a half-written or corrupt file, in any of the many ways it can break
            raise SAELoadError(_("“{name}” could not be read as an SAE ({error}). Save it again with sae-lens's "
                                 "save_model.").format(name=path.name, error=type(e).__name__)) from e
        return from_sae_lens(sae, source=str(path), sae_id=None, name=path.name, sparsity=_local_sparsity(path))
    release = registry().get(source)
    if release is None:
        raise SAELoadError(_("No SAE directory or sae-lens release called “{name}”.").format(name=source[:80]))
    if sae_id not in release["saes"]:
        raise SAELoadError(_("Release “{release}” has no SAE “{sae_id}”.").format(release=source, sae_id=sae_id))
    try:
        with _quiet():
            from sae_lens import SAE

            sae, _cfg, sparsity = SAE.from_pretrained_with_cfg_and_sparsity(source, sae_id, device="cpu")
    except Exception as e:  # no network, the Hub unreachable or blocked, a broken download
        raise SAELoadError(_("Downloading the SAE “{sae_id}” of “{release}” failed ({error}). Without the "
                             "Hugging Face Hub, put the SAE's directory on this machine and give its path.").format(
            sae_id=sae_id, release=source, error=type(e).__name__)) from e
    return from_sae_lens(sae, source=source, sae_id=sae_id, name=f"{source} / {sae_id}", sparsity=sparsity,
                         neuronpedia=release["saes"][sae_id].get("neuronpedia"))


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, dict]:
    """sae-lens's release registry (its pretrained_saes.yaml), read without importing sae-lens:
    release -> {"model", "repo_id", "saes": {sae_id: {"neuronpedia", "l0", ...}}}. Empty without sae-lens."""
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.submodule_search_locations:
        return {}
    yaml_file = Path(list(spec.submodule_search_locations)[0]) / "pretrained_saes.yaml"
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(yaml_file.read_text(), Loader=loader) or {}
    return {name: {"model": r.get("model"), "repo_id": r.get("repo_id"), "links": r.get("links") or {},
                   "saes": {s["id"]: s for s in r.get("saes", [])}} for name, r in data.items()}


def releases_for(model_family: str = "gpt2-small") -> list[str]:
    """The registry's releases for one model (sae-lens names GPT-2 small "gpt2-small")."""
    return sorted(name for name, r in registry().items() if r["model"] == model_family)


def check_fits(lm, sae: SparseAutoencoder) -> None:
    """SAELoadError unless the SAE reads an activation this model has, of the right width."""
    if sae.layer >= lm.n_layer or sae.d_in != lm.d_model:
        raise SAELoadError(_("The SAE “{name}” reads {hook} with {d_in} dimensions; {model} has {n_layer} blocks of "
                             "{d_model}. Load an SAE trained on this model.").format(
            name=sae.name, hook=sae.hook_name, d_in=sae.d_in, model=lm.label, n_layer=lm.n_layer, d_model=lm.d_model))


SITE_LABELS = {"hook_resid_pre": N_("residual stream before block {layer}"),
               "hook_resid_mid": N_("residual stream between attention and MLP of block {layer}"),
               "hook_resid_post": N_("residual stream after block {layer}"),
               "hook_attn_out": N_("attention output of block {layer}"),
               "hook_mlp_out": N_("MLP output of block {layer}")}
