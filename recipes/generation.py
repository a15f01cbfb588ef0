"""The Generation page's views: the text made so far (sampled, greedy or by beam search), each
step's table, greedy and samples side by side, and the next token at several temperatures.

Generation runs as a job of steps (the page's ui.generation_jobs); these views take what a
job made so far, its settings and whether it was stopped, never the job itself."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from core.beam import BeamResult, best_beam_ids
from core.continuations import alternatives, decode_text, first_divergence, steps_view
from core.kv_cache import MAX_NEW, eos_ids, max_new_tokens
from core.model import bundled_model_dir
from core.sampling import (
    Decoding,
    Step,
    entropy_at_temperatures,
    greedy_and_samples,
    runs_from_pairs,
    temperature_sweep,
)
from core.tokens import display_tokens
from core.trace import Trace
from i18n import N_, _, ngettext
from viz.common import esc, figure_label, format_prob
from viz.generate import runs_grid, step_chart, temperature_figure, token_strip
from viz.next_token import top_k_bars

from . import Figure, Metric, Row, Text, View, md, translated_table
from .naming import is_gpt2, model_name

METHODS = {"greedy": N_("Greedy (temperature 0)"), "sample": N_("Sample"), "beam": N_("Beam search")}  # shown with _
TABS = [N_("Step by step"), N_("Side by side"), N_("Temperature")]
TEMPS = [0.0, 0.2, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0]
BEAM_HAS_NO_STEPS = N_("Beam search keeps several texts at once; pick Greedy or Sample to see one token's table per "
                       "step.")


def method_label(method: str) -> str:
    """A decoding method ("greedy", "sample", "beam") as the page shows it."""
    return _(METHODS[method])


def model_note(lm) -> View:
    """Under the page's intro (written about GPT-2): what differs when the loaded model is another."""
    if is_gpt2(lm):
        return View()
    if lm.name == bundled_model_dir():
        return View([Text(_("This is {model}, not GPT-2: a small model ({n_layer} blocks) trained on one book, the "
                            "King James Bible, so its samples are rough. On a prompt unlike its book they break into "
                            "word fragments and stray commas while greedy text falls back on its commonest phrases; "
                            "on a prompt in the Bible's style (“And God said unto Moses,”) they read like verses."
                            ).format(model=md(lm.label), n_layer=lm.n_layer), "info")])
    return View([Text(_("This is {model}, not GPT-2, so the sentence above may not hold: how its samples read depends "
                        "on what it learned, and a small or untrained model's samples can read no better than its "
                        "greedy text at any temperature.").format(model=md(lm.label)), "info")])


def room(lm, n_prompt: int) -> int:
    """How many tokens a run may add after a prompt of `n_prompt` tokens: MAX_NEW, or fewer where
    GPT-2's context ends (0: no room)."""
    return max_new_tokens(lm, n_prompt, MAX_NEW)


def no_room(lm) -> View:
    return View([Text(_("The prompt already fills all {n:,} positions {model} can read, so there is no room to add "
                        "a token. Shorten the prompt, or keep its first part only.").format(
        n=lm.n_ctx, model=md(model_name(lm))), "info")])


def settings(method: str, n_new: int, sampling: dict, beam: tuple) -> dict:
    """A job's params from the form: `sampling` holds the Decoding fields the form drew (temperature,
    top_k, top_p, seed for Sample; stop_at_eos unless Beam search); beam = (beams, length penalty,
    early stopping)."""
    decoding = Decoding(method="greedy" if method == "greedy" else "sample", **sampling)
    return dict(method=method, n_new=int(n_new), decoding=decoding, beam=beam)


def made_ids(method: str, items: Sequence) -> list[int]:
    """The continuation a job has made so far: its steps' tokens, or beam search's best text."""
    if method != "beam":
        return [s.token_id for s in items]
    return best_beam_ids(items[-1] if items else None)


def text_so_far(lm, ids: Sequence[int], method: str, items: Sequence) -> str:
    """The prompt and what the job has made (untrusted text: show it as code)."""
    return decode_text(lm, ids) + decode_text(lm, made_ids(method, items))


def not_asked() -> View:
    return View([Text(_("Press **Generate** to continue the prompt. Nothing runs before you ask: on a CPU a long text "
                        "takes a while, so the tokens appear as they come, and Stop keeps those made so far."),
                      "info")])


def result(lm, ids: Sequence[int], params: dict, items: Sequence, stopped: bool) -> View:
    """What the Generate job with these params (`settings`) made so far. values["running"]: how many
    steps of live beams beam search can show (the page draws their slider, then `live_beams`)."""
    if params["method"] == "beam":
        return _beam_result(lm, ids, params, items)
    if not items:
        return View()
    new_ids = made_ids("sample", items)
    decoding = params["decoding"]
    end = new_ids[-1] in eos_ids(lm) and decoding.stop_at_eos
    n = len(items)
    if stopped:
        made = ngettext("{n} token (stopped) · {decoding}", "{n} tokens (stopped) · {decoding}", n)
    elif end:
        made = ngettext("{n} token (end of text) · {decoding}", "{n} tokens (end of text) · {decoding}", n)
    else:
        made = ngettext("{n} token · {decoding}", "{n} tokens · {decoding}", n)
    return View([Text(made.format(n=len(items), decoding=decoding.describe())),
                 Text(text_so_far(lm, ids, "sample", items), "code")])


