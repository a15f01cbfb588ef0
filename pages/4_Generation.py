"""Generation: GPT-2 continues the prompt one token at a time; every choice and its table.

Widgets here, views in recipes.generation, long jobs in ui.generation_jobs. Nothing long
starts by itself: Generate (and Run, under Side by side) start the work, which says how far
it is and has a Stop that keeps what was made (ui.progress.stepwise). Every control is in
the link and survives a run that stops before drawing it (ui.controls); every slider
survives a range of one value."""
import streamlit as st

from i18n import N_, _
from recipes import generation as recipe
from recipes import md
from recipes.naming import model_name
from ui import controls
from ui import generation_jobs as jobs
from ui.figures import show
from ui.shell import setup_trace_page

lm, t = setup_trace_page(
    N_("Generation"),
    N_("GPT-2 writes by adding one token at a time: it gives every token a probability, one is picked, "
       "and the longer text goes back in. Always taking the likeliest token (greedy) soon repeats itself; "
       "sampling at a temperature such as 0.8 reads better, and differs with every seed."),
)
show(recipe.model_note(lm))
ids = tuple(int(i) for i in t.token_ids)
room = recipe.room(lm, len(ids))
if room == 0:
    show(recipe.no_room(lm))
    st.stop()

# ---- decoding controls: only those of the chosen method -----------------------------------------
method = controls.radio(st, _("Decoding"), list(recipe.METHODS), key="gen_method", default="sample",
                        format_func=lambda m: _(recipe.METHODS[m]), horizontal=True)
c1, c2, c3, c4 = st.columns(4)
n_new = controls.slider(c1, _("New tokens"), 1, room, key="gen_tokens", default=min(40, room),
                        help=_("At most {max_new}, and never past {model}'s {n_ctx:,} positions.").format(
                            max_new=recipe.MAX_NEW, model=md(model_name(lm)), n_ctx=lm.n_ctx))
sampling, beam = {}, (4, 1.0, False)
if method == "sample":
    sampling = dict(
        temperature=controls.slider(c2, _("Temperature"), 0.0, 2.0, key="gen_temperature", default=0.8, step=0.05,
                                    help=_("Divides the logits: below 1 sharpens the distribution, above 1 flattens "
                                           "it; 0 is greedy.")),
        top_k=controls.number_input(c2, _("Top-k (0 = off)"), 0, lm.d_vocab, key="gen_top_k", default=0,
                                    help=_("Draw from the k likeliest tokens.")),
        top_p=controls.slider(c3, _("Top-p (1 = off)"), 0.05, 1.0, key="gen_top_p", default=1.0, step=0.05,
                              help=_("Draw from the likeliest tokens that together hold this much probability.")),
        seed=controls.number_input(c3, _("Seed"), 0, 2**31 - 1, key="gen_seed", default=0,
                                   help=_("The same seed and settings give the same text, every time.")))
if method == "beam":
    beam = (controls.slider(c2, _("Beams"), 2, 8, key="gen_beams", default=4,
                            help=_("How many partial texts are kept at each step.")),
            controls.number_input(c2, _("Length penalty"), -2.0, 3.0, key="gen_length_penalty", default=1.0, step=0.5,
                                  help=_("A finished beam scores log-probability / length ** penalty (transformers' "
                                         "rule).")),
            controls.selectbox(c3, _("Early stopping"), [False, True, N_("never")], key="gen_early_stopping",
                               help=_("As in transformers: True stops once there are as many finished beams as "
                                      "beams.")))
else:
    sampling["stop_at_eos"] = controls.checkbox(c1, _("Stop at end of text"), key="gen_stop_eos", default=True)
clicked = c4.button(_("Generate"), type="primary", key="gen_run", icon=":material/play_arrow:")

job = jobs.generation(lm, ids, recipe.settings(method, n_new, sampling, beam), start=clicked)
steps = jobs.steps_of(job)
view = recipe.result(lm, ids, job.params, job.items, job.stopped) if job else recipe.not_asked()
show(view)
if view.values.get("running"):
    at_step = controls.slider(st, _("Beams still running after step"), 1, view.values["running"], key="gen_beam_step",
                              default=view.values["running"])
    show(recipe.live_beams(lm, job.items, at_step))

tabs = list(controls.tabs(recipe.TABS, key="gen_tab").values())

with tabs[0]:
    if tabs[0].open and steps:
        loop_n = controls.number_input(st.columns([1, 3])[0], _("Mark repeated phrases of this many tokens"), 2, 12,
                                       key="gen_loop_n", default=4)
        show(recipe.steps(lm, t, steps, job.params["decoding"], int(loop_n)))
        pick = controls.slider(st, _("Show the full table of step"), 1, len(steps), key="gen_detail_step")
        show(recipe.step_detail(lm, t, steps, pick))
    elif tabs[0].open and job is not None and job.params["method"] == "beam":
        st.caption(_(recipe.BEAM_HAS_NO_STEPS))

with tabs[1]:
    if tabs[1].open:
        c1, c2, c3, c4, c5 = st.columns([2, 3, 3, 2, 3], vertical_alignment="bottom")
        n_runs = controls.number_input(c1, _("Samples"), 1, 8, key="gen_sbs_runs", default=5)
        temp = controls.slider(c2, _("Their temperature"), 0.05, 2.0, key="gen_sbs_temperature", default=0.8, step=0.05)
        n_sbs = controls.slider(c3, _("Tokens"), 1, min(60, room), key="gen_sbs_tokens", default=min(20, room))
        seed0 = controls.number_input(c4, _("First seed"), 0, 2**31 - 1, key="gen_sbs_seed", default=0)
        go = c5.button(_("Run side by side"), key="gen_sbs_run", icon=":material/play_arrow:")
        plan = recipe.side_by_side_plan(lm, len(ids), temp, seed0, n_runs, n_sbs)
        show(recipe.side_by_side(lm, t, plan, jobs.side_by_side(lm, ids, plan, start=go)))

with tabs[2]:
    if tabs[2].open:
        c1, c2 = st.columns([3, 1])
        temps = sorted(controls.multiselect(c1, _("Temperatures"), recipe.TEMPS, key="gen_sweep_temps",
                                            default=[0.2, 0.5, 0.8, 1.0, 1.5, 2.0]))
        k = controls.slider(c2, _("Tokens"), 3, 30, key="gen_sweep_k", default=10)
        show(recipe.temperatures(lm, t, temps, k))
