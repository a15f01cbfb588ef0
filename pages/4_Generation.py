"""Generation: GPT-2 continues the prompt one token at a time; every choice and its table."""
import time

import numpy as np
import pandas as pd
import streamlit as st

from core.generate import (Decoding, beam_search, beams_table, decode_text, eos_ids, first_divergence, generate_ids,
                           generate_steps, entropy_at_temperatures, max_new_tokens, repeated_ngram_mask, steps_table, temperature_sweep)
from core.tokens import display_tokens
from ui.shell import setup_trace_page, show_figure, show_table, url_state
from viz.common import figure_label
from viz.generate import runs_grid, step_chart, temperature_figure, token_strip
from viz.next_token import top_k_bars

lm, t = setup_trace_page(
    "Generation",
    "GPT-2 writes by adding one token at a time: it gives every token a probability, one is picked, "
    "and the longer text goes back in. Always taking the likeliest token (greedy) soon repeats itself; "
    "sampling at a temperature such as 0.8 reads better, and differs with every seed.",
)

ss = st.session_state
METHODS = {"greedy": "Greedy (temperature 0)", "sample": "Sample", "beam": "Beam search"}
ids = tuple(int(i) for i in t.token_ids)
room = max_new_tokens(lm, len(ids), 200)
if room == 0:
    st.info(f"The prompt already fills all {lm.n_ctx:,} positions GPT-2 can read, so there is no room to add a token. "
            "Shorten the prompt, or keep its first part only.")
    st.stop()


def _clip(lo, hi, cast):
    return lambda raw: min(max(cast(raw), lo), hi)


url_state({"gen_method": (lambda m: m if m in METHODS else None, "sample"), "gen_tokens": (_clip(1, 200, int), 40),
           "gen_temperature": (_clip(0.0, 2.0, float), 0.8), "gen_top_k": (_clip(0, lm.d_vocab, int), 0),
           "gen_top_p": (_clip(0.05, 1.0, float), 1.0), "gen_seed": (_clip(0, 2**31 - 1, int), 0),
           "gen_beams": (_clip(2, 8, int), 4)})
for key, most in (("gen_tokens", min(200, room)), ("gen_sbs_tokens", min(60, room))):
    if ss.get(key, 0) > most:  # a longer prompt leaves less room
        ss[key] = most

# ---- decoding controls: applied together when "Generate" is pressed -----------------------------
with st.form("gen_form", border=True):
    c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
    c1.radio("Decoding", list(METHODS), format_func=METHODS.get, key="gen_method")
    c1.slider("New tokens", 1, min(200, room), key="gen_tokens",
              help=f"At most 200, and never past GPT-2's {lm.n_ctx:,} positions.")
    c2.slider("Temperature", 0.0, 2.0, step=0.05, key="gen_temperature",
              help="Sampling only. Divides the logits: below 1 sharpens the distribution, above 1 flattens it; 0 is greedy.")
    c2.number_input("Top-k (0 = off)", 0, lm.d_vocab, key="gen_top_k",
                    help="Sampling only: draw from the k likeliest tokens.")
    c2.slider("Top-p (1 = off)", 0.05, 1.0, step=0.05, key="gen_top_p",
              help="Sampling only: draw from the likeliest tokens that together hold this much probability.")
    c3.slider("Beams", 2, 8, key="gen_beams", help="Beam search only: how many partial texts are kept at each step.")
    c3.number_input("Length penalty", -2.0, 3.0, 1.0, 0.5, key="gen_length_penalty",
                    help="Beam search only: a finished beam scores log-probability / length ** penalty (transformers' rule).")
    c3.selectbox("Early stopping", [False, True, "never"], key="gen_early_stopping",
                 help="Beam search only, as in transformers: True stops once there are as many finished beams as beams.")
    c4.number_input("Seed", 0, 2**31 - 1, key="gen_seed", help="The same seed and settings give the same text, every time.")
    c4.checkbox("Stop at end of text", True, key="gen_stop_eos")
    submitted = c4.form_submit_button("Generate", type="primary", key="gen_run")
stop_clicked = st.button("Stop", key="gen_stop", help="Stops a generation in progress; the tokens so far are kept.")

method = ss["gen_method"]
decoding = Decoding(method="greedy" if method == "greedy" else "sample", temperature=float(ss["gen_temperature"]),
                    top_k=int(ss["gen_top_k"]), top_p=float(ss["gen_top_p"]), seed=int(ss["gen_seed"]),
                    stop_at_eos=bool(ss["gen_stop_eos"]))
