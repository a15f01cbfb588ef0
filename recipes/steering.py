"""The Steering page's views: a steering vector added to the residual stream before one block
(core.steering), and what it changes: the generated text (with and without the steer, same
seed), the next-token table, the logit lens, and a sweep over the coefficient.

The prompt is read with <|endoftext|> in front, as the ActAdd paper reads it, so a contrast
pair's rows line up with the prompt's (row 0, <|endoftext|>, is zero in a contrast vector).
Plain and steered runs are traces kept in the shared cache (one forward each); generation and
the sweep run as jobs of steps (ui.steering_jobs), and these views take what they made.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from core.attribution import position_parts
from core.features import feature_acts, site_activation
from core.interventions import single_token
from core.prediction import cached_lens
from core.sae import check_fits, directions
from core.steering import (
    MAX_COEFFICIENT,
    SteeringError,
    contrast_vector,
    generate,
    mean_difference,
    steered_logits,
    steered_trace,
    token_direction,
)
from core.tokens import display_tokens
from core.trace import Trace, estimate_trace_bytes, trace_ids
from i18n import N_, _
from viz.common import esc, figure_label, format_prob
from viz.prediction import lens_grid_figure, lens_row_names
from viz.steering import shift_figure, sweep_figure

from . import Figure, Row, Text, View, md, translated_table
from .features import hook_label
from .naming import is_gpt2

KINDS = {"pair": N_("Contrast pair (ActAdd)"), "mean": N_("Mean difference of two lists"),
         "token": N_("A token's unembedding direction"), "head": N_("What a head writes"),
         "feature": N_("An SAE feature's direction")}
VIEWS = [N_("Generation"), N_("Next token"), N_("Logit lens"), N_("Coefficient sweep")]
COLUMNS = (N_("p plain"), N_("p steered"), N_("shift"), N_("coefficient"), N_("perplexity"))  # shown translated
INTROS = dict(zip(VIEWS, [  # each view's first words, by its English name
    N_("The prompt continued twice with the same seed: without the steer and with it. Both runs draw the same random "
       "numbers, so the texts agree until the steer changes a token's odds enough to change the draw."),
    N_("The next token's likeliest candidates with and without the steer, and how much the steer moves each one."),
    N_("The residual stream read as a prediction after every block, without the steer (top) and with it (below), over "
       "the same positions."),
    N_("Nine coefficients, from −2× to +2× the one chosen above (0 is the plain run): the probability of a word at the "
       "next token, and the perplexity of each steered continuation as the unsteered model reads it. Look for the "
       "range where the word rises but the perplexity stays near that at 0: the text changes and still reads well."),
]))
WINDOW = 16  # lens positions shown, the same in both lenses
MAX_NEW = 100
SWEEP_STEPS = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)  # × the chosen coefficient
EXAMPLES_NOTE = N_("Each example sets the prompt too. The paper's, on gpt2-xl: “Love” − “Hate” at block 6 turns "
                   "“I hate you because” loving, “Anger” − “Calm” at block 20 makes “I think you're” angry, and "
                   "“ weddings” − “ ” at block 20 brings weddings into any talk. On a smaller model the vector is that "
                   "model's own, a block it lacks becomes its last, and the effect is weaker or breaks the text: try "
                   "the coefficient sweep.")
PAPER, BUNDLED = N_("Turner et al. 2023, for gpt2-xl"), N_("Found on the bundled mini GPT-2")


@dataclass(frozen=True)
class Example:
    label: str  # marked with N_, shown translated
    state: dict  # the page's controls (and the prompt) it sets


def _pair(label, a, b, layer, c, word, prompt):
    return Example(label, {"steer_kind": "pair", "steer_a": a, "steer_b": b, "steer_layer": layer, "steer_coef": c,
                           "steer_word": word, "prompt": prompt})


# Texts the model reads (never translated).
LOVE = "I love you.\nLove is patient.\nThey loved each other."  # i18n: skip
HATE = "I hate you.\nHate is bitter.\nThey hated each other."  # i18n: skip
GOSPELS = "\n".join(["Jesus answered and said unto them", "And Jesus went up into the temple",  # i18n: skip
                     "Then came the disciples to Jesus", "And Peter said unto him, Lord"])  # i18n: skip
LAW = "\n".join(["And the LORD spake unto Moses, saying", "And Moses went up unto God",  # i18n: skip
                 "And the children of Israel journeyed", "And Aaron said unto Moses"])  # i18n: skip
JESUS, MOSES = " Jesus said unto them, Jesus", " Moses said unto them, Moses"  # i18n: skip
PEOPLE, WHEN = "Then the people went out", "And it came to pass, when"  # i18n: skip
EXAMPLES = {  # heading -> its examples
    PAPER: [_pair(N_("Love − Hate"), "Love", "Hate", 6, 5.0, " love", "I hate you because"),  # i18n: skip
            _pair(N_("Anger − Calm"), "Anger", "Calm", 20, 10.0, " angry", "I think you're"),  # i18n: skip
            _pair(N_("“ weddings” − “ ”"), " weddings", " ", 20, 4.0, " wedding",
                  "I went up to my friend and said")],  # i18n: skip
    BUNDLED: [_pair(N_("Jesus − Moses"), JESUS, MOSES, 2, 6.0, " Jesus", PEOPLE),
              Example(N_("Gospels − Law (mean)"), {"steer_kind": "mean", "steer_list_a": GOSPELS, "steer_list_b": LAW,
                                                   "steer_layer": 2, "steer_coef": 2.0, "steer_word": " Jesus",
                                                   "prompt": WHEN}),
              Example(N_("Fire (a token)"), {"steer_kind": "token", "steer_token": " fire", "steer_layer": 3,
                                             "steer_coef": 30.0, "steer_word": " fire", "prompt": PEOPLE})],
}


@dataclass(frozen=True, eq=False)
class Steer:
    """A steer ready to run: coefficient × vector added before block `layer` of the prompt `ids`."""

    vector: torch.Tensor  # [d_model] (every position) or [k, d_model] (the first k positions)
    layer: int
    coefficient: float
    ids: tuple[int, ...]  # the prompt as steered, <|endoftext|> first
    digest: str  # names the vector in cache keys and job ids

    @property
    def key(self) -> tuple:
        return (self.ids, self.digest, self.layer, self.coefficient)

    def describe(self) -> str:
        return _("{c:+g} × the vector before block {layer}").format(c=self.coefficient, layer=self.layer)


def model_note(lm) -> list:
    if is_gpt2(lm):
        return []
    return [Text(_("This is {model}, not GPT-2: its residual stream is its own, so a vector and a coefficient that "
                   "steer GPT-2 may do nothing here, or break the text. The examples marked “bundled” were found on "
                   "this mini GPT-2.").format(model=md(lm.label)), "info")]


def steered_prompt(lm, t: Trace) -> tuple[int, ...]:
    """The prompt's ids with <|endoftext|> in front (unless it is there, or the context is full)."""
    ids, bos = tuple(int(i) for i in t.token_ids), lm.tokenizer.bos_token_id
    if bos is None or (ids and ids[0] == bos) or len(ids) >= lm.n_ctx:
        return ids
    return (bos,) + ids


