"""Tour: the GPT-2 figures of Wolfram's essay, one step at a time, each drawn live by the recipe of the
page it comes from, with a button that opens that page on the same prompt and controls.

Steps, texts and settings live in recipes.tour. Continuations (steps 2, 3 and the steering step) run
only when Generate is pressed, are kept per model and step for the session, and go with the step to
its page, which shows them without running again."""
import streamlit as st

from i18n import N_, _
from recipes import tour, tour_notes
from ui import controls, features
from ui.figures import show
from ui.progress import adopt
from ui.shell import get_trace, setup_page
from ui.url import set_prompt

lm = setup_page(
    N_("Tour: the essay's figures"),
    N_("Stephen Wolfram's essay *What Is ChatGPT Doing … and Why Does It Work?* looks inside GPT-2 with a series of "
       "figures. Here they are again, in the essay's order, computed live on the essay's own prompts. Each step says "
       "what to look for, and opens the page where you can change the prompt and every setting."),
)
if lm is None:
    st.stop()
ss = st.session_state
numbers = list(range(1, len(tour.STEPS) + 1))

c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
number = controls.selectbox(c1, _("Step"), numbers, key="tour_step", format_func=tour.step_label)
previous, following = max(number - 1, numbers[0]), min(number + 1, numbers[-1])  # ui's callback: a page's holds lm
c2.button(_("Previous"), key="tour_prev", on_click=controls.set_state, args=({"tour_step": previous},),
          disabled=number == numbers[0], icon=":material/arrow_back:", width="stretch")
c3.button(_("Next"), key="tour_next", on_click=controls.set_state, args=({"tour_step": following},),
          disabled=number == numbers[-1], icon=":material/arrow_forward:", width="stretch")
step = tour.STEPS[number - 1]

st.subheader(step.title)  # in the page's language (recipes.tour translates its steps when read)
t = get_trace(lm, step.prompt) if step.uses_trace else None
st.markdown(tour_notes.step_text(step, lm, t))  # with what differs on a model that is not GPT-2
note = tour.model_note(lm)
if note:
    st.caption(note)

made = sae = None
if step.generates:
    runs = ss.setdefault("_tour_runs", {})  # (model, step) -> what Generate made
    if st.button(_("Generate"), key="tour_generate", type="primary", icon=":material/play_arrow:"):
        with st.spinner(_("{model} is writing…").format(model=lm.label)):
            runs[(lm.name, step.kind)] = tour.continuations(step, lm, t)
    made = runs.get((lm.name, step.kind))
if step.kind == "features" and tour.shipped_sae(lm):
    sae = features.load_sae(lm, tour.shipped_sae(lm))  # the Features page's cached loader (and its message)
show(tour.view(step, lm, t, made, sae))


def open_page() -> None:
    """The step's page with its controls, the step's prompt in the sidebar, and what Generate made here."""
    ss.update(tour.page_state(step, lm))
    kept = tour.carried(step, lm, t, made)
    if kept is not None:  # the page's own finished job: it shows the text at once
        adopt(*kept)
    if step.uses_trace:  # a figure of the parameters alone leaves the person's prompt alone
        set_prompt(step.prompt)


c1, c2 = st.columns([2, 3], vertical_alignment="center")
if c1.button(_("Open this in the {page} page").format(page=step.page_label), key="tour_open",
             icon=":material/open_in_new:"):
    open_page()
    st.switch_page(step.page)
if step.uses_trace and ss.get("prompt") != step.prompt:
    c2.caption(_("This step reads its own prompt, not the one in the sidebar; opening the page puts the step's "
                 "prompt in the sidebar, in place of yours, with the text Generate made here.") if made is not None
               else _("This step reads its own prompt, not the one in the sidebar; opening the page puts the step's "
                      "prompt in the sidebar, in place of yours."))
elif made is not None:
    c2.caption(_("The page opens with the text Generate made here."))
