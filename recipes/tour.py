"""The Tour: the GPT-2 figures of Wolfram's essay "What Is ChatGPT Doing … and Why Does It Work?",
one step at a time, in the essay's order, and two steps past it: sparse features (after the heads)
and steering (last).

The steps are data (STEPS): a title, a paragraph, the essay's prompt, and the page (with the
controls) that draws the same figure. `view` draws a step with that page's own recipe and
those controls' values, so the tour and the page show the same figure, and `page_state` is
what the step's "Open this in …" button sets before switching to the page. Continuations
(steps 2, 3 and the steering step) take seconds on a CPU: `continuations` makes them, only when
asked, and `carried` hands them to the page the step opens, so it shows them without running again."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.embeddings import EXAMPLE_WORD_GROUPS, parse_groups, split_words
from core.sampling import continue_runs, generate_ids
from core.trace import Trace
from i18n import N_, _
from viz.common import format_prob

from . import (
    Row,
    Table,
    Text,
    View,
    attention,
    embeddings,
    features,
    generation,
    md,
    next_token,
    prediction,
    steering,
    translated_table,
    weights,
)
from .naming import is_gpt2

AI = "The best thing about AI is its ability to"  # i18n: skip (the essay's prompt, for GPT-2)
HELLO_BYE = " ".join(["hello"] * 16 + ["bye"] * 6)  # ui.shell.HELLO_BYE (recipes never import ui)
NEXT, ATTENTION, EMBEDDINGS, WEIGHTS, GENERATION = ("app.py", "pages/1_Attention.py", "pages/2_Embeddings.py",
                                                    "pages/3_Weights.py", "pages/4_Generation.py")
FEATURES, STEERING = "pages/8_Features.py", "pages/9_Steering.py"

# The essay's table for its first prompt (GPT-2 small), next to the live top 5.
ESSAY_TOP5 = [("learn", 0.045), ("predict", 0.035), ("make", 0.032), ("understand", 0.031), ("do", 0.029)]
TOP_K = 5
N_NEW, TEMPERATURE, FIRST_SEED, N_SAMPLES = 40, 0.8, 0, 3
SBS_NEW = 20  # step 3's tokens per run: the grid's cells wide enough for their text to be read
WORDS = "cat, dog, chair"  # i18n: skip (the essay's words; a model that did not learn them gets its own)
COLOUR = "stretch"
LAYER, HEAD = 1, 0  # attention: block 1's heads; one head through the blocks
WEIGHT = ("W_O", 0, "all")  # block 0's attention output projection: 768 × 768 in GPT-2 small
GREEDY = generation.settings("greedy", N_NEW, {"stop_at_eos": True}, (4, 1.0, False))  # the page's Generate, greedy
FEATURES_SHOWN = 20  # the Features page's defaults: its 20 strongest features, the last token picked, token 0 left out
STEER_A, STEER_B, STEER_LAYER, STEER_COEF = "Love", "Hate", 6, 5.0  # i18n: skip (the paper's pair, block, coefficient)
STEER_TEMPERATURE, STEER_SEED = 1.0, 0  # the Steering page's defaults


@dataclass(frozen=True)
class Step:
    kind: str  # which figure: the branch of `view`
    title_msg: str  # the title, in English (marked for the catalog); shown as `title`
    text_msg: str  # Markdown: what the essay shows here, and what to look for; shown as `text`
    page: str  # the page that draws it
    page_msg: str  # that page's name, in English; shown as `page_label`
    controls: dict = field(default_factory=dict)  # that page's controls (session-state keys) for this figure
    prompt: str = AI
    uses_trace: bool = True  # False: the figure reads the model's parameters only
    generates: bool = False  # True: runs only when asked (seconds on a CPU)

    # Read at display time, so they are in the page's language (the msgids have named fields: the tour's settings).
    @property
    def title(self) -> str:
        return _(self.title_msg).format(**_FIELDS)

    @property
    def text(self) -> str:
        return _(self.text_msg).format(**_FIELDS)

    @property
    def page_label(self) -> str:
        return _(self.page_msg)


_FIELDS = dict(n_new=N_NEW, temperature=TEMPERATURE, n_samples=N_SAMPLES, layer=LAYER, head=HEAD, sbs_new=SBS_NEW,
               steer_layer=STEER_LAYER, steer_coef=STEER_COEF)


# The controls' values are the pages' English option and tab values (they go into the link): not shown from here.
STEPS = [
    Step("top_k", N_("1 · The next word, with probabilities"),
         N_("The essay starts from one prompt and the words GPT-2 thinks could come next, each with its probability. "
            "Look at how flat the top of the list is: no word is far ahead, which is why the choice matters."),
         NEXT, N_("Next token"), {"next_k": TOP_K}),
    Step("greedy", N_("2 · Always the likeliest word (temperature 0)"),
         N_("Always taking the top word gives flat text that soon goes round in circles. Press **Generate** for "
            "{n_new} tokens; in the chart and the coloured strip, repeated phrases are marked."),
         GENERATION, N_("Generation"), {"gen_tab": "Step by step", "gen_method": "greedy",  # i18n: skip
                                        "gen_tokens": N_NEW, "gen_stop_eos": True}, generates=True),
    Step("samples", N_("3 · Sampling at temperature 0.8"),
         N_("In the essay, picking GPT-2's words at random in proportion to their probability (sharpened by a "
            "temperature of {temperature}) reads far better than always taking the top word, and differs with every "
            "seed. Press **Generate** for {n_samples} samples of {sbs_new} tokens beside the greedy text; each row "
            "shows where it parts from the greedy one."),
         GENERATION, N_("Generation"), {"gen_tab": "Side by side", "gen_sbs_runs": N_SAMPLES,  # i18n: skip
                                        "gen_sbs_temperature": TEMPERATURE, "gen_sbs_tokens": SBS_NEW,
                                        "gen_sbs_seed": FIRST_SEED}, generates=True),
    Step("rank", N_("4 · Probabilities by rank, on log-log axes"),
         N_("Every next-token probability (50,257 of them for GPT-2), sorted. On log-log axes the first few "
            "thousand fall close to a straight line: roughly a power law, as the essay shows for words."),
         NEXT, N_("Next token")),
    Step("words", N_("5 · Words as vectors"),
         N_("GPT-2 starts by turning each token into a list of numbers (768 for GPT-2 small). The essay draws three "
            "words' raw vectors: they look like noise, yet related words (cat, dog) are nearer each other than "
            "either is to chair. Compare the distances."),
         EMBEDDINGS, N_("Embeddings"), {"emb_tab": "Word vectors", "emb_words": WORDS,  # i18n: skip
                                        "emb_leading": True}, uses_trace=False),
    Step("word_map", N_("6 · A space of meanings"),
         N_("Squeezed down to two dimensions (PCA here; UMAP on the page), words of one kind land near one another: "
            "animals with animals, numbers with numbers. Only who sits near whom means something, not the axes."),
         EMBEDDINGS, N_("Embeddings"), {"emb_tab": "Meaning space", "emb_groups": EXAMPLE_WORD_GROUPS,  # i18n: skip
                                        "emb_method": "pca", "emb_dims": 2, "emb_map_leading": True},
         uses_trace=False),
    Step("prompt_embeddings", N_("7 · The embedding module"),
         N_("The essay's string “hello” ×16 then “bye” ×6: each token's vector (the 16 hellos share one column "
            "pattern), the vector for its position (which changes smoothly along the text), and their sum, which is "
            "what the first block reads."),
         EMBEDDINGS, N_("Embeddings"), {"emb_tab": "The prompt's embeddings", "emb_start": 0},  # i18n: skip
         prompt=HELLO_BYE),
    Step("layer_heads", N_("8 · The attention heads of block {layer}"),
         N_("Each of the block's heads, as a grid: row = a token, column = a token before it, colour = how much the "
            "row's token reads from it. Heads differ: in the essay's GPT-2 some look at the previous token, some at "
            "the first, some at the last “hello” or at every “bye”."),
         ATTENTION, N_("Attention"), {"attn_view": "One layer, all heads", "attn_layer": LAYER,  # i18n: skip
                                      "attn_colour": COLOUR}, prompt=HELLO_BYE),
    Step("across_layers", N_("9 · One head through the blocks"),
         N_("Head {head} in every block, on the same string. What a head does changes with depth: early blocks "
            "attend near the token itself, later ones spread out or jump to the start."),
         ATTENTION, N_("Attention"), {"attn_view": "One head across layers", "attn_head": HEAD,  # i18n: skip
                                      "attn_colour": COLOUR}, prompt=HELLO_BYE),
    Step("features", N_("10 · Sparse features"),
         N_("Not in the essay (they came later), but how researchers now read GPT-2. A single neuron rarely means one "
            "thing: it fires on many unrelated tokens. A sparse autoencoder (SAE), trained on the residual stream at "
            "one layer, rewrites each token's vector as a sum of a few active *features* out of thousands, and most "
            "features do mean one thing: verse numbers, closing quotes, words about water. Each row is a feature, "
            "each column a token of the prompt, the colour how strongly it fires there. The Features page shows what "
            "each feature means, how much the SAE misses, and which features make the prediction."),
         FEATURES, N_("Features"), {"feat_view": "Features per token"}),  # i18n: skip
    Step("matrix", N_("11 · A weight matrix"),
         N_("One of the model's own parameter tables, no prompt involved: block 0's attention output projection, "
            "768 × 768 in GPT-2 small. Red is positive, blue negative: at this scale it looks like noise."),
         WEIGHTS, N_("Weights"), {"weights_tab": "Matrix", "weights_param": WEIGHT[0], "weights_block": WEIGHT[1],
                                  "weights_head": WEIGHT[2]}, uses_trace=False),
    Step("smoothed", N_("12 · The same matrix, smoothed"),
         N_("Averaging over 64 × 64 squares, as the essay does (a smaller model: a quarter of the side), cancels the "
            "noise; what is left (bands, stripes) is "
            "structure shared by neighbouring rows and columns, put there by training."),
         WEIGHTS, N_("Weights"), {"weights_tab": "Smoothed", "weights_param": WEIGHT[0], "weights_block": WEIGHT[1],
                                  "weights_head": WEIGHT[2]}, uses_trace=False),
    Step("across_blocks", N_("13 · Weight values in every block"),
         N_("How the matrix's values are spread, one line per block. The shapes are alike from block to block, close "
            "to a bell curve but with heavier tails (see the log scale on the page)."),
         WEIGHTS, N_("Weights"), {"weights_tab": "Across blocks", "weights_param": WEIGHT[0],  # i18n: skip
                                  "weights_block": WEIGHT[1], "weights_head": WEIGHT[2], "weights_log": False},
         uses_trace=False),
    Step("steer", N_("14 · Steering: add a direction, and the text changes"),
         N_("Also past the essay: the most direct test of what a direction inside the model means (Turner et al. "
            "2023, activation addition). Take the residual stream of “Love” minus that of “Hate” before block "
            "{steer_layer} (an earlier block on a smaller model: the line below the button names it), add it × "
            "{steer_coef} to the essay's prompt at the same place, and the next word's odds move: the chart shows how "
            "much, word by word. Press **Generate** to continue the prompt with and without the steer, with the same "
            "random draws."),
         STEERING, N_("Steering"), {"steer_kind": "pair", "steer_a": STEER_A, "steer_b": STEER_B,  # i18n: skip
                                    "steer_coef": STEER_COEF, "steer_view": "Next token"},  # i18n: skip
         generates=True),
]


def step_label(number: int) -> str:
    return STEPS[number - 1].title  # in the page's language


def model_note(lm) -> str | None:
    """One line where the model is not one of the essay's GPT-2s: what it is, and why its numbers differ."""
    if is_gpt2(lm):
        return None
    shape = _("{n_layer} blocks of {n_head} heads, {d_model} numbers per token (GPT-2 small: 12, 12 and 768)").format(
        n_layer=lm.n_layer, n_head=lm.n_head, d_model=lm.d_model)
    if features.is_bundled(lm):
        return _("These figures come from {model}, the mini GPT-2 that ships with the app, not from the essay's GPT-2 "
                 "small: {shape}, trained here on the King James Bible, so a prompt about AI is far from anything it "
                 "read and its words and numbers differ from the essay's. The figures show the same kinds of things. "
                 "The essay's model is gpt2 in the sidebar's model box, downloaded once (about 500 MB) where the "
                 "Hugging Face Hub can be reached.").format(model=md(lm.label), shape=shape)
    return _("These figures come from {model}, not from the essay's GPT-2 small: {shape}, trained on other text, so "
             "its words and numbers differ from the essay's.").format(model=md(lm.label), shape=shape)