beam_settings = (int(ss["gen_beams"]), float(ss["gen_length_penalty"]), ss["gen_early_stopping"])
n_new = int(ss["gen_tokens"])

# ---- run (streaming) or reuse the result kept in session state -----------------------------------
result = ss.get("gen_result")
if stop_clicked and result is not None and not result["done"]:
    result.update(done=True, stopped=True)
stale = result is None or result["source"] != (lm.name, ids)
if submitted or stale or not result["done"]:
    # Deterministic settings: a run cut short by another click is simply run again, to the same text.
    result = dict(source=(lm.name, ids), method=method, decoding=decoding, beam=None, beam_settings=beam_settings,
                  n_new=n_new, steps=[], done=False, stopped=False)
    ss["gen_result"] = result
    if method == "beam":
        with st.spinner(f"Beam search with {beam_settings[0]} beams…"):
            result["beam"] = beam_search(lm, ids, n_new, *beam_settings)
    else:
        status, text_box = st.empty(), st.empty()
        prompt_text, t0 = decode_text(lm, ids), time.perf_counter()
        for step in generate_steps(lm, ids, n_new, decoding):
            result["steps"].append(step)  # kept as it grows: Stop (a rerun) leaves the tokens so far
            new = [s.token_id for s in result["steps"]]
            status.caption(f"Generating… {len(new)} / {n_new} tokens, {len(new) / (time.perf_counter() - t0):.1f} tokens/s")
            text_box.code(prompt_text + decode_text(lm, new), language=None, wrap_lines=True)
        status.empty()
        text_box.empty()
    result["done"] = True

# ---- the result ---------------------------------------------------------------------------------
label = figure_label(lm.label, t.prompt)
steps = result["steps"]
if result["method"] == "beam":
    beam = result["beam"]
    nb, lp, es = result["beam_settings"]
    st.caption(f"Beam search: {nb} beams, length penalty {lp:g}, early stopping {es}. "
               "The first row is what transformers' generate(num_beams=…) returns.")
    if beam.hypotheses:
        st.code(decode_text(lm, ids) + decode_text(lm, beam.hypotheses[0].ids), language=None, wrap_lines=True)
        show_table(beams_table(lm, beam), key="gen_beams_table", name="beams", hide_index=True, width="stretch", column_config={
            "score": st.column_config.NumberColumn(format="%.4f"), "log-prob": st.column_config.NumberColumn(format="%.3f")})
        at_step = len(beam.running)
        if at_step > 1:
            if ss.get("gen_beam_step", 0) > at_step:  # a shorter search than the last one
                ss["gen_beam_step"] = at_step
            at_step = st.slider("Beams still running after step", 1, at_step, at_step, key="gen_beam_step")
        live = beam.running[at_step - 1]
        show_table(pd.DataFrame({"beam": list(range(1, len(live) + 1)), "log-prob": [s for _, s in live],
                                 "text so far": [decode_text(lm, b) for b, _ in live]}),
                   key="gen_live_beams", name="live-beams", hide_index=True, width="stretch")
elif steps:
    new_ids = [s.token_id for s in steps]
    note = " (stopped)" if result["stopped"] else (" (end of text)" if new_ids[-1] in eos_ids(lm) and result["decoding"].stop_at_eos else "")
    st.caption(f"{len(steps)} tokens{note} · {result['decoding'].describe()}")
    st.code(decode_text(lm, ids) + decode_text(lm, new_ids), language=None, wrap_lines=True)

tabs = st.tabs(["Step by step", "Side by side", "Temperature"], key="gen_tab", on_change="rerun")

