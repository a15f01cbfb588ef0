"""ui.progress.adopt: work done elsewhere (the Tour's Generate) becomes the page's own finished job, so
the page shows it at once and runs nothing; what stepwise keeps stays bounded."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _page():
    import streamlit as st

    from ui.progress import adopt, stepwise

    ss = st.session_state
    if not ss.get("adopted"):
        for n in range(ss.get("n_adopted", 1)):
            adopt("demo", ("work", n), {"n_new": 3}, iter(["a", "b", "c"]))
        ss["adopted"] = True
    ran = ss.setdefault("ran", [])

    def run(job, say):
        ran.append(job.work)
        yield "made here"

    job = stepwise("demo", ("work", 0), run, lambda job: f"step {job.steps} of {job.total}")
    if job is not None:
        st.code("".join(job.items))
        st.caption(f"{job.state} · {job.steps} of {job.total} · {job.params}")


def test_an_adopted_job_is_shown_done_and_never_run_again():
    at = AppTest.from_function(_page).run()
    assert not at.exception, at.exception
    assert at.code[0].value == "abc" and at.caption[0].value == "done · 3 of 3 · {'n_new': 3}"
    assert at.session_state["ran"] == [] and not at.button  # no Stop, no Continue
    at.run()
    assert at.session_state["ran"] == [] and at.code[0].value == "abc"


def test_adopting_keeps_the_last_jobs_only():
    at = AppTest.from_function(_page)
    at.session_state["n_adopted"] = 10
    at.run()
    assert not at.exception
    assert list(at.session_state["demo"]) == [("work", n) for n in range(2, 10)]  # ("work", 0) went first
    assert not at.code and at.session_state["ran"] == []  # nothing asked for the work that went: nothing runs
