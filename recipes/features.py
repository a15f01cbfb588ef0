"""The views of the Features page: a sparse autoencoder (SAE) rewrites the activation at one layer as
a few active features out of thousands, and these views show which fire on each token, what one
feature means (its card), how faithfully the SAE rebuilds the activation (the error term always
shown), and which features make a prediction (gradient × activation, checked by removal).

Which SAEs a model can have (the bundled model's shipped SAEs, GPT-2 small's public releases from
sae-lens's registry, a directory on disk) is decided here; loading and caching them is ui's. The
top contexts and the exact removals are long work, handed to the page as recipes.LongJob.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from core.cache import LayerArrays
from core.feature_cards import HIST_EDGES, corpus_windows, decoder_tokens, top_contexts
from core.features import (
    FeatureAttribution,
    feature_acts,
    feature_attribution,
    fidelity,
    removal_effects,
    site_activation,
)
from core.interventions import single_token
from core.model import BUNDLED_DIR
from core.ngrams import bundled_text
from core.projection import cache_dir
from core.sae import SITE_LABELS, SITES, registry, releases_for
from core.tokens import bytes_to_display, display_tokens, token_bytes
from core.trace import Trace
from i18n import N_, _
from viz.common import esc, figure_label, format_prob
from viz.features import (
    activation_figure,
    attribution_figure,
    compare_probs_figure,
    contexts_figure,
    fidelity_figure,
    histogram_figure,
    pushes_figure,
    removal_figure,
    robust_max,
    token_bars_figure,
    token_features_figure,
)

from . import Figure, LongJob, Metric, Row, Text, View, md, translated_table
from .prediction import top_name, typed_token  # noqa: F401 (the page picks the target as Inside the prediction does)

VIEWS = [N_("Features per token"), N_("Feature card"), N_("Fidelity"), N_("Which features make the prediction")]
INTROS = dict(zip(VIEWS, [
    N_("Which features fire on each token: a row per feature (the prompt's strongest), a column per token; then "
       "every feature active on one token. Click a cell to pick its token and feature."),
    N_("What one feature means: where it fires in the prompt, the tokens its direction pushes up and down when read "
       "through ln_f and the unembedding, and its strongest contexts in a longer text."),
    N_("How faithfully the SAE rebuilds the activation on this prompt. What it misses, the error term x − x̂, is "
       "part of the model's computation: the prediction changes when the reconstruction replaces the activation."),
    N_("Which features raise the logit of the next token: each feature's effect by gradient × activation (one "
       "backward pass), with the error term's and the rest's parts beside them; then, for the top 10, the exact "
       "effect of taking each out and rerunning the network."),
]))
BUNDLED_NOTE = N_("These are features of the bundled mini GPT-2, not of GPT-2.")
SOURCES = {"bundled": N_("Shipped with the bundled model"), "release": N_("A public SAE for GPT-2 small (sae-lens)"),
           "local": N_("A directory on this machine")}
CORPORA = {"genesis": N_("Genesis (King James Version, bundled)"), "pasted": N_("A text you paste")}
CONTEXT_STEP = N_("{label}: window {done:,} of {total:,}…")
REMOVAL_STEP = N_("{label}: feature {done} of {total}…")
COLUMNS = (N_("feature"), N_("gradient × activation"), N_("exact"), N_("difference"), N_("p with reconstruction"))
BUNDLED_SAES = BUNDLED_DIR.parent / f"{BUNDLED_DIR.name}-saes"
DEFAULT_RELEASE, DEFAULT_SAE_ID = "gpt2-small-res-jb", "blocks.6.hook_resid_pre"
NEURONPEDIA = "https://www.neuronpedia.org"
_HOOK = re.compile(r"^blocks\.(\d+)\.(" + "|".join(SITES) + r")")
TOP_REMOVALS, TOP_BARS, CONTEXT_BEFORE, CONTEXT_AFTER, CONTEXT_CHARS = 10, 20, 16, 10, 44


# ---- which SAEs ---------------------------------------------------------------------------------------
def is_bundled(lm) -> bool:
    return Path(lm.name).resolve() == BUNDLED_DIR.resolve()


def bundled_saes() -> list[str]:
    """The bundled model's shipped SAEs: bundled/mini-gpt2-kjv-saes/<hook>/, by layer."""
    found = [p.parent.name for p in BUNDLED_SAES.glob("*/cfg.json") if _HOOK.match(p.parent.name)]
    return sorted(found, key=lambda h: (int(_HOOK.match(h).group(1)), SITES.index(_HOOK.match(h).group(2))))


