"""Experiments › Knock out parts, with sparse features: which SAE features to change and how, what
each one is (the tokens its direction writes, Neuronpedia's explanation when fetched before on the
Features page, how strongly it fires on this prompt), and the core.features.FeatureChange that
recipes.experiments.knock_out hands to core.interventions.ablate with the heads and neurons.

The SAE is picked and loaded by ui.features (the Features page's picker, shared): here it is an
argument like the model."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.feature_cards import decoder_tokens
from core.features import FeatureChange, feature_acts
from core.tokens import display_tokens
from core.trace import Trace
from i18n import N_, _

from . import Text, View, md, translated_table
from .features import _explanation_file, describe, strongest  # noqa: F401 (describe: the SAE, for the page)

# How the picked features change: English values in the link, shown through _.
HOW = {"zero": N_("0 (knock out)"), "scale": N_("its activation × k"), "value": N_("a fixed value (clamp)")}
HOW_HELP = N_("Each picked feature is changed at every position of the prompt, along its own direction: "
              "knocked out (its part of the activation taken out), multiplied by k where it fires (k = 2 doubles "
              "it, k = −1 turns it around), or set to one value everywhere (clamped, also where it did not fire). "
              "The table's largest activations help to choose a value.")
COLUMNS = (N_("feature"), N_("writes most"), N_("largest on the prompt"), N_("on the last token"),
           N_("Neuronpedia"))
SUGGESTED = 8  # the prompt's strongest features listed when none is picked


def parse_features(text: str, d_sae: int) -> tuple[list[int], list[str]]:
    """Feature numbers typed as "12, 40" (a leading # is allowed): the numbers read (each once, in
    order) and the parts that are not a feature of this SAE, as typed."""
    picked, bad = [], []
    for part in filter(None, (p.strip() for p in text.split(","))):
        digits = part.removeprefix("#").strip()
        if digits.isdigit() and int(digits) < d_sae:
            if int(digits) not in picked:
                picked.append(int(digits))
        else:
            bad.append(part)
    return picked, bad


def suggestion(lm, t: Trace, sae) -> str:
    """The prompt's three strongest features past its first token, as a placeholder: "12, 40, 7"."""
    return ", ".join(str(int(f)) for f in strongest(feature_acts(lm, t, sae), 3, True))


def features_table(lm, t: Trace, sae, features: list[int]) -> pd.DataFrame:
    """One row per feature: the tokens its direction pushes up most (through ln_f and the unembedding),
    its largest activation on the prompt and on the last token, Neuronpedia's explanation if kept."""
    dense = feature_acts(lm, t, sae).dense(features)  # [pos, feature]
    writes = [" ".join(display_tokens(lm, decoder_tokens(lm, sae, f, 4)[0])) for f in features]
    explained = [explanation(sae, f) for f in features]
    table = pd.DataFrame({"feature": [f"#{f}" for f in features], "writes most": writes,  # i18n: skip (COLUMNS)
                          "largest on the prompt": dense.max(0).astype(np.float64),  # i18n: skip
                          "on the last token": dense[-1].astype(np.float64),  # i18n: skip
                          "Neuronpedia": explained})
    return table if any(explained) else table.drop(columns="Neuronpedia")


def explanation(sae, feature: int) -> str:
    """Neuronpedia's explanation of the feature as plain text (a table cell), when the Features page
    fetched it before (kept on disk); "" otherwise. Nothing is asked of Neuronpedia here."""
    path = _explanation_file(sae, feature) if sae.neuronpedia else None
    try:
        return "; ".join(json.loads(path.read_text())) if path is not None and path.exists() else ""
    except (OSError, ValueError, TypeError):
        return ""


def picks(lm, t: Trace, sae, text: str) -> View:
    """The features picked (or, when none is, the prompt's strongest to pick from) and any typed part
    that is not a feature. values["features"]: the feature numbers picked."""
    features, bad = parse_features(text, sae.d_sae)
    view = View(values={"features": features})
    if bad:
        view.add(Text(_("Not a feature of this SAE (0–{last}): {parts}. Write numbers, for example 12, 40.").format(
            last=sae.d_sae - 1, parts=md(", ".join(bad))), "warning"))
    formats = {"largest on the prompt": "{:.3f}", "on the last token": "{:.3f}"}  # i18n: skip
    if features:
        return view.add(translated_table("exp_feature_table", features_table(lm, t, sae, features),
                                         "knocked-out-features", formats=formats))
    top = [int(f) for f in strongest(feature_acts(lm, t, sae), SUGGESTED, True)]
    if not top:
        return view.add(Text(_("No feature of this SAE fires on the prompt; type a feature's number to clamp it."),
                             "info"))
    return view.add(Text(_("Type the numbers of the features to change. The prompt's strongest features:"), "info"),
                    translated_table("exp_feature_table", features_table(lm, t, sae, top), "strongest-features",
                                     formats=formats))


def change(sae, features: list[int], how: str, amount: float | None) -> FeatureChange | None:
    """The change core.interventions.ablate makes (None when no feature is picked)."""
    if not features:
        return None
    if how == "value":
        return FeatureChange(sae, tuple(features), value=float(amount))
    return FeatureChange(sae, tuple(features), scale=float(amount) if how == "scale" else 0.0)


def described(change_: FeatureChange, how: str, amount: float | None) -> str:
    """What the change does, for the note above the results: "features #12, #40 knocked out"."""
    names = ", ".join(f"#{f}" for f in change_.features)
    if how == "value":
        return _("SAE features {features} clamped to {value:g}").format(features=names, value=amount)
    if how == "scale":
        return _("SAE features {features} multiplied by {k:g}").format(features=names, k=amount)
    return _("SAE features {features} knocked out").format(features=names)
