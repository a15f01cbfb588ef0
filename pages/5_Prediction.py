"""Inside the prediction: why GPT-2 predicts a token and where in the network it was decided.

Widgets here, views in recipes.prediction (computed from the prompt's stored residuals and
cached layers, no forward). Closed tabs cost nothing; the contribution graph, which reads
every block, shows progress and a Stop.
"""
import streamlit as st

from i18n import N_, _
from recipes import md
from recipes import prediction as recipe
from recipes.naming import model_name
from ui import controls
from ui.figures import show
from ui.progress import run_job
from ui.shell import setup_trace_page

lm, t = setup_trace_page(
    N_("Inside the prediction"),
    N_("Why did GPT-2 predict this token, and where in the network was it decided? Each block adds its part to a "
       "running sum, the residual stream; these views read that sum on its way up and split the final prediction "
       "into the parts that wrote it."),
)
ss = st.session_state
# Every control is in the link (ui.controls); a position, layer or neuron the model or prompt lacks goes to the nearest.
# The last token (the prediction Next token shows), and again whenever the prompt changes, unless the link names one.
pos = controls.position(st, _("Position (the prediction after this token)"), t, key="pred_pos")
chosen = recipe.typed_token(lm, t, pos, controls.text_input(
    st, _("Token to explain (empty: {model}'s top prediction here)").format(model=md(model_name(lm))), key="pred_token",
    placeholder=recipe.top_name(lm, t, pos)))
show(chosen)
target, name = chosen.values["target"], chosen.values["name"]
tabs = controls.tabs(recipe.VIEWS, key="pred_view")


with tabs["Logit lens"]:
    if tabs["Logit lens"].open:
        start = recipe.lens_start(t, pos)
        if t.n_tokens > recipe.WINDOW:  # the window moves to the position when it (or the prompt) changes
            controls.follow("pred_lens_start", start, on=(controls.prompt_id(t), pos))
            start = controls.slider(st, _("First position shown"), 0, t.n_tokens - recipe.WINDOW, key="pred_lens_start",
                                    default=start)
        colour_by = controls.radio(st, _("Colour by"), recipe.COLOUR_BY, horizontal=True, key="pred_lens_colour",
                                   format_func=lambda c: recipe.lens_colour_label(c, name))
        show(recipe.lens(lm, t, pos, start, colour_by, target))

with tabs["Attribution"]:
    if tabs["Attribution"].open:
        show([recipe.attribution_intro(name, pos)])
        minus = controls.text_input(st, _("Minus a second token (logit difference; empty: none)"), key="pred_minus")
        view = recipe.attribution(lm, t, pos, target, name, minus)
        show(view)
        top3 = view.values["top3"]
        if st.button(_("Knock out the 3 heads that push it most ({heads}) in Experiments").format(
                heads=", ".join(f"L{L}.H{h}" for L, h in top3)), key="pred_to_experiments"):
            ss.update(exp_heads=top3, exp_view="Knock out parts")  # i18n: skip (the tab's English key)
            st.switch_page("pages/6_Experiments.py")
        show([view.values["table"]])
        neuron_label = _("layer {layer}, neuron {neuron}")
        neuron_labels = {c: neuron_label.format(layer=c[0], neuron=c[1]) for c in view.values["neurons"]}
        pick = st.selectbox(_("Open a neuron"), view.values["neurons"], index=None, key="pred_neuron_pick",
                            placeholder=_("Choose one of the neurons above"), format_func=neuron_labels.get)
        if pick is not None:
            st.button(_("Open it in the Neurons tab"), key="pred_open_neuron", on_click=controls.set_state,
                      args=({"pred_layer": pick[0], "pred_neuron": pick[1], "pred_view": "Neurons"},))  # i18n: skip

with tabs["Neurons"]:
    if tabs["Neurons"].open:
        show([recipe.neurons_intro()])
        c1, c2, c3 = st.columns(3)
        layer = controls.selectbox(c1, _("Layer"), range(lm.n_layer), key="pred_layer", default=lm.n_layer - 1)
        where = controls.radio(c2, _("Most active"), ["here", "anywhere"], key="pred_neuron_where", horizontal=True,
                               format_func=lambda w: _("at position {pos}").format(pos=pos) if w == "here" else
                               _("at any position"))
        neuron = controls.number_input(c3, _("Neuron"), 0, lm.d_mlp - 1, key="pred_neuron")
        show(recipe.neurons(lm, t, layer, pos if where == "here" else None, neuron))

with tabs["What a head writes"]:
    if tabs["What a head writes"].open:
        show([recipe.head_intro(pos)])
        c1, c2 = st.columns(2)
        layer = controls.selectbox(c1, _("Layer"), range(lm.n_layer), key="pred_layer", default=lm.n_layer - 1)
        head = controls.selectbox(c2, _("Head"), range(lm.n_head), key="pred_head")
        show(recipe.head(lm, t, layer, head, pos, target, name))

with tabs["Contribution graph"]:
    if tabs["Contribution graph"].open:
        show([recipe.graph_intro(pos)])
        threshold = controls.slider(st, _("Threshold (share of a state)"), 0.01, 0.5, key="pred_graph_threshold",
                                    default=0.04, step=0.01)
        convention = controls.radio(st, _("Convention"), recipe.GRAPH_CONVENTIONS, key="pred_graph_convention",
                                    horizontal=True, format_func=recipe.graph_convention_label)
        view = run_job(recipe.graph_job(lm, t, pos, threshold, convention), key="pred_graph_run")
        if view is not None:
            show(view)