def bundled_sae_path(hook: str) -> str:
    return str(BUNDLED_SAES / hook)


def releases(lm) -> list[str]:
    """sae-lens's releases for GPT-2 small, for a model of its shape (12 blocks of 768)."""
    if (lm.n_layer, lm.d_model) != (12, 768):
        return []
    return [r for r in releases_for("gpt2-small") if release_ids(r)]


def release_ids(release: str) -> list[str]:
    """The release's SAEs that read an activation the app applies SAEs to (attention z's are left out)."""
    return [s for s in registry().get(release, {}).get("saes", {}) if _HOOK.match(s)]


def sources(lm, locked: bool) -> list[str]:
    out = ["bundled"] if is_bundled(lm) and bundled_saes() else []
    out += ["release"] if releases(lm) else []
    return out + ([] if locked else ["local"])


def site_label(hook: str) -> str:
    """`blocks.3.hook_resid_pre` -> `residual stream before block 3`."""
    m = _HOOK.match(hook)
    return _(SITE_LABELS[m.group(2)]).format(layer=m.group(1)) if m else hook


def hook_label(hook: str) -> str:
    """`blocks.3.hook_resid_pre` -> `residual stream before block 3 (blocks.3.hook_resid_pre)`."""
    return f"{site_label(hook)} ({hook})" if _HOOK.match(hook) else hook


