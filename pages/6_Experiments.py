"""Experiments: knock parts of GPT-2 out, find which parts matter for a prediction, compare two
prompts, and patch activations from one run into the other. Widgets here, views in
recipes.experiments; every intervention is its own run (core.interventions), never the shared
model. Scans and patching ask first when they would take over ~2 s, then show progress and a Stop."""
from functools import partial

import streamlit as st

from i18n import N_, _
from recipes import experiments as recipe
from recipes import md
from recipes.naming import model_name
from ui import controls
from ui.feature_knockout import feature_change
from ui.figures import show
from ui.progress import run_job
from ui.shell import get_trace, setup_trace_page, trace_cache

lm, t = setup_trace_page(
    N_("Experiments"),
    N_("Looking is half of interpretability; the other half is changing something and watching the prediction move. "
       "Knock out attention heads, MLP neurons or sparse features, find which ones the prediction depends on, and "
       "copy activations from one prompt's run into another's. Nothing here changes the shared model: each "
       "experiment is its own run."),
)
ss = st.session_state

# Every control is in the link and survives the tabs that do not draw it (ui.controls).
mode = controls.radio(st, _("Knock out by setting the part's output to"), list(recipe.MODES), key="exp_mode",
                      horizontal=True, format_func=lambda m: _(recipe.MODES[m]), help=_(recipe.MODE_HELP))
# A click on the scan adds its head to those knocked out; a ui function (a page's own would hold its model).
add_clicked_head = partial(controls.add_clicked, "exp_scan_chart", "exp_heads")


def other_trace():
    other = controls.text_input(st, _("Second prompt"), key="exp_other", default=recipe.SECOND_PROMPT, max_chars=2000,
                                help=_("Compared with the sidebar's prompt."))
    for col, (pair, (first, second)) in zip(st.columns(len(recipe.PAIRS)), recipe.PAIRS.items()):
        col.button(_(pair), key=f"exp_pair_{pair}", on_click=ss.update, args=({"prompt": first, "exp_other": second},))
    if not other.strip():
        st.info(_("Type a second prompt to compare with."))
        st.stop()
    return get_trace(lm, other)


tabs = controls.tabs(recipe.VIEWS, key="exp_view")
for name, tab in tabs.items():
    if tab.open:
        tab.caption(_(recipe.INTROS[name]))

with tabs["Knock out parts"]:
    if tabs["Knock out parts"].open:
        c1, c2, c3 = st.columns([3, 2, 2])
        heads = controls.multiselect(c1, _("Attention heads"), recipe.head_cells(lm), key="exp_heads",
                                     format_func=recipe.head_label, placeholder=_("Choose heads"))
        mlps = controls.multiselect(c2, _("Whole MLP layers"), list(range(lm.n_layer)), key="exp_mlps",
                                    placeholder=_("Choose layers"))
        neurons = controls.text_input(c3, _("MLP neurons (layer:neuron, …)"), key="exp_neurons",
                                      placeholder="0:17, 5:300")
        features, note = feature_change(lm, t)
        view = recipe.knock_out(lm, t, heads, mlps, neurons, mode, features, note)
        if (default := view.values.get("default_head")) is not None:
            st.button(_("Pick {head}").format(head=recipe.head_label(default)), key="exp_pick_default",
                      on_click=ss.update, args=({"exp_heads": [default]},),
                      help=_("Puts the default head among the heads knocked out, as if you had picked it."))
        show(view)

with tabs["Which parts matter"]:
    if tabs["Which parts matter"].open:
        typed = controls.text_input(st, _("Next token to explain (empty: {model}'s top prediction)").format(
                                        model=md(model_name(lm))), key="exp_target",
                                    placeholder=recipe.top_token(lm, t))
        target_view = recipe.scan_target(lm, t, typed)
        show(target_view)
        target = target_view.values["target"]
        scan = None if target is None else run_job(recipe.scan_job(lm, t, target, mode), key="exp_scan")
        if scan is not None:
            show(recipe.scan(lm, t, scan, target, on_select=add_clicked_head))

with tabs["Two prompts"]:
    if tabs["Two prompts"].open:
        t2 = other_trace()
        show(recipe.two_prompts(lm, t, t2))
        if t.n_tokens == t2.n_tokens:
            c1, c2 = st.columns(2)
            layer = controls.selectbox(c1, _("Layer"), range(lm.n_layer), key="exp_layer")
            head = controls.selectbox(c2, _("Head"), range(lm.n_head), key="exp_head")
            show(recipe.pattern_difference(lm, t, t2, layer, head))

with tabs["Patching"]:
    if tabs["Patching"].open:
        t2 = other_trace()
        clean, corrupted = t, t2
        if t.n_tokens != t2.n_tokens:
            pad = controls.toggle(st, _("Pad the shorter prompt at the start"), key="exp_pad")
            show(recipe.lengths_differ(t, t2, pad))
            if not pad:
                st.stop()
            clean, corrupted = recipe.padded(lm, t, t2, trace_cache())
        what = controls.radio(st, _("Patch"), list(recipe.PATCH_WHAT), key="exp_patch_what", horizontal=True,
                              format_func=lambda w: _(recipe.PATCH_WHAT[w]))
        try:
            show(recipe.answers(lm, clean, corrupted))
            res = run_job(recipe.patch_job(lm, clean, corrupted, what), key="exp_patch")
        except ValueError as e:
            st.warning(str(e))
            st.stop()
        if res is not None:
            show(recipe.patching(lm, clean, res, what))
