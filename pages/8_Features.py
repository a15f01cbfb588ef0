"""Features: GPT-2's activation at one layer rewritten by a sparse autoencoder (SAE) as a few active
features out of thousands, and what they do.

Widgets here, views in recipes.features, the SAE picker, the corpus and the long work in ui.features.
Every control is in the link (ui.controls). Top contexts over a corpus and the exact removals start on
a click, with progress and Stop."""
import streamlit as st

from i18n import N_, _
from recipes import features as recipe
from recipes import md
from recipes.naming import model_name
from ui import controls
from ui import features as page
from ui.figures import show
from ui.shell import setup_trace_page

lm, t = setup_trace_page(
    N_("Features"),
    N_("A neuron of GPT-2 rarely means one thing. A sparse autoencoder (SAE) rewrites the residual stream at one layer "
       "as a sum of a few active *features* out of thousands, most of which do: a feature for verse numbers, for "
       "closing quotes, for words about water. Pick an SAE, then see which features fire on each token, what one "
       "means, how much the SAE misses, and which features make the prediction."),
)
sae = page.choose_sae(lm)
if sae is None:
    st.stop()
show(recipe.describe(lm, sae))
tabs = controls.tabs(recipe.VIEWS, key="feat_view")
for name, tab in tabs.items():
    if tab.open:
        with tab:
            show([recipe.intro(lm, name)])

with tabs["Features per token"]:
    if tabs["Features per token"].open:
        c1, c2, c3 = st.columns([3, 2, 2], vertical_alignment="bottom")
        pos = controls.position(c1, _("Token"), t, key="feat_pos")
        k = controls.slider(c2, _("Features shown"), 5, 50, key="feat_top_k", default=20)
        skip = controls.checkbox(c3, _("Rank them without the first token"), key="feat_skip_first", default=True,
                                 help=_("GPT-2's first position holds a very large residual (the heads rest their "
                                        "attention there); features that fire on it mostly mean “the first token”."))
        view = recipe.per_token(lm, t, sae, k, pos, skip, on_select=page.on_heatmap_click)
        show(view)
        page.card_picker(view.values["features"])

with tabs["Feature card"]:
    if tabs["Feature card"].open:
        c1, _c2 = st.columns([1, 3])
        feature = controls.number_input(c1, _("Feature"), 0, sae.d_sae - 1, key="feat_feature",
                                        default=recipe.default_feature(lm, t, sae))
        show(recipe.card(lm, t, sae, feature))
        page.neuronpedia(sae, feature)
        page.contexts(lm, sae, feature)

with tabs["Fidelity"]:
    if tabs["Fidelity"].open:
        show(recipe.fidelity_view(lm, t, sae))

with tabs["Which features make the prediction"]:
    if tabs["Which features make the prediction"].open:
        c1, c2, c3 = st.columns(3, vertical_alignment="bottom")
        pos = controls.position(c1, _("Position (the prediction after this token)"), t, key="feat_attr_pos")
        chosen = recipe.typed_token(lm, t, pos, controls.text_input(
            c2, _("Token to explain (empty: {model}'s top prediction here)").format(model=md(model_name(lm))),
            key="feat_token",
            placeholder=recipe.top_name(lm, t, pos)))
        minus = recipe.minus_token(lm, controls.text_input(c3, _("Minus a second token (logit difference; empty: "
                                                                 "none)"), key="feat_minus"))
        show(chosen)
        show(minus)
        target, minus_id = chosen.values["target"], minus.values["minus"]
        view = recipe.attribution(lm, t, sae, pos, target, minus_id)
        show(view)
        page.removals(lm, t, sae, view, target, minus_id)