with tabs[0]:
    if tabs[0].open is not False and steps and result["method"] != "beam":
        loop_n = st.columns([1, 3])[0].number_input("Mark repeated phrases of this many tokens", 2, 12, 4, key="gen_loop_n")
        loops = repeated_ngram_mask([s.token_id for s in steps], int(loop_n))
        tokens = display_tokens(lm, [s.token_id for s in steps])
        probs = np.array([s.prob for s in steps])
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Tokens generated", f"{len(steps):,}")
        c2.metric("Mean p of the chosen token", f"{probs.mean():.1%}")
        c3.metric("Mean entropy", f"{np.mean([s.entropy_bits for s in steps]):.2f} bits")
        c4.metric("Tokens inside a repeat", f"{loops.mean():.0%}", help=f"Part of a {int(loop_n)}-token phrase seen earlier in the continuation.")
        sampled = None if result["decoding"].greedy else np.array([s.sample_prob for s in steps])
        show_figure(step_chart(tokens, probs, [s.entropy_bits for s in steps], loops,
                               f"The chosen token's probability and the entropy, step by step · {label}", sampled), key="gen_steps")
        show_figure(token_strip(tokens, probs, loops, f"The continuation, coloured by GPT-2's probability · {label}"), key="gen_strip")
        st.caption("One row per step: the token picked, how likely GPT-2 thought it (and under the distribution it was "
                   "drawn from), its rank, how many tokens it could have been, and GPT-2's five likeliest candidates.")
        show_table(steps_table(lm, steps, loops), key="gen_table", name="generation-steps", hide_index=True, width="stretch", column_config={
            "p (GPT-2)": st.column_config.NumberColumn(format="%.4f"), "p (drawn)": st.column_config.NumberColumn(format="%.4f"),
            "entropy (bits)": st.column_config.NumberColumn(format="%.2f")})
        pick = st.slider("Show the full table of step", 1, len(steps), 1, key="gen_detail_step")
        s = steps[pick - 1]
        show_figure(top_k_bars(display_tokens(lm, s.top_ids), np.array(s.top_probs),
                               f"Step {pick}: GPT-2's {len(s.top_ids)} likeliest next tokens · {label}"), key="gen_detail")
    elif tabs[0].open is not False and result["method"] == "beam":
        st.caption("Beam search keeps several texts at once; pick Greedy or Sample to see one token's table per step.")


@st.cache_data(max_entries=16, show_spinner="Generating the runs…")
def runs(name: str, prompt: tuple, n: int, temperature: float, seeds: tuple, _lm) -> list[list[int]]:
    out = [[s.token_id for s in generate_ids(_lm, prompt, n, Decoding(method="greedy", stop_at_eos=False), top=1)]]
    for seed in seeds:
        d = Decoding(temperature=temperature, seed=seed, stop_at_eos=False)
        out.append([s.token_id for s in generate_ids(_lm, prompt, n, d, top=1)])
    return out


with tabs[1]:
    if tabs[1].open is not False:
        c1, c2, c3 = st.columns(3)
        n_runs = c1.number_input("Samples", 1, 8, 5, key="gen_sbs_runs")
        temp = c2.slider("Their temperature", 0.05, 2.0, 0.8, 0.05, key="gen_sbs_temperature")
        n_sbs = c3.slider("Tokens", 1, min(60, room), min(20, room), key="gen_sbs_tokens")
        seed0 = int(ss["gen_seed"])
        seeds = tuple(range(seed0, seed0 + int(n_runs)))
        all_runs = runs(lm.name, ids, int(n_sbs), float(temp), seeds, lm)
        diverge = [None] + [first_divergence(all_runs[0], r) for r in all_runs[1:]]
        labels = ["greedy"] + [f"T {temp:g}, seed {s}" for s in seeds]
        show_figure(runs_grid([display_tokens(lm, r) for r in all_runs], labels, diverge,
                              f"Greedy and {len(seeds)} samples side by side · {label}"), key="gen_sbs")
        show_table(pd.DataFrame({"run": labels, "first step that differs from greedy": [d + 1 if d is not None else None for d in diverge],
                                 "text": [decode_text(lm, r) for r in all_runs]}),
                   key="gen_sbs_table", name="side-by-side", hide_index=True, width="stretch")

with tabs[2]:
    if tabs[2].open is not False:
        c1, c2 = st.columns([3, 1])
        temps = c1.multiselect("Temperatures", [0.0, 0.2, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0], [0.2, 0.5, 0.8, 1.0, 1.5, 2.0],
                               key="gen_sweep_temps")
        k = c2.slider("Tokens", 3, 30, 10, key="gen_sweep_k")
        temps = sorted(temps)
        if temps:
            top_ids, table = temperature_sweep(t.next_logits, temps, int(k))
            show_figure(temperature_figure(display_tokens(lm, top_ids), temps, table,
                                           f"The next token's probabilities at {len(temps)} temperatures · {label}",
                                           entropy_at_temperatures(t.next_logits, temps)), key="gen_sweep")
            st.caption("Sampling at temperature T draws from softmax(logits / T). As T rises the distribution flattens: "
                       "likely tokens lose probability to unlikely ones. T = 0 always takes the likeliest.")
        else:
            st.info("Pick at least one temperature.")