def _cached(lm, t: Trace, ids: tuple, variant: str, compute: Callable[[], Trace]) -> Trace:
    key = (lm.name, str(lm.device), ids, variant)  # the model's name first: the shell drops its entries with it
    return t.cache.get_or_compute(key, compute, expected_bytes=estimate_trace_bytes(lm, len(ids)))


def plain_trace(lm, t: Trace, ids: tuple) -> Trace:
    return _cached(lm, t, ids, "steer-plain", lambda: trace_ids(lm, list(ids), prompt=t.prompt, cache=t.cache))


def steered(lm, t: Trace, s: Steer) -> Trace:
    """The steered run's trace (SteeringError when it is not finite)."""
    variant = f"steer-{s.digest}:{s.layer}:{s.coefficient!r}"
    return _cached(lm, t, s.ids, variant, lambda: steered_trace(lm, s.ids, s.vector, s.layer, s.coefficient,
                                                                cache=t.cache))


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def make_vector(lm, plain: Trace, kind: str, inputs: dict, layer: int) -> torch.Tensor:
    """The steering vector of `kind` from the page's inputs (ValueError, with a message for a person)."""
    if kind == "pair":
        return contrast_vector(lm, inputs["a"], inputs["b"], layer)
    if kind == "mean":
        return mean_difference(lm, _lines(inputs["list_a"]), _lines(inputs["list_b"]), layer)
    if kind == "token":
        return token_direction(lm, single_token(lm, inputs["token"]))
    heads = position_parts(lm, plain, plain.n_tokens - 1)["heads"]
    return torch.as_tensor(heads[inputs["head_layer"], inputs["head"]]).detach().float().clone()


# ---- a sparse feature's direction -------------------------------------------------------------------
BLOCK_OF_SITE = {"hook_resid_pre": 0, "hook_resid_post": 1, "hook_mlp_out": 1}  # the block it goes before: L + this


