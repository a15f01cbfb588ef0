"""The Experiments page's views: parts knocked out and the prediction before and after, the scan
of which parts matter for one next token, two prompts side by side, and activation patching.

Every intervention is core.interventions' own run from the prompt's stored residuals, never
the shared model. The scan and patching run many interventions, layer by layer: `scan_job` and
`patch_job` describe them, the page runs them with progress and a Stop (ui.progress) and hands
their results to `scan` and `patching`."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from core.cache import LayerArrays
from core.interventions import (
    ablate,
    answer_tokens,
    head_ablation_scan,
    interventions_seconds,
    pad_to_same_length,
    parse_neurons,
    patch,
    single_token,
    surprisal_change_bits,
)
from core.prediction import cached_lens, direct_logit_attribution
from core.tokens import display_tokens
from core.trace import Trace, trace_ids
from i18n import N_, _
from viz.common import esc, figure_label, format_prob
from viz.experiments import (
    before_after_figure,
    patching_figure,
    pattern_difference_figure,
    scan_figure,
    surprisal_change_figure,
)
from viz.prediction import lens_grid_figure

from . import Figure, LongJob, Row, Text, View, md, translated_table
from .naming import model_name
from .next_token import top_k_table

LENS_WINDOW = 12  # positions of each prompt's logit lens, side by side
# Tab labels, pair buttons, option labels and captions: English values (in the link, in keys), marked here
# for the catalog; the page shows them through _ (`_(MODES[mode])`, `_(INTROS[view])`, …).
VIEWS = [N_("Knock out parts"), N_("Which parts matter"), N_("Two prompts"), N_("Patching")]
PAIRS = {N_("Eiffel Tower / Colosseum"): ("The Eiffel Tower is in the city of",  # i18n: skip
                                          "The Colosseum is in the city of"),  # i18n: skip
         N_("John and Mary"): ("When John and Mary went to the store, John gave a drink to",  # i18n: skip
                               "When John and Mary went to the store, Mary gave a drink to")}  # i18n: skip
SECOND_PROMPT = PAIRS["Eiffel Tower / Colosseum"][1]
MODES = {"zero": N_("zero"), "mean": N_("its mean over the prompt's positions")}
MODE_HELP = N_("Zero removes the part entirely; the mean keeps its average contribution and removes only what depends "
               "on this prompt's tokens (usually the gentler, fairer test).")
PATCH_WHAT = {"resid": N_("the residual stream, layer × position"), "head": N_("each head's output, layer × head")}
INTROS = {  # the caption at the top of each view
    N_("Knock out parts"): N_(
        "Pick heads, whole MLP layers, single MLP neurons or sparse (SAE) features; GPT-2 runs again without "
        "them. The table and bars compare its next-token prediction before and after (the change in percentage "
        "points); the last chart shows, for each token of the prompt, how much harder (up) or easier (down) it "
        "became to predict."),
    N_("Which parts matter"): N_(
        "Each attention head, and each whole MLP layer, is knocked out alone, and the chart shows how "
        "the log-probability of one next token changes: blue cells helped GPT-2 predict it, red ones "
        "held it back. All heads of a layer run as one batched forward."),
    N_("Two prompts"): N_(
        "The sidebar's prompt beside a second one: both next-token tables, and, when both have the same "
        "number of tokens, how one head's attention differs (red: the first prompt's head looks there more)."),
    N_("Patching"): N_(
        "Activation patching: run the second (corrupted) prompt, but copy one activation from the sidebar's "
        "(clean) prompt's run, and see how much of the clean prediction comes back: 0 = as corrupted, "
        "1 = as clean, measured on the logit difference between the two runs' answers."),
}
# The columns of `prediction_change`, shown through `translated_table`.
COLUMNS = (N_("p before"), N_("p after"), N_("change"), N_("logit"))


DEFAULT_MAX_S = 2.0  # the knock-out shown on arrival runs unasked only when it takes less than this


def format_points(change: float) -> str:
    """A change of probability in percentage points, two significant digits as format_prob writes a
    probability (+4.2 pp, −0.31 pp, −0.0012 pp); 0 as "0 pp"."""
    points = float(change) * 100
    if points != points:
        return "—"
    if points == 0:
        return _("{value} pp").format(value="0")
    digits = max(0, 1 - int(np.floor(np.log10(abs(points))))) if abs(points) < 10 else 0
    return _("{value} pp").format(value=f"{points:+.{digits}f}".replace("-", "−"))


def prediction_change(lm, before: np.ndarray, after: np.ndarray, k: int = 10) -> pd.DataFrame:
    """The k likeliest next tokens before and after an intervention (their union, by the larger of
    the two probabilities, from next_probs [vocab] of each run): token, id, p before, p after, change."""
    ids = np.union1d(np.argsort(-before)[:k], np.argsort(-after)[:k])
    ids = ids[np.argsort(-np.maximum(before[ids], after[ids]), kind="stable")]
    return pd.DataFrame({"token": display_tokens(lm, ids), "id": ids.astype(np.int64),
                         "p before": before[ids].astype(np.float64), "p after": after[ids].astype(np.float64),
                         "change": (after[ids] - before[ids]).astype(np.float64)})


def head_cells(lm) -> list[tuple[int, int]]:
    return [(L, h) for L in range(lm.n_layer) for h in range(lm.n_head)]


def head_label(cell: tuple[int, int]) -> str:
    return _("layer {layer}, head {head}").format(layer=cell[0], head=cell[1])


def knock_out(lm, t: Trace, heads: Sequence, mlps: Sequence[int], neuron_text: str, mode: str,
              features=None, features_note: str = "") -> View:
    """The next-token prediction before and after knocking out the parts (neurons typed as
    "layer:neuron, …"; `features` a core.features.FeatureChange, described by `features_note`), and
    each prompt token's change in surprisal. With nothing picked, the default of `default_knock_out`."""
    neurons, bad = parse_neurons(neuron_text)
    view = View()
    if bad:
        view.add(Text(_("Not read as layer:neuron: {parts}. Write, for example, 3:1024.").format(
            parts=md(", ".join(bad))), "warning"))
    if not (heads or mlps or neurons or features):
        return default_knock_out(lm, t, mode, view)
    if features is not None:
        view.add(Text(_("Changed: {what}.").format(what=features_note)))
    return _ablated(lm, t, view, heads=heads, neurons=neurons, mlp_layers=mlps, mode=mode, features=features)


