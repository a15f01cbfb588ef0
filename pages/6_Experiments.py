"""Experiments: knock parts of GPT-2 out, find which parts matter for a prediction, compare two
prompts, and patch activations from one run into the other.

Every intervention runs on this request's own forward from the prompt's stored residuals
(core.interventions), never on the shared model. Scans and patching, which run many
interventions, ask first when they would take over ~2 s, then show progress and a Stop.
"""
import numpy as np
import streamlit as st

from core.interventions import (
    ablate, answer_tokens, head_ablation_scan, interventions_seconds, pad_to_same_length, patch, prediction_change,
    single_token,
)
from core.next_token import top_k_table
from core.prediction import cached_lens
from core.tokens import display_tokens
from core.trace import trace_ids
from ui.progress import layer_by_layer
from ui import controls
from ui.shell import get_trace, md_escape, setup_trace_page, show_figure, show_table, trace_cache
from ui.state import kept_value
from viz.common import esc, figure_label, format_prob
from viz.experiments import (
    before_after_figure, pattern_difference_figure, patching_figure, scan_figure, surprisal_change_figure,
)
from viz.prediction import lens_grid_figure

LENS_WINDOW = 12  # positions of each prompt's logit lens, side by side
VIEWS = ["Knock out parts", "Which parts matter", "Two prompts", "Patching"]
PAIRS = {"Eiffel Tower / Colosseum": ("The Eiffel Tower is in the city of", "The Colosseum is in the city of"),
         "John and Mary": ("When John and Mary went to the store, John gave a drink to",
                           "When John and Mary went to the store, Mary gave a drink to")}

lm, t = setup_trace_page(
    "Experiments",
    "Looking is half of interpretability; the other half is changing something and watching the prediction move. "
    "Knock out attention heads or MLP neurons, find which ones the prediction depends on, and copy activations "
    "from one prompt's run into another's. Nothing here changes the shared model: each experiment is its own run.",
)
ss = st.session_state
label = figure_label(lm.label, t.prompt)

# Every control is in the link and survives the tabs that do not draw it (ui.controls).
mode = controls.radio(st, "Knock out by setting the part's output to", ["zero", "mean"], key="exp_mode", horizontal=True,
                format_func=lambda m: "zero" if m == "zero" else "its mean over the prompt's positions",
                help="Zero removes the part entirely; the mean keeps its average contribution and removes only what "
                     "depends on this prompt's tokens (usually the gentler, fairer test).")


def add_clicked_head() -> None:
    points = ss["exp_scan_chart"].selection.get("points", [])
    if points:
        cell = (int(round(points[0]["y"])), int(round(points[0]["x"])))
        ss["exp_heads"] = sorted(set(map(tuple, ss.get("exp_heads", kept_value("exp_heads", [])))) | {cell})


tabs = controls.tabs(VIEWS, key="exp_view")

with tabs["Knock out parts"]:
    if tabs["Knock out parts"].open:
        st.caption("Pick heads, whole MLP layers or single MLP neurons; GPT-2 runs again without them. The table and "
                   "bars compare its next-token prediction before and after; the last chart shows, for each token of "
                   "the prompt, how much harder (up) or easier (down) it became to predict.")
        c1, c2, c3 = st.columns([3, 2, 2])
        cells = [(L, h) for L in range(lm.n_layer) for h in range(lm.n_head)]
        heads = controls.multiselect(c1, "Attention heads", cells, key="exp_heads",
                                     format_func=lambda c: f"layer {c[0]}, head {c[1]}")
        mlps = controls.multiselect(c2, "Whole MLP layers", list(range(lm.n_layer)), key="exp_mlps")
        neuron_text = controls.text_input(c3, "MLP neurons (layer:neuron, …)", key="exp_neurons", placeholder="0:17, 5:300")
        neurons, bad = [], []
        for part in filter(None, (p.strip() for p in neuron_text.split(","))):
            layer_s, _, neuron_s = part.partition(":")
            (neurons.append((int(layer_s), int(neuron_s))) if layer_s.strip().isdigit() and neuron_s.strip().isdigit()
             else bad.append(part))
        if bad:
            st.warning(f"Not read as layer:neuron: {md_escape(', '.join(bad))}. Write, for example, 3:1024.")
        if not (heads or mlps or neurons):
            st.info("Pick at least one head, MLP layer or neuron to knock out.")
        else:
            try:
                after = ablate(lm, t, heads=heads, neurons=neurons, mlp_layers=mlps, mode=mode)
            except ValueError as e:
                st.warning(str(e))
                st.stop()
            table = prediction_change(lm, t.next_probs, after.next_probs, 10)
            left, right = st.columns([2, 3])
            with left:
                show_table(table, "exp_change_table", name="ablation-next-token", hide_index=True, width="stretch",
                           formats={"p before": format_prob, "p after": format_prob, "change": "{:+.4f}"})
            with right:
                show_figure(before_after_figure(table["token"].tolist(), table["p before"].to_numpy(),
                                                table["p after"].to_numpy(), f"Next token before and after · {label}"),
                            key="exp_before_after")
            delta = (t.token_logprob - after.token_logprob) / 0.6931471805599453  # ln -> bits, after minus before
            show_figure(surprisal_change_figure(t.tokens, delta, f"Change in surprisal per prompt token · {label}"),
                        key="exp_surprisal_change")