def feature_block(lm, sae) -> int:
    """The block before which a feature's direction is added: where the SAE reads (resid_pre L: L;
    resid_post L or mlp_out L, which the residual before block L + 1 sums exactly: L + 1).
    SteeringError where that is no block's input."""
    check_fits(lm, sae)
    block = sae.layer + BLOCK_OF_SITE.get(sae.site, lm.n_layer)
    if block >= lm.n_layer:
        raise SteeringError(_("This SAE reads the {site}: a steer is added to the residual stream before a block, "
                              "so pick an SAE on the residual stream before a block or after one (not the last), or "
                              "on an MLP's output.").format(site=hook_label(sae.hook_name)))
    return block


def feature_vector(lm, plain: Trace, sae, feature: int) -> torch.Tensor:
    """[d_model]: feature `feature`'s decoder direction W_dec[feature], what one unit of its
    activation adds. An SAE that normalises its input adds it × the input's scale: here the mean
    scale over the prompt's positions. (Centring needs nothing: a vector along all-ones is taken
    out by every layer norm that reads the residual.)"""
    feature_block(lm, sae)
    if not 0 <= int(feature) < sae.d_sae:
        raise SteeringError(_("The SAE has features 0–{last}.").format(last=sae.d_sae - 1))
    if sae.normalize in ("none", "expected_average_only_in"):
        return sae.W_dec[int(feature)].detach().float().clone()
    return directions(sae, site_activation(plain, sae), [int(feature)])[:, 0].mean(0).float()


def feature_about(lm, t: Trace, sae, feature: int) -> View:
    """What the feature kind adds and where; values["layer"]: the block (None when it cannot: the view says why)."""
    try:
        layer = feature_block(lm, sae)
    except ValueError as e:
        return View([problem(e).items[0]], {"layer": None})
    acts = feature_acts(lm, t, sae).dense([int(feature)])[:, 0] if 0 <= feature < sae.d_sae else np.zeros(1)
    peak = float(acts[1:].max(initial=0.0)) if len(acts) > 1 else float(acts.max(initial=0.0))
    fires = (_("On this prompt it fires at most {peak:.2f} (past the first token).").format(peak=peak) if peak > 0
             else _("It does not fire on this prompt (past the first token)."))
    return View([Text(_("Feature #{feature}'s decoder direction (its row of W_dec: what one unit of its activation "
                        "adds), added before block {layer}, where the SAE reads, at every position. A coefficient "
                        "of c adds what an activation of c would. {fires} Its card is on the Features page.").format(
        feature=int(feature), layer=layer, fires=fires), "caption")], {"layer": layer})


def problem(error: Exception) -> View:
    return View([Text(md(str(error)), "warning")])


def steer(lm, t: Trace, plain: Trace, vector: torch.Tensor, layer: int, coefficient: float) -> View:
    """What the steer adds, where, and how large it is beside the residual stream; values["steer"]:
    the Steer (None when it cannot run: the view says why)."""
    c = float(coefficient)
    if math.isnan(c):
        return View([Text(_("The coefficient is not a number. Type one, such as 5 or -2.5."), "warning")])
    c = max(-MAX_COEFFICIENT, min(MAX_COEFFICIENT, c))
    digest = hashlib.blake2b(vector.float().cpu().numpy().tobytes(), digest_size=8).hexdigest()
    s = Steer(vector, int(layer), c, tuple(int(i) for i in plain.token_ids), digest)
    try:
        steered(lm, t, s)
    except SteeringError as e:
        return problem(e)
    norm = float(vector.float().norm(dim=-1).max())
    resid = float(np.linalg.norm(plain.take("resid", (s.layer,)), axis=-1).mean())
    if vector.dim() == 2:
        where = _("at the first {k} positions (row 0 is <|endoftext|>; a contrast pair's is zero)").format(
            k=len(vector))
    else:
        where = _("at every position, the new tokens' included")
    items = [Text(_("Adding {what}, {where}. The vector's norm is {norm:,.2f}; the residual stream's there is about "
                    "{resid:,.0f}, so the steer adds about {share:.0%} of it.").format(
        what=s.describe(), where=where, norm=norm, resid=resid, share=abs(c) * norm / max(resid, 1e-9)))]
    if abs(c) >= MAX_COEFFICIENT:
        items.append(Text(_("±{max:,.0f} is the largest coefficient: larger ones are clamped to it. Far smaller ones "
                            "usually steer already.").format(max=MAX_COEFFICIENT), "warning"))
    if vector.dim() == 2 and len(vector) > len(s.ids):
        items.append(Text(_("The pair is {k} tokens and the prompt {n}: its last rows are added to the first new "
                            "tokens.").format(k=len(vector), n=len(s.ids))))
    return View(items, {"steer": s})


