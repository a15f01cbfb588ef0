"""Steering: add a direction to the residual stream before one block and watch GPT-2 write differently.

Widgets here, views in recipes.steering, the vector and the long jobs in ui.steering_jobs. Every
control is in the link (ui.controls); the examples set them (and the prompt). Generation and the
coefficient sweep start on a click, show progress and stop on Stop, keeping what was made."""
import streamlit as st

from i18n import N_, _
from recipes import steering as recipe
from ui import controls, features
from ui import steering_jobs as jobs
from ui.figures import show
from ui.shell import setup_trace_page

lm, t = setup_trace_page(
    N_("Steering"),
    N_("Take the difference between GPT-2's residual streams for two prompts (“Love” and “Hate”), add it, times a "
       "coefficient, to the residual stream of another prompt before one block, and the text changes tone (Turner "
       "et al. 2023, activation addition). Nothing is trained and the model is not changed: each run is its own."),
)
show(recipe.model_note(lm))
jobs.examples()

kind = controls.radio(st, _("Steering vector"), list(recipe.KINDS), key="steer_kind", horizontal=True,
                      format_func=lambda k: _(recipe.KINDS[k]))
sae = features.choose_sae(lm) if kind == "feature" else None  # the Features page's picker, its controls in the link
if kind == "feature" and sae is None:
    st.stop()
inputs, about = jobs.vector_inputs(lm, t, kind, sae)  # the chosen kind's own controls

c1, c2, c3, c4, c5 = st.columns(5)
if kind == "feature":  # where the SAE reads: not a choice
    layer = about.values["layer"]
    c1.markdown(_("Added before block **{layer}**").format(layer=layer))
else:
    layer = controls.selectbox(c1, _("Block"), range(lm.n_layer), key="steer_layer",
                               default=min(6, lm.n_layer - 1),
                               help=_("The vector is added to the residual stream before this block."))
coefficient = controls.number_input(c2, _("Coefficient"), -recipe.MAX_COEFFICIENT, recipe.MAX_COEFFICIENT,
                                    key="steer_coef", default=5.0, step=0.5,
                                    help=_("0 is the plain run; negative steers the other way."))
made = jobs.steer(lm, t, kind, inputs, layer, coefficient, sae)
show(made)
s = made.values.get("steer")
if s is None:
    st.stop()
plain = made.values["plain"]
room = recipe.room(lm, s)
n_new = controls.slider(c3, _("New tokens"), 1, max(room, 1), key="steer_tokens", default=min(40, room))
temperature = controls.slider(c4, _("Temperature"), 0.0, 2.0, key="steer_temperature", default=1.0, step=0.05,
                              help=_("0 is greedy."))
seed = controls.number_input(c5, _("Seed"), 0, 2**31 - 1, key="steer_seed", default=0,
                             help=_("Both runs draw the same random numbers."))
decoding = dict(n_new=n_new, temperature=temperature, seed=seed)

tabs = controls.tabs(recipe.VIEWS, key="steer_view")
for name, tab in tabs.items():
    if tab.open:
        tab.caption(_(recipe.INTROS[name]))

with tabs["Generation"]:
    if tabs["Generation"].open and room:
        go = st.button(_("Generate"), type="primary", key="steer_run", icon=":material/play_arrow:")
        show(recipe.generation(lm, t, s, jobs.generation(lm, s, decoding, start=go)))
    elif tabs["Generation"].open:
        show(recipe.no_room(lm))

with tabs["Next token"]:
    if tabs["Next token"].open:
        show(recipe.next_token(lm, t, plain, s))

with tabs["Logit lens"]:
    if tabs["Logit lens"].open:
        start = recipe.lens_start(plain)
        if plain.n_tokens > recipe.WINDOW:
            start = controls.slider(st, _("First position shown"), 0, plain.n_tokens - recipe.WINDOW,
                                    key="steer_lens_start", default=start)
        show(recipe.lens(lm, t, plain, s, start))

with tabs["Coefficient sweep"]:
    if tabs["Coefficient sweep"].open and room:
        c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
        word = recipe.sweep_word(lm, plain, t, s, controls.text_input(
            c1, _("Word to follow (empty: the one the steer raises most)"), key="steer_word"))
        show(word)
        n_sweep = controls.slider(c2, _("Tokens per continuation"), 1, min(40, room), key="steer_sweep_tokens",
                                  default=min(20, room))
        go = c3.button(_("Run the sweep"), key="steer_sweep_run", icon=":material/play_arrow:")
        ready = word.values["word"] is not None and s.coefficient != 0
        points = jobs.sweep(lm, s, dict(decoding, word=word.values["word"], n_new=n_sweep), start=go) if ready else None
        show(recipe.sweep(lm, t, s, word.values.get("name", ""), points))
    elif tabs["Coefficient sweep"].open:
        show(recipe.no_room(lm))