with tabs["Which parts matter"]:
    if tabs["Which parts matter"].open:
        st.caption("Each attention head, and each whole MLP layer, is knocked out alone, and the chart shows how the "
                   "log-probability of one next token changes: blue cells helped GPT-2 predict it, red ones held it "
                   "back. All heads of a layer run as one batched forward.")
        top = display_tokens(lm, [int(t.top_ids[-1, 0])])[0]
        typed = controls.text_input(st, "Next token to explain (empty: GPT-2's top prediction)", key="exp_target",
                                    placeholder=top)
        try:
            target = single_token(lm, typed) if typed else int(t.top_ids[-1, 0])
        except ValueError as e:
            st.warning(str(e))
            st.stop()
        name = display_tokens(lm, [target])[0]
        st.caption(f"Target: {md_escape(name)} (id {target}), now at p = {format_prob(t.next_probs[target])}.")
        scan = layer_by_layer(
            f"Knocking out every head in turn ({lm.n_layer * lm.n_head:,} heads, {lm.n_layer} MLP layers)", lm.n_layer,
            lambda on_layer: head_ablation_scan(lm, t, target, mode=mode, on_layer=on_layer), key="exp_scan",
            estimate_s=interventions_seconds(lm, t.n_tokens, lm.n_head + 1), work_id=(t.key, target, mode))
        if scan is not None:
            show_figure(scan_figure(scan["heads"], scan["mlp"], f"Knocking out one part: change in ln p({esc(name)}) · "
                                    f"{label}", name), key="exp_scan_chart", on_select=add_clicked_head,
                        selection_mode="points")
            st.caption("Click a head to add it to the heads knocked out in the first tab.")


def other_trace():
    other = controls.text_input(st, "Second prompt", key="exp_other", default=PAIRS["Eiffel Tower / Colosseum"][1],
                                max_chars=2000, help="Compared with the sidebar's prompt.")
    cols = st.columns(len(PAIRS))
    for col, (pair, (first, second)) in zip(cols, PAIRS.items()):
        col.button(pair, key=f"exp_pair_{pair}", on_click=ss.update, args=({"prompt": first, "exp_other": second},))
    if not other.strip():
        st.info("Type a second prompt to compare with.")
        st.stop()
    return get_trace(lm, other)