# ---- generation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One step of the two runs: each one's token and its probability."""

    plain: int
    steered: int
    p_plain: float
    p_steered: float


def room(lm, s: Steer) -> int:
    return max(0, min(MAX_NEW, lm.n_ctx - len(s.ids)))


def paired_tokens(lm, s: Steer, n_new: int, temperature: float, seed: int, skip: int = 0,
                  on_error: Callable[[str], None] = lambda message: None) -> Iterator[Pair]:
    """The plain and steered runs, a token of each per step, after the first `skip` steps (made
    again, unshown, so the seeded draws stay the same). A steered run that is not finite stops
    and says why through on_error."""
    runs = [generate(lm, s.ids, n_new, temperature=temperature, seed=seed),
            generate(lm, s.ids, n_new, vector=s.vector, layer=s.layer, coefficient=s.coefficient,
                     temperature=temperature, seed=seed)]
    try:
        for i, (a, b) in enumerate(zip(*runs)):
            if i >= skip:
                yield Pair(a.token_id, b.token_id, a.prob, b.prob)
    except SteeringError as e:
        on_error(str(e))


def decode(lm, ids: Sequence[int]) -> str:
    with lm.tokenizer_lock:
        return lm.tokenizer.decode([int(i) for i in ids])


def texts_so_far(lm, s: Steer, pairs: Sequence[Pair]) -> tuple[str, str]:
    """(plain, steered) texts: the prompt (without <|endoftext|>) and each run's tokens."""
    bos = lm.tokenizer.bos_token_id
    prompt = decode(lm, [i for i in s.ids[1:]] if s.ids and s.ids[0] == bos else s.ids)
    return prompt + decode(lm, [p.plain for p in pairs]), prompt + decode(lm, [p.steered for p in pairs])


def no_room(lm) -> View:
    return View([Text(_("The prompt fills all {n:,} positions the model reads, so there is no room for new tokens. "
                        "Shorten the prompt.").format(n=lm.n_ctx), "info")])


def generation(lm, t: Trace, s: Steer, job) -> View:
    """What the Generate job (ui.steering_jobs.generation: items are Pairs) made so far; None: not asked."""
    if job is None:
        return View([Text(_("Press **Generate** to continue the prompt with and without the steer. Stop keeps the "
                            "tokens made so far."), "info")])
    pairs, error = job.items, job.params.get("error")
    plain, steered_text = texts_so_far(lm, s, pairs)
    made = _("{n} tokens (stopped)") if job.stopped else _("{n} tokens")
    view = View([Text(made.format(n=len(pairs)))] + ([Text(md(error), "error")] if error else []))
    view.add(Row([[Text(_("Without the steer"), "markdown"), Text(plain, "code")],
                  [Text(_("With {what}").format(what=s.describe()), "markdown"), Text(steered_text, "code")]]))
    first = next((i for i, p in enumerate(pairs) if p.plain != p.steered), None)
    if pairs and first is None:
        view.add(Text(_("The two texts are the same: the steer changed no draw.")))
    elif pairs:
        view.add(Text(_("The texts part at new token {k}: the draws are the same, the odds are not.").format(
            k=first + 1)))
    return view


# ---- next token and logit lens ----------------------------------------------------------------------
def next_token(lm, t: Trace, plain: Trace, s: Steer, k: int = 10) -> View:
    """The k likeliest next tokens of either run (their union), with and without the steer."""
    before, after = np.asarray(plain.next_probs), np.asarray(steered(lm, t, s).next_probs)
    ids = np.union1d(np.argsort(-before)[:k], np.argsort(-after)[:k])
    ids = ids[np.argsort(-np.maximum(before[ids], after[ids]), kind="stable")]
    table = pd.DataFrame({"token": display_tokens(lm, ids), "id": ids.astype(np.int64),
                          "p plain": before[ids].astype(np.float64), "p steered": after[ids].astype(np.float64),
                          "shift": (after[ids] - before[ids]).astype(np.float64)})
    title = _("How the steer shifts the next token<br>{label}").format(label=figure_label(lm.label, t.prompt))
    return View([Row([translated_table("steer_next_table", table, "steering-next-token",
                                       formats={"p plain": format_prob, "p steered": format_prob,
                                                "shift": "{:+.2%}"}),
                      Figure("steer_next_shift", shift_figure(table["token"].tolist(), table["p plain"].to_numpy(),
                                                              table["p steered"].to_numpy(), title))], widths=[2, 3])])


def lens_start(plain: Trace) -> int:
    return max(0, plain.n_tokens - WINDOW)