def default_hook(hooks: list[str], preferred: str = DEFAULT_SAE_ID) -> str | None:
    return preferred if preferred in hooks else (hooks[len(hooks) // 2] if hooks else None)


def no_sae(lm, locked: bool) -> View:
    if is_bundled(lm):
        why = _("The bundled model's SAEs are not in this checkout (bundled/mini-gpt2-kjv-saes).")
    else:
        why = _("{model} has no public SAEs the app knows of (they are for GPT-2 small).").format(model=md(lm.label))
    fix = _("This server loads no SAE from a directory.") if locked else \
        _("Pick *A directory on this machine* and give an SAE saved in sae-lens's format.")
    return View([Text(f"{why} {fix}", "info")])


def describe(lm, sae) -> View:
    arch = sae.architecture + (f", k = {sae.k}" if sae.k else "")
    return View([Text(_("{name}: {d_sae:,} features ({arch}) reading the {site}.").format(
        name=md(sae.name), d_sae=sae.d_sae, arch=arch, site=md(hook_label(sae.hook_name))))])


def intro(lm, view: str) -> Text:
    return Text(_(INTROS[view]) + (" " + _(BUNDLED_NOTE) if is_bundled(lm) else ""))


# ---- features per token -----------------------------------------------------------------------------
def strongest(acts, k: int, skip_first: bool) -> np.ndarray:
    """The k features with the largest activation in the prompt (leaving out position 0 if asked)."""
    rows = np.repeat(np.arange(len(acts.l0)), acts.l0)
    keep = rows >= (1 if skip_first and len(acts.l0) > 1 else 0)
    best = np.zeros(acts.d_sae, dtype=np.float32)
    np.maximum.at(best, acts.indices[keep], acts.values[keep])
    order = np.argsort(-best, kind="stable")[:k]
    return order[best[order] > 0]


def default_feature(lm, t: Trace, sae) -> int:
    """The prompt's strongest feature past its first token (0 if none fires)."""
    top = strongest(feature_acts(lm, t, sae), 1, True)
    return int(top[0]) if len(top) else 0


def per_token(lm, t: Trace, sae, k: int, pos: int, skip_first: bool, on_select=None) -> View:
    """values: features (the heatmap's rows)."""
    acts = feature_acts(lm, t, sae)
    features = strongest(acts, k, skip_first)
    view = View(values={"features": [int(f) for f in features]})
    label = figure_label(lm.label, t.prompt)
    if len(features):
        z = acts.dense(features).T  # [feature, pos]
        title = _("The {k} strongest features ({site}), token by token<br>{label}").format(
            k=len(features), site=esc(site_label(sae.hook_name)), label=label)
        fig = token_features_figure(z, features, t.tokens, title, picked=pos,
                                    zmax=robust_max(z[:, 1:]) if skip_first and t.n_tokens > 1 else None)
        view.add(Figure("feat_heatmap", fig, on_select=on_select, selection_mode="points" if on_select else None))
    else:
        view.add(Text(_("No feature of this SAE fires on the prompt."), "info"))
    ids, values = acts.at(pos)
    token = md(t.tokens[pos])
    view.add(Text(_("On “{token}” (position {pos}): {l0} features active; the error term's norm is {err:.3f}.").format(
        token=token, pos=pos, l0=len(ids), err=float(acts.error_norm[pos]))))
    if len(ids):
        view.add(Figure("feat_token_bars", token_bars_figure(ids[:TOP_BARS], values[:TOP_BARS], _(
            "Features active on “{token}” (position {pos}), the {k} strongest<br>{label}").format(
            token=esc(t.tokens[pos]), pos=pos, k=min(TOP_BARS, len(ids)), label=label))))
    return view


# ---- feature card -------------------------------------------------------------------------------------
def card(lm, t: Trace, sae, feature: int) -> View:
    label = figure_label(lm.label, t.prompt)
    acts = feature_acts(lm, t, sae).dense([feature])[:, 0]
    up, up_v, down, down_v = decoder_tokens(lm, sae, feature, 10)
    fired = np.flatnonzero(acts > 0)
    if len(fired):
        top = fired[np.argsort(-acts[fired])[:5]]
        where = ", ".join(f"“{md(t.tokens[p])}” ({acts[p]:.2f})" for p in top)
        said = _("On this prompt it fires on {n} of {total} tokens, most on {where}.").format(
            n=len(fired), total=t.n_tokens, where=where)
    else:
        said = _("It does not fire on this prompt.")
    view = View([Text(said, "markdown"),
                 Figure("feat_card_prompt", activation_figure(acts, t.tokens, _(
                     "Feature #{feature} across the prompt<br>{label}").format(feature=feature, label=label))),
                 Figure("feat_card_tokens", pushes_figure(
                     display_tokens(lm, up), up_v, display_tokens(lm, down), down_v,
                     _("What feature #{feature}'s direction writes (W_dec · ln_f · W_U) · {model}").format(
                         feature=feature, model=esc(lm.label)), unit=_("logit per unit of activation")))])
    url = neuronpedia_url(sae, feature)
    if url:
        view.add(Text(_("[Open feature #{feature} on Neuronpedia]({url}) (a public SAE: its page there has more "
                        "examples and an explanation).").format(feature=feature, url=url), "markdown"))
    return view


def windows_of(lm, choice: str, pasted: str) -> np.ndarray:
    """[window, pos] token ids of the corpus: the bundled Genesis or the pasted text (at most 100,000 tokens)."""
    text = bundled_text() if choice == "genesis" else pasted
    return corpus_windows(lm, text or "", window=min(128, lm.n_ctx), max_tokens=100_000)


def corpus(lm, choice: str, windows: np.ndarray) -> View:
    """values: name (what the contexts are drawn from); a message when the text is too short."""
    view = View(values={"name": _(CORPORA[choice])})
    if not len(windows):
        view.add(Text(_("Paste a text of at least {n} tokens to find where the feature fires.").format(
            n=min(128, lm.n_ctx)), "info"))
    return view


def contexts_job(lm, sae, windows: np.ndarray, name: str) -> LongJob:
    """Every feature's strongest contexts over the corpus, a batch of windows at a time (kept on disk)."""
    return LongJob(_("Reading {n:,} tokens of {corpus}").format(corpus=name, n=windows.size), len(windows),
                   lambda on_step: top_contexts(lm, sae, windows, on_step=lambda done, total: on_step(done)),
                   work_id=("contexts", lm.name, sae.key, windows.size))


def _readable(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes_to_display(raw)
    return "".join(" ↵ " if c == "\n" else (" " if c in "\t\r" else c) for c in text)


def contexts(lm, sae, feature: int, found, name: str) -> View:
    """The card's corpus part: top contexts (the firing token highlighted), histogram, density, label."""
    values = found.top_values[feature]
    rows = np.flatnonzero(values > 0)
    if not len(rows):
        return View([Text(_("Feature #{feature} never fires on {corpus} ({n:,} tokens).").format(
            feature=feature, corpus=name, n=found.n_tokens), "info")])
    before, token, after, firing = [], [], [], []
    for r in rows:
        w, p = int(found.top_window[feature, r]), int(found.top_pos[feature, r])
        ids = found.windows[w]
        left = _readable(b"".join(token_bytes(lm, ids[max(0, p - CONTEXT_BEFORE):p])))
        right = _readable(b"".join(token_bytes(lm, ids[p + 1:p + 1 + CONTEXT_AFTER])))
        before.append(left if len(left) <= CONTEXT_CHARS else "…" + left[-CONTEXT_CHARS:])
        token.append(_readable(b"".join(token_bytes(lm, [ids[p]]))))
        after.append(right if len(right) <= CONTEXT_CHARS else right[:CONTEXT_CHARS] + "…")
        firing.append(int(ids[p]))
    common = Counter(display_tokens(lm, firing)).most_common(4)
    summary = ", ".join(f"“{md(tok)}” ×{n}" for tok, n in common)
    density = float(found.density[feature])
    help_ = None
    if sae.log_density is not None:
        help_ = _("In the SAE's own training data: {p} of tokens.").format(p=format_prob(10 ** float(
            sae.log_density[feature])))
    return View([
        Text(_("**Label** (a summary of its strongest contexts in {corpus}): fires on {summary}.").format(
            corpus=name, summary=summary), "markdown"),
        Figure("feat_card_contexts", contexts_figure(values[rows], before, token, after, _(
            "Feature #{feature}'s strongest contexts in {corpus} (the token it fires on in red)").format(
            feature=feature, corpus=esc(name)))),
        Row([Metric(_("Fires on"), _("{p} of tokens").format(p=format_prob(density)), help=help_),
             Metric(_("Tokens read"), f"{found.n_tokens:,}"), Metric(_("Strongest activation"), f"{values[0]:.3f}")]),
        Figure("feat_card_hist", histogram_figure(HIST_EDGES, found.hist[feature], found.n_tokens, _(
            "Feature #{feature}'s activations over {corpus}: {n:,} tokens where it fires").format(
            feature=feature, corpus=esc(name), n=int(found.active[feature])))),
    ])


# ---- Neuronpedia: a link always, its explanation only when asked ------------------------------------------
def neuronpedia_url(sae, feature: int, api: bool = False) -> str | None:
    if not sae.neuronpedia:
        return None
    return f"{NEURONPEDIA}/{'api/feature/' if api else ''}{sae.neuronpedia}/{int(feature)}"


def _explanation_file(sae, feature: int) -> Path:
    return cache_dir() / "neuronpedia" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', sae.neuronpedia)}-{int(feature)}.json"


def neuronpedia_cached(sae, feature: int) -> View | None:
    """Neuronpedia's explanations of the feature fetched before (kept on disk), or None."""
    path = _explanation_file(sae, feature) if sae.neuronpedia else None
    if path is None or not path.exists():
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not found:
        return View([Text(_("Neuronpedia has no explanation of this feature yet."))])
    return View([Text(_("Neuronpedia's explanation: {text}").format(text=md("; ".join(found))), "markdown")])


def fetch_neuronpedia(sae, feature: int, timeout: float = 15.0) -> View:
    """Ask Neuronpedia for its explanations of the feature (on a click), keep them on disk."""
    request = urllib.request.Request(neuronpedia_url(sae, feature, api=True), headers={"User-Agent": "inside-gpt2"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            data = json.loads(reply.read(2_000_000))
    except (urllib.error.URLError, OSError, ValueError) as e:
        return View([Text(_("Could not reach Neuronpedia ({error}): this machine may be offline, or the site "
                            "blocked. The link above opens the feature in your browser.").format(
            error=type(e).__name__), "warning")])
    found = [str(x.get("description", "")).strip() for x in (data or {}).get("explanations") or []
             if isinstance(x, dict)]
    path = _explanation_file(sae, feature)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([x for x in found if x][:3], ensure_ascii=False))
    return neuronpedia_cached(sae, feature)


# ---- fidelity -------------------------------------------------------------------------------------------
def _number(value: float, fmt: str = "{:.3f}") -> str:
    """A metric's value; "—" where it needs more than one token (or is not finite)."""
    return fmt.format(value) if np.isfinite(value) else "—"


def fidelity_view(lm, t: Trace, sae, k: int = 10) -> View:
    acts, fid = feature_acts(lm, t, sae), fidelity(lm, t, sae)
    label = figure_label(lm.label, t.prompt)
    norm = site_activation(t, sae).norm(dim=-1).numpy()
    clean, spliced = np.asarray(fid.next_probs_clean, np.float64), np.asarray(fid.next_probs_spliced, np.float64)
    ids = np.union1d(np.argsort(-clean)[:k], np.argsort(-spliced)[:k])
    ids = ids[np.argsort(-np.maximum(clean[ids], spliced[ids]), kind="stable")][:k]
    table = pd.DataFrame({"token": display_tokens(lm, ids), "id": ids.astype(np.int64), "probability": clean[ids],
                          "p with reconstruction": spliced[ids]})  # i18n: skip (English columns, shown translated)
    return View([
        Row([Metric(_("Variance explained"), _number(acts.variance_explained, "{:.1%}"),
                    help=_("1 − |error|² / |x − its mean over the prompt|², over this prompt's tokens.")),
             Metric(_("Active features per token (L0)"), f"{acts.l0.mean():.1f}"),
             Metric(_("Loss, the model's own"), _number(fid.loss_clean), help=_("Mean next-token loss in nats.")),
             Metric(_("Loss with the reconstruction"), _number(fid.loss_spliced),
                    help=_("The same, with x̂ in place of x at every token."))]),
        Figure("feat_fidelity", fidelity_figure(acts.l0, acts.error_norm, norm, t.tokens, _(
            "Active features and the error term per token<br>{label}").format(label=label))),
        Row([translated_table("feat_fidelity_table", table, "sae-fidelity-next-token",
                              formats={"probability": format_prob, "p with reconstruction": format_prob}),  # i18n: skip
             Figure("feat_fidelity_next", compare_probs_figure(table["token"].tolist(), clean[ids], spliced[ids], _(
                 "The next token, with and without the reconstruction<br>{label}").format(label=label)))],
            widths=[2, 3]),
    ])


# ---- which features make the prediction -------------------------------------------------------------------
def minus_token(lm, text: str) -> View:
    """values: minus (a token id, or None)."""
    view = View(values={"minus": None})
    if text:
        try:
            view.values["minus"] = single_token(lm, text)
        except ValueError as e:
            view.add(Text(md(str(e)), "warning"))
    return view


def _attribution(lm, t: Trace, sae, pos: int, target: int, minus: int | None) -> FeatureAttribution:
    """core.features.feature_attribution, kept in the trace's cache (one backward pass per target)."""
    def compute() -> LayerArrays:
        a = feature_attribution(lm, t, sae, target, pos, minus_token=minus)
        return LayerArrays(features=a.features, effect=a.effect, error=np.array(a.error), rest=np.array(a.rest),
                           linearised=np.array(a.linearised), logit=np.array(a.logit), pos=np.array(a.pos))

    got = t.memo(("feature_attribution", sae.key, int(target), pos % t.n_tokens, minus), compute)
    return FeatureAttribution(features=got["features"], effect=got["effect"], error=float(got["error"]),
                              rest=float(got["rest"]), linearised=float(got["linearised"]), logit=float(got["logit"]),
                              pos=int(got["pos"]))


def attribution(lm, t: Trace, sae, pos: int, target: int, minus: int | None) -> View:
    """values: top (the features to remove), estimate (their effects), unit (what is explained)."""
    a = _attribution(lm, t, sae, pos, target, minus)
    name = display_tokens(lm, [target])[0]
    unit = f"logit({name})" + (f" − logit({display_tokens(lm, [minus])[0]})" if minus is not None else "")
    top = a.effect[:TOP_BARS]
    parts = {_("the {n} active features").format(n=len(a.features)): float(a.effect.sum()),
             _("error term"): a.error, _("rest (b_dec, normalisation)"): a.rest,
             _("sum (the linearised total)"): a.linearised}
    title = _("Which features push {unit} after “{token}”<br>{label}").format(
        unit=esc(unit), token=esc(t.tokens[a.pos]), label=figure_label(lm.label, t.prompt))
    view = View([
        Row([Metric(_("The model's {unit}").format(unit=md(unit)), f"{a.logit:.3f}"),
             Metric(_("Linearised total"), f"{a.linearised:.3f}",
                    help=_("The gradient at the SAE's activation · the activation, over positions 0 to {pos}.").format(
                        pos=a.pos)),
             Metric(_("Features + error + rest"), f"{a.effect.sum() + a.error + a.rest:.3f}"),
             Metric(_("Error term's part"), f"{a.error:+.3f}")]),
        Figure("feat_attribution", attribution_figure(a.features[:TOP_BARS], top, parts, title, unit)),
        Text(_("Red pushes {unit} up, blue down. An effect is the feature's activation × its direction · the gradient "
               "(LayerNorm scales frozen), summed over the positions up to {pos}.").format(unit=md(unit), pos=a.pos)),
    ], values={"top": [int(f) for f in a.features[:TOP_REMOVALS]], "estimate": a.effect[:TOP_REMOVALS].tolist(),
               "unit": unit, "pos": a.pos})
    return view


def removal_job(lm, t: Trace, sae, target: int, minus: int | None, pos: int, features: list[int]) -> LongJob:
    """The exact change of each feature's removal (core.features.removal_effects), four features a step."""
    return LongJob(_("Removing each of the top {k} features and rerunning the network").format(k=len(features)),
                   len(features), lambda on_step: removal_effects(lm, t, sae, target, features, pos, minus, batch=4,
                                                                  on_step=on_step),
                   work_id=("removal", t.key, sae.key, target, minus, pos, tuple(features)))


def removals(features: list[int], estimate: list[float], change: np.ndarray, unit: str) -> View:
    exact = -np.asarray(change, dtype=np.float64)  # the logit with the feature minus without it
    table = pd.DataFrame({"feature": [f"#{f}" for f in features], "gradient × activation": estimate, "exact": exact,
                          "difference": exact - np.asarray(estimate)})
    return View([
        Figure("feat_removal", removal_figure(features, np.asarray(estimate), exact, _(
            "Each feature's effect on {unit}: estimated, and exact").format(unit=esc(unit)), unit)),
        Text(_("Exact: {unit} with the feature minus {unit} with its f · W_dec taken out at every position and the "
               "rest of the network rerun. Where the two differ, the network is not linear in that feature.").format(
            unit=md(unit))),
        translated_table("feat_removal_table", table, "sae-feature-removals",
                         formats={c: "{:+.3f}" for c in ("gradient × activation", "exact", "difference")}),
    ])