def words_of(lm) -> str:
    """The words step's words: the essay's cat, dog, chair, or words the loaded model learned (as the
    Embeddings page opens on: recipes.embeddings.default_words)."""
    return embeddings.default_words(lm)


def groups_of(lm) -> str:
    """The meaning-space step's groups of words: the essay's, or words the loaded model learned."""
    return embeddings.default_groups(lm)


def shipped_sae(lm) -> str | None:
    """The SAE the features step uses: the bundled model's shipped SAE the Features page opens on
    (a path), or None (another model, or none shipped: the step says so and shows neurons instead)."""
    hooks = features.bundled_saes() if features.is_bundled(lm) else []
    return features.bundled_sae_path(features.default_hook(hooks, "")) if hooks else None


def _selection(lm):
    return weights.select(lm, *WEIGHT)


def page_state(step: Step, lm) -> dict:
    """The session state the step's "Open this in …" button sets on its page (the prompt aside)."""
    state = dict(step.controls)
    if step.kind == "words":
        state["emb_words"] = words_of(lm)
    if step.kind == "word_map":
        state["emb_groups"] = groups_of(lm)
    if step.kind == "smoothed":
        state["weights_window"] = weights.window_range(_selection(lm))[1]
    if step.kind == "features" and shipped_sae(lm):
        hooks = features.bundled_saes()
        state.update(feat_sae_source="bundled", feat_sae_hook=features.default_hook(hooks, ""))  # i18n: skip
    if step.kind == "steer":
        state["steer_layer"] = _steer_layer(lm)
    return state


