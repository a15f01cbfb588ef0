"""The views of *Inside the prediction*: logit lens, direct logit attribution, MLP neurons,
what a head writes, and the contribution graph. All of them read the trace's stored
residuals and per-layer arrays cached by core; none runs a forward."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.contributions import EVERY_PART, LLMTT, contribution_graph, graph_cached, graph_seconds, graph_trace
from core.interventions import single_token
from core.prediction import (
    cached_lens,
    direct_logit_attribution,
    head_writes,
    neuron_activations,
    neuron_attribution,
    neuron_top_tokens,
    token_probs_through_layers,
    top_neurons,
)
from core.tokens import display_tokens
from core.trace import Trace
from i18n import N_, _
from viz.attention import head_figure
from viz.common import esc, figure_label
from viz.prediction import (
    attribution_figure,
    contribution_graph_figure,
    lens_grid_figure,
    lens_lines_figure,
    neuron_strip_figure,
    pushes_figure,
)

from . import Figure, LongJob, Metric, Row, Text, View, md, translated_table

VIEWS = [N_("Logit lens"), N_("Attribution"), N_("Neurons"), N_("What a head writes"), N_("Contribution graph")]
WINDOW = 24  # positions the lens grid shows at once
COLOUR_BY = ["top", "next", "typed"]  # shown through `lens_colour_label`
# The columns of the neuron table (core.prediction.neuron_attribution), shown through `translated_table`.
COLUMNS = (N_("layer"), N_("neuron"), N_("part of the logit"))


def top_name(lm, t: Trace, pos: int) -> str:
    """GPT-2's top prediction after position `pos`, as shown."""
    return display_tokens(lm, [int(t.top_ids[pos, 0])])[0]


def typed_token(lm, t: Trace, pos: int, typed: str) -> View:
    """The token to explain: the one typed if it is one token, else GPT-2's top prediction at
    `pos` (with a warning saying why). values: target (id) and name (as shown)."""
    target = int(t.top_ids[pos, 0])
    view = View()
    if typed:
        try:
            target = single_token(lm, typed)
        except ValueError as e:
            view.add(Text(md(str(e)), "warning"))
    view.values.update(target=target, name=display_tokens(lm, [target])[0])
    return view