def _ablation(lm, t: Trace, heads=(), neurons=(), mlp_layers=(), mode: str = "zero", features=None) -> LayerArrays:
    """core.interventions.ablate's next_probs [vocab] and token_logprob [pos], kept in the trace's cache:
    a rerun of the page (another widget, the default) does not run the network again."""
    change = None if features is None else (features.sae.key, features.features, features.value, features.scale)
    name = ("exp_ablation", tuple(sorted(set(map(tuple, heads)))), tuple(sorted(set(neurons))),
            tuple(sorted(set(mlp_layers))), mode, change)

    def compute() -> LayerArrays:
        after = ablate(lm, t, heads=heads, neurons=neurons, mlp_layers=mlp_layers, mode=mode, features=features)
        return LayerArrays(next_probs=after.next_probs, token_logprob=after.token_logprob)
    return t.memo(name, compute)


def _ablated(lm, t: Trace, view: View, **parts) -> View:
    try:
        after = _ablation(lm, t, **parts)
    except ValueError as e:
        return view.add(Text(str(e), "warning"))
    table = prediction_change(lm, t.next_probs, after["next_probs"], 10)
    label = figure_label(lm.label, t.prompt)
    bars = before_after_figure(table["token"].tolist(), table["p before"].to_numpy(), table["p after"].to_numpy(),
                               _("Next token before and after · {label}").format(label=label))
    delta = surprisal_change_bits(t.token_logprob, after["token_logprob"])
    return view.add(
        Row([translated_table("exp_change_table", table, "ablation-next-token",
                              formats={"p before": format_prob, "p after": format_prob, "change": format_points}),
             Figure("exp_before_after", bars)], widths=[2, 3]),
        Figure("exp_surprisal_change", surprisal_change_figure(
            t.tokens, delta, _("Change in surprisal per prompt token · {label}").format(label=label))))


def default_head(lm, t: Trace) -> tuple[int, int]:
    """The head that writes most directly toward GPT-2's top next token (direct logit attribution at the
    last position: one query per layer, no extra run)."""
    heads = direct_logit_attribution(lm, t, int(t.top_ids[-1, 0])).heads  # [layer, head]
    L, h = np.unravel_index(int(np.argmax(heads)), heads.shape)
    return int(L), int(h)


def knock_out_seconds(lm, t: Trace, first_layer: int) -> float:
    """About how long one knocked-out run takes: the prompt through blocks first_layer..n_layer-1, then
    the unembedding at every position (for the surprisal chart; 2·d_model·vocab flops a token, as much
    as vocab / (12·d_model) blocks: 5.5 blocks for GPT-2 small, most of the run from a late layer)."""
    all_starts = lm.n_layer * (lm.n_layer + 1) / 2  # interventions_seconds counts a run from every layer
    blocks = lm.n_layer - first_layer + lm.d_vocab / (12 * lm.d_model)
    return interventions_seconds(lm, t.n_tokens, 1) * blocks / all_starts