def lens(lm, t: Trace, plain: Trace, s: Steer, start: int) -> View:
    label = figure_label(lm.label, t.prompt)
    positions = np.arange(start, min(start + WINDOW, plain.n_tokens))
    figures = []
    for key, run, title in (("steer_lens_plain", plain, _("Logit lens without the steer · {label}")),
                            ("steer_lens_steered", steered(lm, t, s), _("Logit lens with {what} · {label}"))):
        result = cached_lens(lm, run, positions, 5, None)
        tops = [[display_tokens(lm, result.top_ids[r, c]) for c in range(len(positions))]
                for r in range(lm.n_layer + 1)]
        figures.append(Figure(key, lens_grid_figure(tops, result.top_probs, result.top_probs[..., 0], positions,
                                                    run.tokens, title.format(label=label, what=s.describe()),
                                                    _("top probability"))))
    row = lens_row_names(lm.n_layer + 1)[s.layer]
    return View([Text(_("The vector is added to the input of block {layer}, the row “{row}”: the rows below it are the "
                        "same in both.").format(layer=s.layer, row=row))] + figures)


# ---- coefficient sweep ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepPoint:
    coefficient: float
    word_prob: float  # at the next token, temperature 1
    perplexity: float  # of the steered continuation, under the unsteered model
    ids: tuple[int, ...]  # the steered continuation
    error: str = ""


def sweep_word(lm, plain: Trace, t: Trace, s: Steer, typed: str) -> View:
    """The word the sweep follows: the token typed, or (empty) the one the steer raises most.
    values["word"]: its id, None when the text is not one token (the view says why)."""
    try:
        word = single_token(lm, typed) if typed else int(np.argmax(steered(lm, t, s).next_probs - plain.next_probs))
    except ValueError as e:
        return View([problem(e).items[0]], {"word": None})
    return View([], {"word": word, "name": display_tokens(lm, [word])[0]})


def sweep_coefficients(s: Steer) -> list[float]:
    return [float(np.clip(f * s.coefficient, -MAX_COEFFICIENT, MAX_COEFFICIENT)) for f in SWEEP_STEPS]


def sweep_point(lm, s: Steer, coefficient: float, word: int, n_new: int, temperature: float, seed: int) -> SweepPoint:
    """One coefficient of the sweep: p(word) at the next token, a steered continuation of n_new
    tokens, and its perplexity under the unsteered model."""
    ids = list(s.ids)
    try:
        steps = list(generate(lm, ids, n_new, vector=s.vector, layer=s.layer, coefficient=coefficient,
                              temperature=temperature, seed=seed))
        if temperature in (0.0, 1.0):  # the first step drew from the model's own distribution: no second forward
            p = float(steps[0].probs[word])
        else:
            p = float(torch.softmax(steered_logits(lm, ids, s.vector, s.layer, coefficient)[-1], -1)[word])
    except SteeringError as e:
        return SweepPoint(coefficient, math.nan, math.nan, (), str(e))
    made = [x.token_id for x in steps]
    logits = steered_logits(lm, ids + made, s.vector, s.layer, 0.0)[len(ids) - 1:-1]  # the plain model
    logp = torch.log_softmax(logits, -1).gather(1, torch.tensor(made)[:, None])
    return SweepPoint(coefficient, p, float(torch.exp(-logp.mean())), tuple(made))


def sweep(lm, t: Trace, s: Steer, word_name: str, points: Sequence[SweepPoint] | None) -> View:
    if s.coefficient == 0:
        return View([Text(_("Set a coefficient other than 0: the sweep runs from −2× to +2× it."), "info")])
    if not word_name:  # no word to follow: the page says why
        return View()
    if points is None:
        return View([Text(_("Press **Run the sweep**: nine steered continuations, one per coefficient ({coefficients})."
                            ).format(coefficients=", ".join(f"{c:+g}" for c in sweep_coefficients(s))), "info")])
    if not points:
        return View()
    table = pd.DataFrame({"coefficient": [p.coefficient for p in points], "probability": [p.word_prob for p in points],
                          "perplexity": [p.perplexity for p in points],
                          "text": [p.error or decode(lm, p.ids) for p in points]})
    fig = sweep_figure(table["coefficient"], table["probability"], table["perplexity"], word_name, s.coefficient,
                       _("p({word}) and fluency against the coefficient · {label}").format(
                           word=esc(word_name), label=figure_label(lm.label, t.prompt)))
    return View([Figure("steer_sweep", fig),
                 translated_table("steer_sweep_table", table, "steering-sweep",
                                  formats={"coefficient": "{:+g}", "probability": format_prob,
                                           "perplexity": "{:,.1f}"})])
