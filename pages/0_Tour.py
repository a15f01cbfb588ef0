"""Tour: the GPT-2 figures of Wolfram's essay, one step at a time, each drawn live by the recipe of the
page it comes from, with a button that opens that page on the same prompt and controls.

Steps, texts and settings live in recipes.tour. Continuations (steps 2 and 3) run only when
Generate is pressed, and are kept per model and step for the session."""
import streamlit as st

from i18n import N_, _
from recipes import tour
from ui import controls
from ui.figures import show
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


def go_to(number: int) -> None:
    ss["tour_step"] = min(max(number, numbers[0]), numbers[-1])


c1, c2, c3 = st.columns([6, 1, 1], vertical_alignment="bottom")
number = controls.selectbox(c1, _("Step"), numbers, key="tour_step", format_func=tour.step_label)
c2.button(_("Previous"), key="tour_prev", on_click=go_to, args=(number - 1,), disabled=number == numbers[0],
          icon=":material/arrow_back:", width="stretch")
c3.button(_("Next"), key="tour_next", on_click=go_to, args=(number + 1,), disabled=number == numbers[-1],
          icon=":material/arrow_forward:", width="stretch")
step = tour.STEPS[number - 1]

st.subheader(step.title)  # in the page's language (recipes.tour translates its steps when read)
st.markdown(step.text)
note = tour.model_note(lm)
if note:
    st.caption(note)

t = get_trace(lm, step.prompt) if step.uses_trace else None
made = None
if step.generates:
    runs = ss.setdefault("_tour_runs", {})  # (model, step) -> what Generate made
    if st.button(_("Generate"), key="tour_generate", type="primary", icon=":material/play_arrow:"):
        with st.spinner(_("{model} is writing…").format(model=lm.label)):
            runs[(lm.name, number)] = tour.continuations(step, lm, t)
    made = runs.get((lm.name, number))
show(tour.view(step, lm, t, made))

if st.button(_("Open this in the {page} page").format(page=step.page_label), key="tour_open",
             icon=":material/open_in_new:"):
    ss.update(tour.page_state(step, lm))
    set_prompt(step.prompt)
    st.switch_page(step.page)