def default_knock_out(lm, t: Trace, mode: str, view: View | None = None) -> View:
    """What Knock out parts shows before anything is picked: the head of `default_head` knocked out,
    said to be a default; run only when it takes under DEFAULT_MAX_S, else offered.
    values["default_head"]: that head, for the page's button that picks it."""
    view = view if view is not None else View()
    head = default_head(lm, t)
    view.values["default_head"] = head
    note = _("Nothing is picked yet, so this shows a default: {head} knocked out, the head that writes most "
             "directly toward {token}, {model}'s top prediction (direct logit attribution). Pick heads, MLP layers, "
             "neurons or features above to run your own experiment.").format(
        head=head_label(head), token=md(top_token(lm, t)), model=md(model_name(lm)))
    seconds = knock_out_seconds(lm, t, head[0])
    if seconds > DEFAULT_MAX_S:
        return view.add(Text(note + " " + _("It takes about {seconds:.0f} s on this prompt, so it runs only once "
                                            "you pick it with the button above.").format(seconds=seconds), "info"))
    return _ablated(lm, t, view.add(Text(note, "info")), heads=[head], mode=mode)


def top_token(lm, t: Trace) -> str:
    """GPT-2's likeliest next token after the prompt, as shown."""
    return display_tokens(lm, [int(t.top_ids[-1, 0])])[0]


def scan_target(lm, t: Trace, typed: str) -> View:
    """The token the scan explains (typed, or GPT-2's top prediction when empty) and its probability
    now; values["target"]: its id, None when the text is not one token (the view says why)."""
    try:
        target = single_token(lm, typed) if typed else int(t.top_ids[-1, 0])
    except ValueError as e:
        return View([Text(str(e), "warning")], {"target": None})
    name = display_tokens(lm, [target])[0]
    return View([Text(_("Target: {token} (id {id}), now at p = {p}.").format(
        token=md(name), id=target, p=format_prob(t.next_probs[target])))],
                {"target": target})


def scan_job(lm, t: Trace, target: int, mode: str) -> LongJob:
    """core.interventions.head_ablation_scan for `target`, one layer at a time (each kept in the trace's cache)."""
    label = _("Knocking out every head in turn ({heads:,} heads, {layers} MLP layers)").format(
        heads=lm.n_layer * lm.n_head, layers=lm.n_layer)
    return LongJob(label, lm.n_layer, lambda on_layer: head_ablation_scan(lm, t, target, mode=mode, on_layer=on_layer),
                   estimate_s=scan_seconds(lm, t), work_id=(t.key, target, mode))


def scan_seconds(lm, t: Trace) -> float:
    """About how long the scan takes: a copy of the prompt per head of a layer, and one for its MLP."""
    return interventions_seconds(lm, t.n_tokens, lm.n_head + 1)


def scan(lm, t: Trace, result: dict, target: int, on_select=None) -> View:
    """`scan_job`'s result (core.interventions.head_ablation_scan) as one chart (clicking a head calls on_select)."""
    name = display_tokens(lm, [target])[0]
    title = _("Knocking out one part: change in ln p({token}) · {label}").format(
        token=esc(name), label=figure_label(lm.label, t.prompt))
    fig = scan_figure(result["heads"], result["mlp"], title, name)
    return View([Figure("exp_scan_chart", fig, on_select=on_select, selection_mode="points" if on_select else None),
                 Text(_("Click a head to add it to the heads knocked out in the first tab."))])


def _lens_figure(lm, tr: Trace, key: str) -> Figure:
    positions = np.arange(max(0, tr.n_tokens - LENS_WINDOW), tr.n_tokens)
    lens = cached_lens(lm, tr, positions, 5, None)
    tops = [[display_tokens(lm, lens.top_ids[r, c]) for c in range(len(positions))] for r in range(lm.n_layer + 1)]
    fig = lens_grid_figure(tops, lens.top_probs, lens.top_probs[..., 0], positions, tr.tokens,
                           _("Logit lens · {label}").format(label=figure_label(lm.label, tr.prompt)),
                           _("top probability"))
    return Figure(key, fig, name=f"{lm.label} · logit lens of the {key.split('_')[1]} prompt")  # i18n: skip