def _beam_result(lm, ids, params: dict, items: Sequence) -> View:
    nb, lp, es = params["beam"]
    state = items[-1] if items else None
    res = state.result() if state is not None else None
    if state is None or state.done:
        so_far = _("The first row is what transformers' generate(num_beams=…) returns.")
    elif finished := len(res.hypotheses):
        so_far = ngettext(
            "Stopped after step {step}: the text is the best beam so far; {n} finished beam in the table.",
            "Stopped after step {step}: the text is the best beam so far; {n} finished beams in the table.",
            finished).format(step=state.step, n=finished)
    else:
        so_far = _("Stopped after step {step}: the text is the best beam so far; no beam had finished.").format(
            step=state.step)
    heading = _("Beam search: {beams} beams, length penalty {penalty:g}, early stopping {early}. {so_far}").format(
        beams=nb, penalty=lp, early=es, so_far=so_far)
    view = View([Text(heading), Text(text_so_far(lm, ids, "beam", items), "code")],
                {"running": len(res.running) if res is not None else 0})
    if res is not None and res.hypotheses:
        view.add(translated_table("gen_beams_table", beams_table(lm, res), "beams",
                                  formats={"score": "{:.4f}", "log-prob": "{:.3f}"}))
    return view


def live_beams(lm, items: Sequence, after_step: int) -> View:
    """The beams still running after step `after_step` (1-based) of the last beam search."""
    running = items[-1].result().running
    return View([translated_table("gen_live_beams", live_beams_table(lm, running[after_step - 1]), "live-beams")])


def steps(lm, t: Trace, items: Sequence, decoding: Decoding, loop_n: int) -> View:
    """A sampled or greedy run step by step: summary metrics, the chosen token's probability and
    the entropy per step, the continuation coloured by probability, and every step's table."""
    view, label = steps_view(lm, items, decoding.greedy, loop_n), figure_label(lm.label, t.prompt)
    return View([
        Row([Metric(_("Tokens generated"), f"{len(items):,}"),
             Metric(_("Mean p of the chosen token"), format_prob(view.probs.mean())),
             Metric(_("Mean entropy"), _("{bits:.2f} bits").format(bits=view.entropy_bits.mean())),
             Metric(_("Tokens inside a repeat"), f"{view.loops.mean():.0%}",
                    help=_("Part of a {n}-token phrase seen earlier in the continuation.").format(n=loop_n))]),
        Figure("gen_steps", step_chart(
            view.tokens, view.probs, view.entropy_bits, view.loops,
            _("The chosen token's probability and the entropy, step by step · {label}").format(label=label),
            view.sample_probs, model=esc(model_name(lm)))),
        Figure("gen_strip", token_strip(view.tokens, view.probs, view.loops,
                                        _("The continuation, coloured by {model}'s probability · {label}").format(
                                            model=esc(model_name(lm)), label=label))),
        Text(_("One row per step: the token picked, how likely {model} thought it (p (model)) and how likely under "
               "the distribution it was drawn from (p (drawn)), its rank, how many tokens it could have been, and "
               "{model}'s five likeliest candidates.").format(model=md(model_name(lm)))),
        translated_table("gen_table", steps_table(lm, items, view.loops), "generation-steps",
                         formats={"p (model)": "{:.4f}", "p (drawn)": "{:.4f}", "entropy (bits)": "{:.2f}"}),
    ])


def step_detail(lm, t: Trace, items: Sequence, pick: int) -> View:
    """Step `pick` (1-based): the model's likeliest next tokens there."""
    s = items[pick - 1]
    title = _("Step {step}: {model}'s {k} likeliest next tokens · {label}").format(
        step=pick, model=esc(model_name(lm)), k=len(s.top_ids), label=figure_label(lm.label, t.prompt))
    return View([Figure("gen_detail", top_k_bars(display_tokens(lm, s.top_ids), list(s.top_probs), title))])


def side_by_side_plan(lm, n_prompt: int, temperature: float, first_seed: int, n_samples: int, n_tokens: int) -> dict:
    """Greedy and `n_samples` seeded samples: their seeds, labels, decodings, and the tokens each
    makes (n_tokens, or fewer where the context ends)."""
    seeds = tuple(range(int(first_seed), int(first_seed) + int(n_samples)))
    return dict(temperature=float(temperature), seeds=seeds,
                labels=[_("greedy")] + [_("T {t:g}, seed {seed}").format(t=temperature, seed=s) for s in seeds],
                decodings=greedy_and_samples(float(temperature), seeds),
                n_tokens=max_new_tokens(lm, n_prompt, int(n_tokens)))