with tabs["Two prompts"]:
    if tabs["Two prompts"].open:
        st.caption("The sidebar's prompt beside a second one: both next-token tables, and, when both have the same "
                   "number of tokens, how one head's attention differs (red: the first prompt's head looks there more).")
        t2 = other_trace()
        left, right = st.columns(2)
        for col, tr, key in ((left, t, "exp_first_table"), (right, t2, "exp_second_table")):
            with col:
                st.caption(f"“{md_escape(tr.prompt[:80])}”")
                show_table(top_k_table(lm, tr, 10), key, name=key.replace("_", "-"), hide_index=True, width="stretch",
                           formats={"probability": format_prob, "logit": "{:.3f}"})
        st.caption("The logit lens of each prompt (its last positions): the token GPT-2 would predict after each "
                   "block, bottom to top, and how sure it is.")
        left, right = st.columns(2)
        for col, tr, key in ((left, t, "exp_first_lens"), (right, t2, "exp_second_lens")):
            positions = np.arange(max(0, tr.n_tokens - LENS_WINDOW), tr.n_tokens)
            lens = cached_lens(lm, tr, positions, 5, None)
            tops = [[display_tokens(lm, lens.top_ids[r, c]) for c in range(len(positions))] for r in range(lm.n_layer + 1)]
            with col:
                show_figure(lens_grid_figure(tops, lens.top_probs, lens.top_probs[..., 0], positions, tr.tokens,
                                             f"Logit lens · {figure_label(lm.label, tr.prompt)}", "top probability"),
                            key=key, name=f"{lm.label} · logit lens of the {key.split('_')[1]} prompt")
        if t.n_tokens != t2.n_tokens:
            st.info(f"The prompts have {t.n_tokens} and {t2.n_tokens} tokens; comparing attention position by "
                    "position needs the same number.")
        else:
            c1, c2 = st.columns(2)
            layer = controls.selectbox(c1, "Layer", range(lm.n_layer), key="exp_layer")
            head = controls.selectbox(c2, "Head", range(lm.n_head), key="exp_head")
            show_figure(pattern_difference_figure(t.pattern(layer, head), t2.pattern(layer, head), t.tokens, t2.tokens,
                                                  f"Layer {layer}, head {head}: first prompt's pattern minus the "
                                                  f"second's · {esc(lm.label)}"), key="exp_pattern_diff")

with tabs["Patching"]:
    if tabs["Patching"].open:
        st.caption("Activation patching: run the second (corrupted) prompt, but copy one activation from the sidebar's "
                   "(clean) prompt's run, and see how much of the clean prediction comes back: 0 = as corrupted, "
                   "1 = as clean, measured on the logit difference between the two runs' answers.")
        t2 = other_trace()
        clean, corrupted = t, t2
        if t.n_tokens != t2.n_tokens:
            st.warning(f"The clean prompt has {t.n_tokens} tokens and the corrupted one {t2.n_tokens}: patching copies "
                       "activations position by position, so they must match. Pick another pair, or pad the shorter "
                       "one with GPT-2's <|endoftext|> token at the start.")
            if not controls.toggle(st, "Pad the shorter prompt at the start", key="exp_pad"):
                st.stop()
            a, b = pad_to_same_length(lm, t.token_ids.tolist(), t2.token_ids.tolist())
            clean = trace_ids(lm, a, prompt=t.prompt, cache=trace_cache())
            corrupted = trace_ids(lm, b, prompt=t2.prompt, cache=trace_cache())
        what = controls.radio(st, "Patch", ["resid", "head"], key="exp_patch_what", horizontal=True,
                        format_func=lambda w: "the residual stream, layer × position" if w == "resid"
                        else "each head's output, layer × head")
        try:
            answers = answer_tokens(clean, corrupted)
            names = display_tokens(lm, list(answers))
            st.caption(f"Answers compared: {md_escape(names[0])} (the clean run's top prediction) against "
                       f"{md_escape(names[1])} (the corrupted run's).")
            copies = clean.n_tokens if what == "resid" else lm.n_head
            res = layer_by_layer("Patching", lm.n_layer,
                                 lambda on_layer: patch(lm, clean, corrupted, what, on_layer=on_layer),
                                 key="exp_patch", estimate_s=interventions_seconds(lm, clean.n_tokens, copies),
                                 work_id=(clean.key, corrupted.key, what))
        except ValueError as e:
            st.warning(str(e))
            st.stop()
        if res is not None:
            x_title, x_labels = ("position", clean.tokens) if what == "resid" else ("head", None)
            show_figure(patching_figure(res["grid"], f"Share of the clean prediction restored by patching · "
                                                     f"{esc(lm.label)}", x_title=x_title, x_labels=x_labels),
                        key="exp_patch_chart")
