"""Inside the prediction: why GPT-2 predicts a token and where in the network it was decided.

Thin page: core.prediction computes (from the prompt's stored residuals and cached layers,
no forward), viz.prediction draws. Tabs run lazily.
"""
import numpy as np
import streamlit as st

from core.contributions import contribution_graph
from core.interventions import single_token
from core.layers import d_mlp as mlp_width
from core.prediction import (
    cached_lens, direct_logit_attribution, head_writes, neuron_activations, neuron_attribution, neuron_top_tokens,
    token_probs_through_layers, top_neurons,
)
from core.tokens import display_tokens
from ui import controls
from ui.shell import md_escape, setup_trace_page, show_figure, show_table
from viz.attention import head_figure
from viz.common import esc, figure_label
from viz.prediction import (
    attribution_figure, contribution_graph_figure, lens_grid_figure, lens_lines_figure, neuron_strip_figure, pushes_figure,
)

VIEWS = ["Logit lens", "Attribution", "Neurons", "What a head writes", "Contribution graph"]
WINDOW = 24  # positions the lens grid shows at once

lm, t = setup_trace_page(
    "Inside the prediction",
    "Why did GPT-2 predict this token, and where in the network was it decided? Each block adds its part to a running "
    "sum, the residual stream; these views read that sum on its way up and split the final prediction into the parts "
    "that wrote it.",
)
ss = st.session_state
label = figure_label(lm.label, t.prompt)
d_mlp = mlp_width(lm)
# Every control is in the link (ui.controls); a position, layer or neuron the model or prompt lacks goes to the nearest.
pos = controls.selectbox(st, "Position (the prediction after this token)", range(t.n_tokens), key="pred_pos",
                         default=t.n_tokens - 1, format_func=lambda i: f"{i}: {t.tokens[i]}")
top_id = int(t.top_ids[pos, 0])
typed = controls.text_input(st, "Token to explain (empty: GPT-2's top prediction here)", key="pred_token",
                            placeholder=display_tokens(lm, [top_id])[0])
try:
    target = single_token(lm, typed) if typed else top_id
except ValueError as e:
    st.warning(str(e))
    target = top_id
name = display_tokens(lm, [target])[0]
tabs = controls.tabs(VIEWS, key="pred_view")


def open_neuron(layer: int, neuron: int) -> None:
    ss.update(pred_layer=layer, pred_neuron=neuron, pred_view="Neurons")