def side_by_side(lm, t: Trace, plan: dict, pairs: Sequence | None) -> View:
    """The runs made so far ((run, token id) pairs from core.sampling.continue_runs; None: not asked)."""
    n_runs, n_tokens = len(plan["decodings"]), plan["n_tokens"]
    if pairs is None:
        return View([Text(_("Greedy and {n} samples of {k} tokens each: press **Run side by side** ({total:,} tokens "
                            "in all; the runs appear as they finish and Stop keeps them).").format(
            n=len(plan["seeds"]), k=n_tokens, total=n_runs * n_tokens), "info")])
    runs = [r for r in runs_from_pairs(list(pairs), n_runs) if r]
    if not runs:
        return View()
    labels = plan["labels"][: len(runs)]
    diverge, table = runs_table(lm, runs, labels)
    title = _("Greedy and {n} samples side by side · {label}").format(n=len(runs) - 1,
                                                                     label=figure_label(lm.label, t.prompt))
    return View([Figure("gen_sbs", runs_grid([display_tokens(lm, r) for r in runs], labels, diverge, title)),
                 translated_table("gen_sbs_table", table, "side-by-side")])


def temperatures(lm, t: Trace, temps: Sequence[float], k: int) -> View:
    """The next token's k likeliest tokens at each temperature, and each distribution's entropy."""
    if not temps:
        return View([Text(_("Pick at least one temperature."), "info")])
    top_ids, table = temperature_sweep(t.next_logits, temps, int(k))
    fig = temperature_figure(display_tokens(lm, top_ids), temps, table,
                             _("The next token's probabilities at {n} temperatures · {label}").format(
                                 n=len(temps), label=figure_label(lm.label, t.prompt)),
                             entropy_at_temperatures(t.next_logits, temps), model=esc(model_name(lm)))
    return View([Figure("gen_sweep", fig),
                 Text(_("Sampling at temperature T draws from softmax(logits / T). As T rises the distribution "
                        "flattens: likely tokens lose probability to unlikely ones. T = 0 always takes the "
                        "likeliest."))])


# ---- tables for people --------------------------------------------------------------------------
# Columns are English (marked N_ where the catalog scan needs it); translated_table shows them in the page's language.
def steps_table(lm, steps: Sequence[Step], loop_mask: np.ndarray | None = None, k: int = 5) -> pd.DataFrame:
    """The essay's sequence of tables as one DataFrame, a row per step: the chosen token, its
    probabilities, the entropy and the k likeliest alternatives as `token  p`. loop_mask: [step] bool."""
    chosen = display_tokens(lm, [s.token_id for s in steps])
    alt_tokens, alt_probs = alternatives(lm, steps, k)
    rows = []
    for n, s in enumerate(steps):
        row = {"step": s.index + 1, "chosen": chosen[n], "id": s.token_id, "p (model)": s.prob,
               "p (drawn)": s.sample_prob, "rank": s.rank + 1, N_("out of"): s.n_allowed,
               "entropy (bits)": s.entropy_bits}
        if loop_mask is not None:
            row["repeat"] = "⟳" if loop_mask[n] else ""
        for j, (token, p) in enumerate(zip(alt_tokens[n], alt_probs[n])):
            row[f"#{j + 1}"] = f"{token}  {format_prob(p)}"
        rows.append(row)
    return pd.DataFrame(rows)


def runs_table(lm, runs: Sequence[Sequence[int]], labels: Sequence[str]) -> tuple[list[int | None], pd.DataFrame]:
    """Continuations side by side: (first step each differs from run 0 or None, a DataFrame run · first
    step that differs (1-based; "—" for run 0 itself, "never" when the texts agree) · text)."""
    diverge = [None] + [first_divergence(runs[0], r) for r in runs[1:]]
    first = ["—"] + [str(d + 1) if d is not None else _("never") for d in diverge[1:]]  # no "None" on screen
    table = pd.DataFrame({"run": list(labels), N_("first step that differs from greedy"): first,
                          "text": [decode_text(lm, r) for r in runs]})
    return diverge, table


def live_beams_table(lm, live: Sequence[tuple[tuple[int, ...], float]]) -> pd.DataFrame:
    """The beams still running after a step, best first: log-probability and text so far."""
    return pd.DataFrame({"beam": list(range(1, len(live) + 1)), "log-prob": [s for _, s in live],
                         N_("text so far"): [decode_text(lm, b) for b, _ in live]})


def beams_table(lm, result: BeamResult) -> pd.DataFrame:
    """Finished beam hypotheses, best first: score, summed log-probability, length and text."""
    return pd.DataFrame([{"beam": i + 1, "score": h.score, "log-prob": h.logprob, "tokens": len(h.ids),
                          "text": decode_text(lm, h.ids)} for i, h in enumerate(result.hypotheses)])
