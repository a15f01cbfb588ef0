"""Generation: GPT-2 continues the prompt one token at a time; every choice and its table.

Nothing long starts by itself: Generate (and Run, under Side by side) start the work, which
says how far it is and has a Stop that keeps what was made (ui.progress.stepwise). Every
control is in the link and survives a run that stops before drawing it (ui.controls);
every slider survives a range of one value."""
from dataclasses import replace

import streamlit as st

from core.generate import (MAX_NEW, Decoding, beam_search_steps, beams_table, continue_runs, decode_text, eos_ids,
                           entropy_at_temperatures, generate_steps, greedy_and_samples, live_beams_table, max_new_tokens,
                           runs_from_pairs, runs_table, steps_table, steps_view, temperature_sweep)
from core.tokens import display_tokens
from ui import controls
from ui.progress import stepwise
from ui.shell import setup_trace_page, show_figure, show_table
from viz.common import figure_label
from viz.generate import runs_grid, step_chart, temperature_figure, token_strip
from viz.next_token import top_k_bars

lm, t = setup_trace_page(
    "Generation",
    "GPT-2 writes by adding one token at a time: it gives every token a probability, one is picked, "
    "and the longer text goes back in. Always taking the likeliest token (greedy) soon repeats itself; "
    "sampling at a temperature such as 0.8 reads better, and differs with every seed.",
)
ids = tuple(int(i) for i in t.token_ids)
room = max_new_tokens(lm, len(ids), MAX_NEW)
if room == 0:
    st.info(f"The prompt already fills all {lm.n_ctx:,} positions GPT-2 can read, so there is no room to add a token. "
            "Shorten the prompt, or keep its first part only.")
    st.stop()

METHODS = {"greedy": "Greedy (temperature 0)", "sample": "Sample", "beam": "Beam search"}
TABS = ["Step by step", "Side by side", "Temperature"]
TEMPS = [0.0, 0.2, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0]


# ---- decoding controls: only those of the chosen method; every control is in the link (ui.controls) --
method = controls.radio(st, "Decoding", list(METHODS), key="gen_method", default="sample", format_func=METHODS.get,
                        horizontal=True)
c1, c2, c3, c4 = st.columns(4)
n_new = controls.slider(c1, "New tokens", 1, room, key="gen_tokens", default=min(40, room),
                        help=f"At most {MAX_NEW}, and never past GPT-2's {lm.n_ctx:,} positions.")
decoding = Decoding(method="greedy" if method == "greedy" else "sample")
if method == "sample":
    decoding = Decoding(
        temperature=controls.slider(c2, "Temperature", 0.0, 2.0, key="gen_temperature", default=0.8, step=0.05,
                                    help="Divides the logits: below 1 sharpens the distribution, above 1 flattens it; "
                                         "0 is greedy."),
        top_k=controls.number_input(c2, "Top-k (0 = off)", 0, lm.d_vocab, key="gen_top_k", default=0,
                                    help="Draw from the k likeliest tokens."),
        top_p=controls.slider(c3, "Top-p (1 = off)", 0.05, 1.0, key="gen_top_p", default=1.0, step=0.05,
                              help="Draw from the likeliest tokens that together hold this much probability."),
        seed=controls.number_input(c3, "Seed", 0, 2**31 - 1, key="gen_seed", default=0,
                                   help="The same seed and settings give the same text, every time."))
beam = (4, 1.0, False)
if method == "beam":
    beam = (controls.slider(c2, "Beams", 2, 8, key="gen_beams", default=4, help="How many partial texts are kept at each step."),
            controls.number_input(c2, "Length penalty", -2.0, 3.0, key="gen_length_penalty", default=1.0, step=0.5,
                                  help="A finished beam scores log-probability / length ** penalty (transformers' rule)."),
            controls.selectbox(c3, "Early stopping", [False, True, "never"], key="gen_early_stopping",
                               help="As in transformers: True stops once there are as many finished beams as beams."))
else:
    stop_eos = controls.checkbox(c1, "Stop at end of text", key="gen_stop_eos", default=True)
    decoding = replace(decoding, stop_at_eos=stop_eos)
clicked = c4.button("Generate", type="primary", key="gen_run", icon=":material/play_arrow:")

settings = dict(method=method, n_new=int(n_new), decoding=decoding, beam=beam)
prompt_text = decode_text(lm, ids)


def reading(what: str, say):
    return lambda read, n: say(f"{what}: reading the prompt, {read:,} of {n:,} tokens")