def lens_start(t: Trace, pos: int) -> int:
    """The first position of the lens window that centres `pos`."""
    return max(0, min(pos - WINDOW // 2, t.n_tokens - WINDOW))


def lens_colour_label(choice: str, name: str) -> str:
    if choice == "typed":
        return _("probability of {token}").format(token=name)
    return {"top": _("probability of the top token"), "next": _("probability of the actual next token")}[choice]


def lens(lm, t: Trace, pos: int, start: int, colour_by: str, target: int) -> View:
    label = figure_label(lm.label, t.prompt)
    positions = np.arange(start, min(start + WINDOW, t.n_tokens))
    result = cached_lens(lm, t, positions, 5, target if colour_by == "typed" else None)
    tops = [[display_tokens(lm, result.top_ids[r, c]) for c in range(len(positions))] for r in range(t.n_layer + 1)]
    colour = result.top_probs[..., 0] if colour_by == "top" else np.nan_to_num(result.target_probs)
    final = display_tokens(lm, t.top_ids[pos, :5])
    return View([
        Text(_("Read the residual stream as if the network stopped after each block: each cell is the token GPT-2 "
               "would predict there (bottom row: from the embeddings alone; top row: its real output). Colour: how "
               "sure it is, or the probability of the token that actually comes next.")),
        Figure("pred_lens", lens_grid_figure(tops, result.top_probs, colour, positions, t.tokens,
                                             _("Logit lens · {label}").format(label=label),
                                             _("top probability") if colour_by == "top" else _("probability"))),
        Figure("pred_lens_lines", lens_lines_figure(
            token_probs_through_layers(lm, t, pos, t.top_ids[pos, :5]), final,
            _("After “{token}”: the final top 5 through the layers · {model}").format(token=esc(t.tokens[pos]),
                                                                                       model=esc(lm.label)))),
    ])


def attribution_intro(name: str, pos: int) -> Text:
    return Text(_("How much each head, each MLP and the embeddings push the logit of {token} after position {pos} "
                  "(direct logit attribution: each part of the final residual read through ln_f, with its scale "
                  "frozen, and the unembedding). The parts add up to the logit itself.").format(token=md(name),
                                                                                                 pos=pos))


def attribution(lm, t: Trace, pos: int, target: int, name: str, minus_text: str) -> View:
    """values: top3 (the heads that push it most), neurons (layer, neuron) of the table."""
    view = View()
    minus = None
    if minus_text:
        try:
            minus = single_token(lm, minus_text)
        except ValueError as e:
            view.add(Text(md(str(e)), "warning"))
    a = direct_logit_attribution(lm, t, target, pos, minus_token=minus)
    what = f"logit({name})" + (f" − logit({display_tokens(lm, [minus])[0]})" if minus is not None else "")
    parts = neuron_attribution(lm, t, target, pos, 15, minus_token=minus)
    table = pd.DataFrame({"layer": parts.layers, "neuron": parts.neurons,
                          "part of the logit": parts.parts})  # i18n: skip (English column keys, shown translated)
    view.add(
        Row([Metric(_("The model's {what}").format(what=md(what)), f"{a.logit:.3f}"),
             Metric(_("Sum of the parts"), f"{a.total:.3f}", help=_("Every part below plus ln_f's bias term."))]),
        Figure("pred_attribution", attribution_figure(a.heads, a.mlp, a.attn_bias, a.embed, a.pos_embed, a.ln_bias,
                                                      _("Who pushes {what} after “{token}” · {model}").format(
                                                          what=esc(what), token=esc(t.tokens[pos]),
                                                          model=esc(lm.label)))),
    )
    view.values["top3"] = [tuple(int(i) for i in np.unravel_index(k, a.heads.shape))
                           for k in np.argsort(-a.heads, axis=None)[:3]]
    view.values["table"] = translated_table("pred_neuron_table", table, "neurons-by-attribution",
                                            formats={"part of the logit": "{:+.3f}"})  # i18n: skip (the English column)
    view.values["neurons"] = list(zip(table["layer"].tolist(), table["neuron"].tolist()))
    return view


def neurons_intro() -> Text:
    return Text(_("The MLP neurons most active on the prompt in one layer, their activation token by token, and what "
                  "one neuron writes: the tokens its output row pushes up and down when read through the unembedding."))


def neurons(lm, t: Trace, layer: int, pos: int | None, neuron: int) -> View:
    """`pos` None: the neurons most active anywhere in the prompt."""
    label = figure_label(lm.label, t.prompt)
    ids, _values = top_neurons(t, layer, pos, 16)
    up, up_v, down, down_v = neuron_top_tokens(lm, layer, int(neuron), 12)
    return View([
        Figure("pred_neuron_strip", neuron_strip_figure(
            neuron_activations(t, layer, ids), ids.tolist(), layer, t.tokens,
            _("Layer {layer}'s most active neurons across the prompt · {label}").format(layer=layer, label=label))),
        Figure("pred_neuron_tokens", pushes_figure(display_tokens(lm, up), up_v, display_tokens(lm, down), down_v,
                                                   _("What neuron {neuron} of layer {layer} writes (W_out · W_U) · "
                                                     "{model}").format(neuron=neuron, layer=layer, model=esc(lm.label)),
                                                   unit=_("per unit of activation"))),
    ])


def head_intro(pos: int) -> Text:
    return Text(_("One head's output at position {pos}, read through ln_f and the unembedding: the tokens it pushes "
                  "up and down there, beside the pattern that decided what it reads.").format(pos=pos))


def head(lm, t: Trace, layer: int, head_: int, pos: int, target: int, name: str) -> View:
    up, up_v, down, down_v = head_writes(lm, t, layer, head_, pos, 12)
    part = direct_logit_attribution(lm, t, target, pos).heads[layer, head_]
    return View([
        Row([Figure("pred_head_tokens", pushes_figure(display_tokens(lm, up), up_v, display_tokens(lm, down), down_v,
                                                      _("Layer {layer}, head {head} after “{token}” · {model}").format(
                                                          layer=layer, head=head_, token=esc(t.tokens[pos]),
                                                          model=esc(lm.label)))),
             Figure("pred_head_pattern", head_figure(t.pattern(layer, head_), t.tokens, model=lm.label, layer=layer,
                                                     head=head_, colour="stretch"))]),
        Text(_("This head's part of the logit of {token} here: {part:+.3f}.").format(token=md(name), part=part)),
    ])


def graph_intro(pos: int) -> Text:
    return Text(_("How the prediction after position {pos} was built, block by block: a dot is the residual stream at "
                  "one position and layer; a line is a part that wrote a large enough share of the state above it "
                  "(blue: attention from that position, grey: the residual's own path, orange: the MLP; the rule is "
                  "under the graph). Lower the threshold to see more routes. Share = how close the part is to the "
                  "whole (Ferrando & Voita, 2024).").format(pos=pos))


GRAPH_CONVENTIONS = [EVERY_PART, LLMTT]  # the first is the default (see graph_convention_caption)


def graph_convention_label(convention: str) -> str:
    return {EVERY_PART: _("Every term a part (this app)"),
            LLMTT: _("LLM Transparency Tool (Meta)")}[convention]


def graph_convention_caption(convention: str) -> str:
    """What the convention counts and keeps, and where the two differ."""
    if convention == LLMTT:
        return _("Convention: Meta's LLM Transparency Tool, as its app runs GPT-2 by default. It differs from this "
                 "app's in five places. (1) It reads <|endoftext|> in front of the prompt: that is position 0 here, "
                 "so every position is one more than elsewhere on this page, and every state is a little different. "
                 "(2) The value bias b_V is folded into b_O, as TransformerLens loads GPT-2, so no (head, source) "
                 "part carries it. (3) b_O, with b_V folded in, is in no part and not in the sum that the shares are "
                 "divided by. (4) Every part (each head from each position on its own, the residual, the MLP) whose "
                 "share is at or below the threshold is dropped and the rest of its state rescaled to add up to 1; "
                 "then every line left is drawn (more than 0, where this app keeps a line at the threshold or "
                 "above). (5) The residual and the attention from a position to itself are one edge there, drawn "
                 "here as its two parts. As there, a part's closeness is floored at 0.00001.")
    return _("Convention: every term of a state's sum is a part, so its shares add up to 1: the residual, each head "
             "from each position (its value bias b_V included), the attention's output bias b_O (a part of its own, "
             "not drawn) and, above, the MLP. A line is kept when its share is at least the threshold; shares are "
             "never rescaled; the prompt is read as it was traced, with positions as elsewhere on this page. The "
             "other convention follows Meta's LLM Transparency Tool.")


def graph(lm, t: Trace, pos: int, threshold: float, on_layer=None, convention: str = EVERY_PART) -> View:
    """The graph at `pos` of `t`; for LLMTT drawn on the prompt with <|endoftext|> in front."""
    g = graph_trace(lm, t, convention)
    edges = contribution_graph(lm, t, pos, threshold, on_layer=on_layer, convention=convention)
    shown = pos % t.n_tokens + g.n_tokens - t.n_tokens
    title = (_("Contribution graph (LLM-TT) after “{token}” · {label}") if convention == LLMTT else
             _("Contribution graph after “{token}” · {label}")).format(token=esc(t.tokens[pos]),
                                                                       label=figure_label(lm.label, t.prompt))
    view = View([Figure("pred_graph", contribution_graph_figure(edges, g.tokens, lm.n_layer, shown, title)),
                 Text(graph_convention_caption(convention), "caption")])
    if convention == LLMTT and g is t:
        view.add(Text(_("The prompt fills the model's context, so no <|endoftext|> could be put in front: positions "
                        "are as elsewhere on this page."), "info"))
    return view


def graph_job(lm, t: Trace, pos: int, threshold: float, convention: str = EVERY_PART) -> LongJob:
    """`graph`, one block at a time from the top (each block's shares cached by core)."""
    return LongJob(_("Tracing the prediction down through the blocks"), lm.n_layer,
                   lambda on_layer: graph(lm, t, pos, threshold, on_layer, convention),
                   estimate_s=0.0 if graph_cached(t, pos, convention) else graph_seconds(t),
                   work_id=(t.key, pos, convention))
