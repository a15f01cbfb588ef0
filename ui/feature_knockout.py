"""Experiments › Knock out parts: the sparse-feature controls. A switch (off by default, so the page
never loads an SAE unasked), the Features page's SAE picker (ui.features.choose_sae, whose choices
are shared with that page and kept in the link), which features, and how each is changed. What is
shown and run is built by recipes.feature_knockout."""
from __future__ import annotations

import streamlit as st

from i18n import _
from recipes import feature_knockout as recipe
from ui import controls
from ui.features import choose_sae
from ui.figures import show


def feature_change(lm, t):
    """(the core.features.FeatureChange to make, or None; a note saying what it does)."""
    if not controls.toggle(st, _("Change sparse (SAE) features too"), key="exp_sae",
                           help=_("Loads an SAE, as the Features page does, and changes some of its features "
                                  "inside the run, along with any heads or neurons picked.")):
        return None, ""
    sae = choose_sae(lm)
    if sae is None:
        return None, ""
    show(recipe.describe(lm, sae))
    c1, c2, c3 = st.columns([3, 3, 2], vertical_alignment="bottom")
    text = controls.text_input(c1, _("SAE features (numbers, comma-separated)"), key="exp_features",
                               placeholder=recipe.suggestion(lm, t, sae))
    how = controls.radio(c2, _("Set each feature to"), list(recipe.HOW), key="exp_feat_how", horizontal=True,
                         format_func=lambda h: _(recipe.HOW[h]), help=_(recipe.HOW_HELP))
    amount = None
    if how == "scale":
        amount = controls.number_input(c3, "k", -100.0, 100.0, key="exp_feat_scale", default=2.0, step=0.5)
    elif how == "value":
        amount = controls.number_input(c3, _("Value"), -1000.0, 1000.0, key="exp_feat_value", default=10.0,
                                       step=1.0)
    picked = recipe.picks(lm, t, sae, text)
    show(picked)
    change = recipe.change(sae, picked.values["features"], how, amount)
    return change, (recipe.described(change, how, amount) if change is not None else "")