def run(job, say):
    p = job.params
    if p["method"] == "beam":
        return beam_search_steps(lm, ids, p["n_new"], *p["beam"], resume=job.items[-1] if job.items else None,
                                 on_prompt=reading("Beam search", say))
    return generate_steps(lm, ids, p["n_new"], p["decoding"], resume=[s.token_id for s in job.items],
                          on_prompt=reading("Generating", say))


def progress(job):
    beam = job.params["method"] == "beam"
    what = f"Beam search with {job.params['beam'][0]} beams" if beam else "Generating"
    if not job.steps:
        return f"{what}: reading the prompt ({len(ids):,} tokens)"
    if beam:
        return f"{what}: step {job.steps} of at most {job.total}, {int(job.items[-1].is_finished.sum())} beams finished"
    return f"{what}: token {job.steps} of {job.total} ({job.steps / max(job.seconds, 1e-9):.1f} tokens/s)"


def best_so_far(job) -> list[int]:
    if job.params["method"] != "beam":
        return [s.token_id for s in job.items]
    if not job.items:
        return []
    result = job.items[-1].result()
    return list(result.hypotheses[0].ids if job.items[-1].done or not result.running else result.running[-1][0][0])


def live(job, slot):
    slot.code(prompt_text + decode_text(lm, best_so_far(job)), language=None, wrap_lines=True)


job = stepwise("gen", (lm.name, ids), run, progress, start=settings if clicked else None,
               total=max_new_tokens(lm, len(ids), settings["n_new"]), live=live, keep_last=method == "beam")
label = figure_label(lm.label, t.prompt)
steps = list(job.items) if job is not None and job.params["method"] != "beam" else []
if job is None:
    st.info("Press **Generate** to continue the prompt. Nothing runs before you ask: on a CPU a long text takes a "
            "while, so the tokens appear as they come, and Stop keeps those made so far.")
elif job.params["method"] == "beam":
    nb, lp, es = job.params["beam"]
    state = job.items[-1] if job.items else None
    result = state.result() if state is not None else None
    if state is None or state.done:
        so_far = "The first row is what transformers' generate(num_beams=…) returns."
    else:
        finished = len(result.hypotheses)
        so_far = (f"Stopped after step {state.step}: the text is the best beam so far; "
                  + ("no beam had finished." if not finished else f"{finished} finished beam{'s' * (finished > 1)} in the table."))
    st.caption(f"Beam search: {nb} beams, length penalty {lp:g}, early stopping {es}. {so_far}")
    st.code(prompt_text + decode_text(lm, best_so_far(job)), language=None, wrap_lines=True)
    if result is not None and result.hypotheses:
        show_table(beams_table(lm, result), key="gen_beams_table", name="beams", hide_index=True, width="stretch", column_config={
            "score": st.column_config.NumberColumn(format="%.4f"), "log-prob": st.column_config.NumberColumn(format="%.3f")})
    if result is not None and result.running:
        at_step = controls.slider(st, "Beams still running after step", 1, len(result.running), key="gen_beam_step",
                                  default=len(result.running))
        show_table(live_beams_table(lm, result.running[at_step - 1]), key="gen_live_beams", name="live-beams",
                   hide_index=True, width="stretch")
elif steps:
    new_ids = [s.token_id for s in steps]
    decoding = job.params["decoding"]
    end = new_ids[-1] in eos_ids(lm) and decoding.stop_at_eos
    note = " (stopped)" if job.stopped else (" (end of text)" if end else "")
    st.caption(f"{len(steps)} tokens{note} · {decoding.describe()}")
    st.code(prompt_text + decode_text(lm, new_ids), language=None, wrap_lines=True)

tabs = list(controls.tabs(TABS, key="gen_tab").values())

with tabs[0]:
    if tabs[0].open and steps:
        loop_n = controls.number_input(st.columns([1, 3])[0], "Mark repeated phrases of this many tokens", 2, 12,
                                       key="gen_loop_n", default=4)
        view = steps_view(lm, steps, job.params["decoding"].greedy, int(loop_n))
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Tokens generated", f"{len(steps):,}")
        c2.metric("Mean p of the chosen token", f"{view.probs.mean():.1%}")
        c3.metric("Mean entropy", f"{view.entropy_bits.mean():.2f} bits")
        c4.metric("Tokens inside a repeat", f"{view.loops.mean():.0%}", help=f"Part of a {int(loop_n)}-token phrase seen earlier in the continuation.")
        show_figure(step_chart(view.tokens, view.probs, view.entropy_bits, view.loops,
                               f"The chosen token's probability and the entropy, step by step · {label}", view.sample_probs), key="gen_steps")
        show_figure(token_strip(view.tokens, view.probs, view.loops, f"The continuation, coloured by GPT-2's probability · {label}"), key="gen_strip")
        st.caption("One row per step: the token picked, how likely GPT-2 thought it (and under the distribution it was "
                   "drawn from), its rank, how many tokens it could have been, and GPT-2's five likeliest candidates.")
        show_table(steps_table(lm, steps, view.loops), key="gen_table", name="generation-steps", hide_index=True, width="stretch", column_config={
            "p (GPT-2)": st.column_config.NumberColumn(format="%.4f"), "p (drawn)": st.column_config.NumberColumn(format="%.4f"),
            "entropy (bits)": st.column_config.NumberColumn(format="%.2f")})
        pick = controls.slider(st, "Show the full table of step", 1, len(steps), key="gen_detail_step")
        s = steps[pick - 1]
        show_figure(top_k_bars(display_tokens(lm, s.top_ids), list(s.top_probs),
                               f"Step {pick}: GPT-2's {len(s.top_ids)} likeliest next tokens · {label}"), key="gen_detail")
    elif tabs[0].open and job is not None and job.params["method"] == "beam":
        st.caption("Beam search keeps several texts at once; pick Greedy or Sample to see one token's table per step.")

