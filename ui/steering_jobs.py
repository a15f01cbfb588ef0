"""The Steering page's work: the steering vector (cached per model, prompt and inputs), the two
generations side by side and the coefficient sweep, as jobs of steps (ui.progress.stepwise) with
progress, Stop and Continue. What they show is built by recipes.steering."""
from __future__ import annotations

import streamlit as st

from i18n import _
from recipes import View, md
from recipes import steering as recipe
from recipes.features import default_feature
from ui import controls
from ui.figures import show
from ui.progress import Job, stepwise


@st.cache_resource(max_entries=32, show_spinner=False)
def _vector(name: str, device: str, ids: tuple, kind: str, inputs: tuple, layer: int, _lm, _plain):
    return recipe.make_vector(_lm, _plain, kind, dict(inputs), layer)


def examples() -> None:
    """The built-in examples, a row of buttons per source; each sets the page's controls and the prompt."""
    for i, (heading, row) in enumerate(recipe.EXAMPLES.items()):
        cols = st.columns([3, 2, 2, 2], vertical_alignment="center")
        cols[0].caption(_(heading))
        for j, (col, example) in enumerate(zip(cols[1:], row)):
            col.button(_(example.label), key=f"steer_example_{i}_{j}", on_click=_use, args=(example,),
                       width="stretch")
    st.caption(_(recipe.EXAMPLES_NOTE))


def _use(example: recipe.Example) -> None:
    """Set the example's controls and prompt, and say that the sidebar's prompt was replaced."""
    st.session_state.update(example.state)
    prompt = md(example.state["prompt"])
    st.toast(_("The prompt in the sidebar is now the example's: “{prompt}”.").format(prompt=prompt),
             icon=":material/edit_note:")


def steer(lm, t, kind: str, inputs: dict, layer: int, coefficient: float, sae=None) -> View:
    """The steer the controls describe (recipes.steering.steer), or a message saying what to fix.
    `sae`: the loaded SAE (ui.features.choose_sae) of the feature kind, whose direction is a row of its weights."""
    plain = recipe.plain_trace(lm, t, recipe.steered_prompt(lm, t))
    try:
        if kind == "feature":  # a row of the SAE's decoder: nothing to cache
            vector = recipe.feature_vector(lm, plain, sae, inputs["feature"])
        else:
            with st.spinner(_("Computing the steering vector…")):
                vector = _vector(lm.name, str(lm.device), tuple(int(i) for i in plain.token_ids), kind,
                                 tuple(sorted(inputs.items())), int(layer), lm, plain)
    except ValueError as e:  # PromptError, SteeringError, a word that is not one token
        return recipe.problem(e)
    view = recipe.steer(lm, t, plain, vector, layer, coefficient)
    view.values["plain"] = plain
    return view


def generation(lm, s: recipe.Steer, settings: dict, start: bool) -> Job | None:
    """Both runs, a token of each per step; None before Generate was clicked for these settings.
    settings: n_new, temperature, seed; a steered run that is not finite leaves settings["error"]."""

    def run(job, say):
        p = job.params
        return recipe.paired_tokens(lm, s, p["n_new"], p["temperature"], p["seed"], skip=len(job.items),
                                    on_error=lambda message: p.__setitem__("error", message))

    def progress(job):
        if not job.steps:
            return _("Generating with and without the steer: reading the prompt ({n:,} tokens)").format(n=len(s.ids))
        return _("Generating with and without the steer: token {step} of {total} ({rate:.1f} tokens/s each)").format(
            step=job.steps, total=job.total, rate=job.steps / max(job.seconds, 1e-9))

    def live(job, slot):
        plain, steered = recipe.texts_so_far(lm, s, job.items)
        with slot.container():
            c1, c2 = st.columns(2)
            c1.code(plain, language=None, wrap_lines=True)
            c2.code(steered, language=None, wrap_lines=True)

    work = (lm.name, s.key, settings["n_new"], settings["temperature"], settings["seed"])
    return stepwise("steer_gen", work, run, progress, start=dict(settings) if start else None,
                    total=settings["n_new"], live=live)


def sweep(lm, s: recipe.Steer, settings: dict, start: bool) -> list | None:
    """The sweep's points so far (recipes.steering.SweepPoint, one per coefficient); None before
    Run the sweep was clicked for these settings. settings: word, n_new, temperature, seed."""
    coefficients = recipe.sweep_coefficients(s)

    def run(job, say):
        p = job.params
        return (recipe.sweep_point(lm, s, c, p["word"], p["n_new"], p["temperature"], p["seed"])
                for c in coefficients[len(job.items):])

    def progress(job):
        return _("Coefficient sweep: {done} of {total} coefficients").format(done=job.steps, total=job.total)

    work = (lm.name, s.key, settings["word"], settings["n_new"], settings["temperature"], settings["seed"])
    job = stepwise("steer_sweep", work, run, progress, start=dict(settings) if start else None,
                   total=len(coefficients))
    return list(job.items) if job is not None else None


def vector_inputs(lm, t, kind: str, sae):
    """The controls of one kind of steering vector, drawn in two columns (all in the link):
    (inputs for recipes.steering, the feature's description for the feature kind, else None)."""
    c1, c2 = st.columns(2)
    if kind == "feature":
        inputs = dict(feature=controls.number_input(c1, _("Feature"), 0, sae.d_sae - 1, key="steer_feature",
                                                    default=default_feature(lm, t, sae)))
        about = recipe.feature_about(lm, t, sae, inputs["feature"])
        show(about)
        if about.values["layer"] is None:
            st.stop()
        return inputs, about
    elif kind == "pair":
        inputs = dict(a=controls.text_input(c1, _("Prompt A (added)"), key="steer_a", default="Love", max_chars=2000),
                      b=controls.text_input(c2, _("Prompt B (subtracted)"), key="steer_b", default="Hate",
                                            max_chars=2000))
        st.caption(_("Each is read with <|endoftext|> in front; the shorter is padded with spaces. Their difference is "
                     "added to the first positions of the prompt."))
    elif kind == "mean":
        inputs = dict(list_a=controls.text_area(c1, _("Prompts A, one per line (added)"), key="steer_list_a",
                                                default=recipe.LOVE),
                      list_b=controls.text_area(c2, _("Prompts B, one per line (subtracted)"), key="steer_list_b",
                                                default=recipe.HATE))
        st.caption(_("The mean residual over every position of A's prompts minus B's, added at every position."))
    elif kind == "token":
        inputs = dict(token=controls.text_input(c1, _("Token"), key="steer_token", default=" love",
                                                help=_("One token, usually a word with its leading space.")))
        st.caption(_("The token's column of the unembedding: the direction the final residual must point along to "
                     "say it. Its norm is small beside the residual's: coefficients of tens are usual."))
    else:
        inputs = dict(head_layer=controls.selectbox(c1, _("Head's layer"), range(lm.n_layer), key="steer_head_layer"),
                      head=controls.selectbox(c2, _("Head"), range(lm.n_head), key="steer_head"))
        st.caption(_("What this head writes into the residual stream at the prompt's last position."))
    return inputs, None