def _steer_layer(lm) -> int:
    """Block 6 of GPT-2's 12 or more; on a smaller model, an early block (block 1 of the bundled model's 6,
    where its own steering examples work; its last block moves nothing)."""
    return STEER_LAYER if lm.n_layer >= 12 else min(max(1, lm.n_layer // 6), lm.n_layer - 1)


def continuations(step: Step, lm, t: Trace):
    """What Generate makes for step 2 (greedy Steps) or 3 ((run, token id) pairs). Seconds on a CPU."""
    ids = tuple(int(i) for i in t.token_ids)
    if step.kind == "greedy":
        return generate_ids(lm, ids, N_NEW, GREEDY["decoding"])
    if step.kind == "steer":
        s = steer_of(lm, t).values.get("steer")
        if s is None:
            return None
        made = Made(params=_steer_settings(lm, s))
        made.items.extend(steering.paired_tokens(lm, s, **made.params, on_error=lambda e: made.params.update(
            error=e)))
        return made
    plan = _plan(lm, t)
    return list(continue_runs(lm, ids, plan["n_tokens"], plan["decodings"]))


@dataclass
class Made:
    """The steering step's two runs, as the Steering page's Generate job keeps them (recipes.steering.generation)."""

    params: dict
    items: list = field(default_factory=list)  # recipes.steering.Pair, one per step
    stopped: bool = False


def _steer_settings(lm, s) -> dict:
    return dict(n_new=min(N_NEW, steering.room(lm, s)), temperature=STEER_TEMPERATURE, seed=STEER_SEED)


def carried(step: Step, lm, t: Trace, made) -> tuple[str, tuple, object, list] | None:
    """What Generate made, as the step's page keeps its own finished job (ui.progress.stepwise):
    (the page's job key, its work, its params, its items), so the page opens showing it."""
    if made is None:
        return None
    ids = tuple(int(i) for i in t.token_ids)
    if step.kind == "greedy":
        return "gen", (lm.name, ids), GREEDY, list(made)
    if step.kind == "samples":
        plan = _plan(lm, t)
        return "gen_sbs", (lm.name, ids, plan["n_tokens"], plan["temperature"], plan["seeds"]), True, list(made)
    s = steer_of(lm, t).values.get("steer")
    if step.kind != "steer" or s is None:
        return None
    p = made.params
    return "steer_gen", (lm.name, s.key, p["n_new"], p["temperature"], p["seed"]), dict(p), list(made.items)


def steer_of(lm, t: Trace) -> View:
    """The steering step's steer, as the Steering page makes it from the step's controls: values["steer"]
    (None when it cannot run: the view says why) and values["plain"]."""
    layer = _steer_layer(lm)
    plain = steering.plain_trace(lm, t, steering.steered_prompt(lm, t))
    try:
        vector = steering.make_vector(lm, plain, "pair", {"a": STEER_A, "b": STEER_B}, layer)
    except ValueError as e:
        return steering.problem(e)
    view = steering.steer(lm, t, plain, vector, layer, STEER_COEF)
    view.values["plain"] = plain
    return view


def _plan(lm, t: Trace) -> dict:
    return generation.side_by_side_plan(lm, t.n_tokens, TEMPERATURE, FIRST_SEED, N_SAMPLES, SBS_NEW)


def essay_table() -> Table:
    data = pd.DataFrame({"word": [w for w, _p in ESSAY_TOP5], "probability": [p for _w, p in ESSAY_TOP5]})
    return translated_table("tour_essay_table", data, "essay-top-5", formats={"probability": format_prob})


def view(step: Step, lm, t: Trace | None = None, made=None, sae=None) -> View:
    """The step's figure, drawn by its page's recipe with `step.controls`' values; `t`: the trace
    of `step.prompt` (steps that use one); `made`: `continuations`' result, None until asked;
    `sae`: the features step's SAE (`shipped_sae`, loaded), None without one."""
    kind = step.kind
    if kind == "top_k":
        (row,) = next_token.top_k(lm, t, TOP_K).items
        return View([Row([*row.columns, [Text(_("**Wolfram's essay (GPT-2)**"), "markdown"), essay_table()]],
                         widths=[2, 4, 2])])  # the figure keeps the half column it has on its page (fitted alike)
    if kind == "features":
        return _features(lm, t, sae)
    if kind == "steer":
        return _steer(lm, t, made)
    if kind in ("greedy", "samples") and made is None:
        return View([Text(_("Press **Generate**: nothing runs before you ask, since this takes a few seconds on a "
                            "CPU. The result stays here while you look at other steps."), "info")])
    if kind == "greedy":
        ids = tuple(int(i) for i in t.token_ids)
        result = generation.result(lm, ids, GREEDY, made, stopped=False)
        return View(result.items + generation.steps(lm, t, made, GREEDY["decoding"], 4).items)
    if kind == "samples":
        return generation.side_by_side(lm, t, _plan(lm, t), made)
    if kind == "rank":
        return next_token.rank(lm, t)
    if kind == "words":
        return embeddings.word_table(lm, split_words(words_of(lm), limit=12), True)
    if kind == "word_map":
        return embeddings.meaning_space(lm, tuple(parse_groups(groups_of(lm))), True, "pca", 2)
    if kind == "prompt_embeddings":
        return embeddings.prompt_embeddings(lm, t, 0)
    if kind == "layer_heads":
        return attention.layer_heads(lm, t, min(LAYER, lm.n_layer - 1), COLOUR)
    if kind == "across_layers":
        return attention.across_layers(lm, t, min(HEAD, lm.n_head - 1), COLOUR, None)
    sel = _selection(lm)
    if kind == "matrix":
        return weights.matrix(lm, sel)
    if kind == "smoothed":
        return weights.smoothed(sel, weights.window_range(sel)[1])
    if kind == "across_blocks":
        return weights.across_blocks(lm, sel, False)
    raise ValueError(f"unknown tour step {kind!r}")  # i18n: skip


def _features(lm, t: Trace, sae) -> View:
    if sae is not None:
        return features.per_token(lm, t, sae, FEATURES_SHOWN, t.n_tokens - 1, True)
    layer = lm.n_layer // 2
    if is_gpt2(lm) or (lm.n_layer, lm.d_model) == (12, 768):
        why = _("GPT-2 small has public SAEs (Joseph Bloom's gpt2-small-res-jb, one per layer): the Features page "
                "downloads one (about 150 MB, once) when you pick it there, and nothing is downloaded from here.")
    elif features.is_bundled(lm):
        why = _("The bundled model's SAEs are not in this checkout (bundled/mini-gpt2-kjv-saes).")
    else:
        why = _("No SAE ships for {model}: on the Features page, load one saved in sae-lens's format from a "
                "directory.").format(model=md(lm.label))
    instead = _("Below, for comparison, what can be shown without an SAE: the most active neurons of block {layer}'s "
                "MLP, token by token. Most fire on many unrelated tokens; that is why SAEs are used.").format(
        layer=layer)
    strip = prediction.neurons(lm, t, layer, None, 0).items[0]
    return View([Text(f"{why} {instead}", "info"), strip])


def _steer(lm, t: Trace, made) -> View:
    setup = steer_of(lm, t)
    s = setup.values.get("steer")
    if s is None:
        return setup
    view = View(setup.items + steering.next_token(lm, t, setup.values["plain"], s).items)
    if not is_gpt2(lm):
        view.items.insert(0, Text(_("On {model} this vector is the model's own and its effect is small: the paper's "
                                    "pair was found on gpt2-xl. The Steering page has examples found on the bundled "
                                    "model.").format(model=md(lm.label)), "info"))
    if made is None:
        view.add(Text(_("Press **Generate** for {n_new} tokens with and without the steer (seconds on a CPU)."
                        ).format(n_new=_steer_settings(lm, s)["n_new"]), "info"))
    else:
        view.items.extend(steering.generation(lm, t, s, made).items)
    return view