def two_prompts(lm, t: Trace, t2: Trace) -> View:
    """Both prompts' next-token tables and logit lenses; a note when their lengths differ (the page
    draws the head pickers and `pattern_difference` when they match)."""
    formats = {"probability": format_prob, "logit": "{:.3f}"}
    tables = [[Text(f"“{md(tr.prompt[:80])}”"),
               translated_table(key, top_k_table(lm, tr, 10), key.replace("_", "-"), formats=formats)]
              for tr, key in ((t, "exp_first_table"), (t2, "exp_second_table"))]
    view = View([Row(tables),
                 Text(_("The logit lens of each prompt (its last positions): the token GPT-2 would predict after "
                        "each block, bottom to top, and how sure it is.")),
                 _lens_figure(lm, t, "exp_first_lens"), _lens_figure(lm, t2, "exp_second_lens")])  # one above the
    # other: a lens writes a token in each cell, too narrow to read in half a column
    if t.n_tokens != t2.n_tokens:
        view.add(Text(_("The prompts have {first} and {second} tokens; comparing attention position by position "
                        "needs the same number.").format(first=t.n_tokens, second=t2.n_tokens), "info"))
    return view


def pattern_difference(lm, t: Trace, t2: Trace, layer: int, head: int) -> View:
    fig = pattern_difference_figure(t.pattern(layer, head), t2.pattern(layer, head), t.tokens, t2.tokens,
                                    _("Layer {layer}, head {head}: first prompt's pattern minus the second's · "
                                      "{model}").format(layer=layer, head=head, model=esc(lm.label)))
    return View([Figure("exp_pattern_diff", fig)])


def lengths_differ(clean: Trace, corrupted: Trace, pad: bool = False) -> View:
    """Why the prompts' lengths matter: a warning with the fix, or, once padding is on, what it did."""
    if pad:
        return View([Text(_("The clean prompt has {clean} tokens and the corrupted one {corrupted}; the shorter one "
                             "starts with {n} <|endoftext|> tokens, so both have {total}.").format(
            clean=clean.n_tokens, corrupted=corrupted.n_tokens, n=abs(clean.n_tokens - corrupted.n_tokens),
            total=max(clean.n_tokens, corrupted.n_tokens)))])
    return View([Text(_("The clean prompt has {clean} tokens and the corrupted one {corrupted}: patching copies "
                        "activations position by position, so they must match. Pick another pair, or pad the shorter "
                        "one with GPT-2's <|endoftext|> token at the start.").format(
        clean=clean.n_tokens, corrupted=corrupted.n_tokens), "warning")])


def padded(lm, clean: Trace, corrupted: Trace, cache=None) -> tuple[Trace, Trace]:
    """Both prompts traced again at the same length, <|endoftext|> before the shorter one."""
    a, b = pad_to_same_length(lm, clean.token_ids.tolist(), corrupted.token_ids.tolist())
    return (trace_ids(lm, a, prompt=clean.prompt, cache=cache), trace_ids(lm, b, prompt=corrupted.prompt, cache=cache))


def answers(lm, clean: Trace, corrupted: Trace) -> View:
    """Which two next tokens patching compares."""
    names = display_tokens(lm, list(answer_tokens(clean, corrupted)))
    return View([Text(_("Answers compared: {clean} (the clean run's top prediction) against {corrupted} (the "
                        "corrupted run's).").format(clean=md(names[0]), corrupted=md(names[1])))])


def patching_seconds(lm, clean: Trace, what: str) -> float:
    """About how long patching takes: a copy of the prompt per position (resid) or per head."""
    return interventions_seconds(lm, clean.n_tokens, clean.n_tokens if what == "resid" else lm.n_head)


def patch_job(lm, clean: Trace, corrupted: Trace, what: str) -> LongJob:
    """core.interventions.patch of `what` ("resid" or "head"), one layer at a time."""
    return LongJob(_("Patching"), lm.n_layer, lambda on_layer: patch(lm, clean, corrupted, what, on_layer=on_layer),
                   estimate_s=patching_seconds(lm, clean, what), work_id=(clean.key, corrupted.key, what))


def patching(lm, clean: Trace, result: dict, what: str) -> View:
    """`patch_job`'s result (core.interventions.patch): the share of the clean prediction each copy restores."""
    x_title, x_labels = (_("position"), clean.tokens) if what == "resid" else (_("head"), None)
    return View([Figure("exp_patch_chart", patching_figure(
        result["grid"], _("Share of the clean prediction restored by patching · {model}").format(model=esc(lm.label)),
        x_title=x_title, x_labels=x_labels))])