with tabs["Logit lens"]:
    if tabs["Logit lens"].open:
        st.caption("Read the residual stream as if the network stopped after each block: each cell is the token GPT-2 "
                   "would predict there (bottom row: from the embeddings alone; top row: its real output). Colour: how "
                   "sure it is, or the probability of the token that actually comes next.")
        start = max(0, min(pos - WINDOW // 2, t.n_tokens - WINDOW))
        if t.n_tokens > WINDOW:
            start = controls.slider(st, "First position shown", 0, t.n_tokens - WINDOW, key="pred_lens_start",
                                    default=start)
        positions = np.arange(start, min(start + WINDOW, t.n_tokens))
        colour_by = controls.radio(st, "Colour by", ["top", "next", "typed"], horizontal=True, key="pred_lens_colour",
                             format_func={"top": "probability of the top token", "next": "probability of the actual "
                                          "next token", "typed": f"probability of {name}"}.get)
        lens = cached_lens(lm, t, positions, 5, target if colour_by == "typed" else None)
        tops = [[display_tokens(lm, lens.top_ids[r, c]) for c in range(len(positions))] for r in range(t.n_layer + 1)]
        colour = lens.top_probs[..., 0] if colour_by == "top" else np.nan_to_num(lens.target_probs)
        show_figure(lens_grid_figure(tops, lens.top_probs, colour, positions, t.tokens, f"Logit lens · {label}",
                                     "top probability" if colour_by == "top" else "probability"), key="pred_lens")
        final = display_tokens(lm, t.top_ids[pos, :5])
        show_figure(lens_lines_figure(token_probs_through_layers(lm, t, pos, t.top_ids[pos, :5]), final,
                                      f"After “{esc(t.tokens[pos])}”: the final top 5 through the layers · "
                                      f"{esc(lm.label)}"), key="pred_lens_lines")

with tabs["Attribution"]:
    if tabs["Attribution"].open:
        st.caption(f"How much each head, each MLP and the embeddings push the logit of {md_escape(name)} after "
                   f"position {pos} (direct logit attribution: each part of the final residual read through ln_f, with "
                   "its scale frozen, and the unembedding). The parts add up to the logit itself.")
        other = controls.text_input(st, "Minus a second token (logit difference; empty: none)", key="pred_minus")
        try:
            minus = single_token(lm, other) if other else None
        except ValueError as e:
            st.warning(str(e))
            minus = None
        a = direct_logit_attribution(lm, t, target, pos, minus_token=minus)
        what = f"logit({name})" + (f" − logit({display_tokens(lm, [minus])[0]})" if minus is not None else "")
        c1, c2 = st.columns(2)
        c1.metric(f"The model's {md_escape(what)}", f"{a.logit:.3f}")
        c2.metric("Sum of the parts", f"{a.total:.3f}", help="Every part below plus ln_f's bias term.")
        show_figure(attribution_figure(a.heads, a.mlp, a.attn_bias, a.embed, a.pos_embed, a.ln_bias,
                                       f"Who pushes {esc(what)} after “{esc(t.tokens[pos])}” · {esc(lm.label)}"),
                    key="pred_attribution")
        top3 = [tuple(int(i) for i in np.unravel_index(k, a.heads.shape)) for k in np.argsort(-a.heads, axis=None)[:3]]
        if st.button(f"Knock out the 3 heads that push it most ({', '.join(f'L{L}.H{h}' for L, h in top3)}) in "
                     "Experiments", key="pred_to_experiments"):
            ss.update(exp_heads=top3, exp_view="Knock out parts")
            st.switch_page("pages/6_Experiments.py")
        table = neuron_attribution(lm, t, target, pos, 15, minus_token=minus)
        show_table(table, "pred_neuron_table", name="neurons-by-attribution", hide_index=True, width="stretch",
                   formats={"part of the logit": "{:+.3f}"})
        pick = st.selectbox("Open a neuron", list(zip(table["layer"].tolist(), table["neuron"].tolist())), index=None,
                            key="pred_neuron_pick", placeholder="Choose one of the neurons above",
                            format_func=lambda c: f"layer {c[0]}, neuron {c[1]}")
        if pick is not None:
            st.button("Open it in the Neurons tab", key="pred_open_neuron", on_click=open_neuron, args=pick)

with tabs["Neurons"]:
    if tabs["Neurons"].open:
        st.caption("The MLP neurons most active on the prompt in one layer, their activation token by token, and what "
                   "one neuron writes: the tokens its output row pushes up and down when read through the unembedding.")
        c1, c2, c3 = st.columns(3)
        layer = controls.selectbox(c1, "Layer", range(lm.n_layer), key="pred_layer", default=lm.n_layer - 1)
        where = controls.radio(c2, "Most active", ["here", "anywhere"], key="pred_neuron_where", horizontal=True,
                         format_func=lambda w: f"at position {pos}" if w == "here" else "at any position")
        ids, acts = top_neurons(t, layer, pos if where == "here" else None, 16)
        show_figure(neuron_strip_figure(neuron_activations(t, layer, ids), ids.tolist(), layer, t.tokens,
                                        f"Layer {layer}'s most active neurons across the prompt · {label}"),
                    key="pred_neuron_strip")
        neuron = controls.number_input(c3, "Neuron", 0, d_mlp - 1, key="pred_neuron")
        up, up_v, down, down_v = neuron_top_tokens(lm, layer, int(neuron), 12)
        show_figure(pushes_figure(display_tokens(lm, up), up_v, display_tokens(lm, down), down_v,
                                  f"What neuron {neuron} of layer {layer} writes (W_out · W_U) · {esc(lm.label)}",
                                  unit="per unit of activation"), key="pred_neuron_tokens")

with tabs["What a head writes"]:
    if tabs["What a head writes"].open:
        st.caption(f"One head's output at position {pos}, read through ln_f and the unembedding: the tokens it pushes "
                   "up and down there, beside the pattern that decided what it reads.")
        c1, c2 = st.columns(2)
        layer = controls.selectbox(c1, "Layer", range(lm.n_layer), key="pred_layer", default=lm.n_layer - 1)
        head = controls.selectbox(c2, "Head", range(lm.n_head), key="pred_head")
        up, up_v, down, down_v = head_writes(lm, t, layer, head, pos, 12)
        left, right = st.columns(2)
        with left:
            show_figure(pushes_figure(display_tokens(lm, up), up_v, display_tokens(lm, down), down_v,
                                      f"Layer {layer}, head {head} after “{esc(t.tokens[pos])}” · {esc(lm.label)}"),
                        key="pred_head_tokens")
        with right:
            show_figure(head_figure(t.pattern(layer, head), t.tokens, model=lm.label, layer=layer, head=head,
                                    colour="stretch"), key="pred_head_pattern")
        st.caption(f"This head's part of the logit of {md_escape(name)} here: "
                   f"{direct_logit_attribution(lm, t, target, pos).heads[layer, head]:+.3f}.")

with tabs["Contribution graph"]:
    if tabs["Contribution graph"].open:
        st.caption(f"How the prediction after position {pos} was built, block by block: a dot is the residual stream "
                   "at one position and layer; a line is a part that wrote at least the threshold's share of the state "
                   "above it (blue: attention from that position, grey: the residual's own path, orange: the MLP). "
                   "Lower the threshold to see more routes. Share = how close the part is to the whole (Ferrando & "
                   "Voita, 2024).")
        threshold = controls.slider(st, "Threshold (share of a state)", 0.01, 0.5, key="pred_graph_threshold",
                                    default=0.04, step=0.01)
        edges = contribution_graph(lm, t, pos, threshold)
        show_figure(contribution_graph_figure(edges, t.tokens, lm.n_layer, pos,
                                              f"Contribution graph after “{esc(t.tokens[pos])}” · {label}"),
                    key="pred_graph")