with tabs[1]:
    if tabs[1].open:
        c1, c2, c3, c4, c5 = st.columns([2, 3, 3, 2, 3], vertical_alignment="bottom")
        n_runs = controls.number_input(c1, "Samples", 1, 8, key="gen_sbs_runs", default=5)
        temp = controls.slider(c2, "Their temperature", 0.05, 2.0, key="gen_sbs_temperature", default=0.8, step=0.05)
        n_sbs = controls.slider(c3, "Tokens", 1, min(60, room), key="gen_sbs_tokens", default=min(20, room))
        seed0 = controls.number_input(c4, "First seed", 0, 2**31 - 1, key="gen_sbs_seed", default=0)
        go = c5.button("Run side by side", key="gen_sbs_run", icon=":material/play_arrow:")
        seeds = tuple(range(int(seed0), int(seed0) + int(n_runs)))
        labels = ["greedy"] + [f"T {temp:g}, seed {s}" for s in seeds]
        decodings = greedy_and_samples(float(temp), seeds)
        n_eff = max_new_tokens(lm, len(ids), int(n_sbs))

        def sbs_progress(job):
            if not job.items:
                return f"Side by side: reading the prompt ({len(ids):,} tokens)"
            r = job.items[-1][0]
            done = sum(1 for run_, _ in job.items if run_ == r)
            return f"Side by side: run {r + 1} of {len(labels)} ({labels[r]}), token {done} of {n_eff}"

        sbs = stepwise("gen_sbs", (lm.name, ids, n_eff, float(temp), seeds),
                       lambda job, say: continue_runs(lm, ids, n_eff, decodings, runs_from_pairs(job.items, len(decodings)),
                                                      on_prompt=reading("Side by side", say)),
                       sbs_progress, start=True if go else None, total=len(decodings) * n_eff)
        runs = [r for r in runs_from_pairs(list(sbs.items), len(decodings)) if r] if sbs is not None else []
        if sbs is None:
            st.info(f"Greedy and {len(seeds)} samples of {n_eff} tokens each: press **Run side by side** "
                    f"({len(decodings) * n_eff:,} tokens in all; the runs appear as they finish and Stop keeps them).")
        elif runs:
            diverge, table = runs_table(lm, runs, labels[: len(runs)])
            show_figure(runs_grid([display_tokens(lm, r) for r in runs], labels[: len(runs)], diverge,
                                  f"Greedy and {len(runs) - 1} samples side by side · {label}"), key="gen_sbs")
            show_table(table, key="gen_sbs_table", name="side-by-side", hide_index=True, width="stretch")

with tabs[2]:
    if tabs[2].open:
        c1, c2 = st.columns([3, 1])
        temps = sorted(controls.multiselect(c1, "Temperatures", TEMPS, key="gen_sweep_temps",
                                            default=[0.2, 0.5, 0.8, 1.0, 1.5, 2.0]))
        k = controls.slider(c2, "Tokens", 3, 30, key="gen_sweep_k", default=10)
        if temps:
            top_ids, table = temperature_sweep(t.next_logits, temps, int(k))
            show_figure(temperature_figure(display_tokens(lm, top_ids), temps, table,
                                           f"The next token's probabilities at {len(temps)} temperatures · {label}",
                                           entropy_at_temperatures(t.next_logits, temps)), key="gen_sweep")
            st.caption("Sampling at temperature T draws from softmax(logits / T). As T rises the distribution flattens: "
                       "likely tokens lose probability to unlikely ones. T = 0 always takes the likeliest.")
        else:
            st.info("Pick at least one temperature.")
