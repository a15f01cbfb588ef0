"""Long work: a progress bar that says what is being done and how far, and a Stop that keeps
what was done.

How Stop works in Streamlit: a click while the script runs asks for a rerun, which
interrupts the running script at its next st.* call (here the next progress update, one
layer or one step away); the rerun runs the button's callback, then the page. So work is
done in steps whose results are saved as they come, and the rerun shows them instead of
starting over. The rerun starts on a new thread at once (Streamlit's fast reruns), while
the old run finishes the step it is in: so a job belongs to one run at a time, and a step
that ends after its run lost the job (to a Stop, or to a newer run) is dropped.

- `run_job`: a recipe's `LongJob` (recipes.LongJob): core computes a view one layer at a
  time and caches each layer, so a stopped run keeps the layers it finished and picks up
  from there.
- `stepwise`: a job of steps (tokens, beam-search steps, runs) kept in session state; the
  core generator it drives can resume from the steps already made; `adopt` records steps made
  elsewhere (the Tour) as such a job, finished.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable

import streamlit as st

from i18n import _
from recipes import LongJob

ASK_ABOVE_SECONDS = 2.0  # longer work waits for a click


def run_job(job: LongJob, *, key: str) -> Any | None:
    """`job.run(on_layer)`, where core calls on_layer(L) before computing layer L. The bar and
    the Stop button appear with the first layer that needs computing (nothing shows when all
    is cached). Work guessed to take over ASK_ABOVE_SECONDS (`job.estimate_s`, 0 when cached)
    waits for a Compute click, remembered for `job.work_id`. Returns None when it is waiting
    for that click, or once the person pressed Stop (with Continue). `key` prefixes the
    buttons' keys and the session state kept for the job."""
    label, n_layer, estimate_s, work_id = job.label, job.n_layer, job.estimate_s, job.work_id
    ss = st.session_state
    stopped, asked = f"{key}_stopped", f"{key}_asked"
    if estimate_s > ASK_ABOVE_SECONDS and ss.get(asked) != work_id:
        st.caption(_("{label} takes about {seconds:,.0f} s for this model and prompt.").format(label=label,
                                                                                           seconds=estimate_s))
        st.button(_("Compute"), key=f"{key}_compute", icon=":material/play_arrow:",
                  on_click=ss.update, args=({asked: work_id, stopped: False},))
        return None
    if ss.get(stopped):
        st.info(_("{label}: stopped. The layers already computed are kept; Continue picks up from there.").format(
            label=label))
        st.button(_("Continue"), key=f"{key}_continue", on_click=ss.__setitem__, args=(stopped, False))
        return None
    bar, stop = st.empty(), st.empty()
    shown = []

    def on_layer(layer: int) -> None:
        if not shown:
            stop.button(_("Stop"), key=f"{key}_stop", on_click=ss.__setitem__, args=(stopped, True))
            shown.append(True)
        bar.progress(layer / n_layer, text=_("{label}: layer {layer} of {n_layer}…").format(
            label=label, layer=layer + 1, n_layer=n_layer))

    try:
        return job.run(on_layer)
    finally:
        bar.empty()
        stop.empty()


@dataclass(eq=False)
class Job:
    """Work done in steps, kept in session state as it comes."""

    work: Hashable  # what it computes: model, prompt and settings
    params: object  # the settings it runs with (read by the page's `run`), kept if the widgets change
    total: int  # steps it takes at most
    items: list = field(default_factory=list)  # what the steps made, in order (only the last one, if keep_last)
    steps: int = 0  # steps made
    state: str = "running"  # "running", "stopped" or "done"
    seconds: float = 0.0  # time spent computing it
    owner: object = None  # the script run advancing it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def stopped(self) -> bool:
        return self.state == "stopped"


def _jobs(key: str) -> dict:
    return st.session_state.setdefault(key, {})


def _set_state(key: str, work: Hashable, state: str, only_if: str) -> None:
    job = _jobs(key).get(work)
    if job is None:
        return
    with job.lock:
        if job.state == only_if:  # a Stop that arrives after the end changes nothing
            job.state, job.owner = state, None


def stepwise(key: str, work: Hashable, run: Callable[[Job, Callable[[str], None]], Iterable],
             progress: Callable[[Job], str], *, start: object = None, total: int = 0,
             live: Callable[[Job, object], None] | None = None, keep_last: bool = False,
             max_jobs: int = 8) -> Job | None:
    """The job computing `work`, advanced as far as it goes in this script run.

    `start`: not None when the person asked for the work in this run (a click): a new job with
    these params and `total` steps replaces any job for `work`. Nothing starts otherwise.
    `run(job, say)` yields the steps after those in job.items (a core generator that resumes);
    it may call say(text) to show progress inside a step (reading a long prompt), which is also
    where a Stop can interrupt it. `progress(job)` says what it is doing and how far
    ("Generating: token 12 of 40");
    `live(job, slot)` may draw the work so far in a placeholder. A job still running when the
    script is rerun (a Stop, or any other widget) goes on from its saved steps in that rerun,
    unless Stop was pressed; a stopped job offers Continue. The last `max_jobs` works of `key`
    are kept, so going back to earlier settings (or prompt) shows their result again, stopped
    if it was cut short. Returns None when nothing was asked for `work`.
    """
    jobs = _jobs(key)
    if start is not None:
        jobs.pop(work, None)
        jobs[work] = Job(work, start, total)
        while len(jobs) > max_jobs:
            del jobs[next(iter(jobs))]
    for other in jobs.values():  # left behind by a prompt or settings change: waits for Continue
        if other.work != work and other.state == "running":
            other.state = "stopped"
    job = jobs.get(work)
    if job is None:
        return None
    if job.state == "running":
        _advance(key, job, run, progress, live, keep_last)
    if job.stopped:
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.caption(_("Stopped. {progress}: what was made is kept, and Continue goes on from there.").format(
            progress=progress(job)))
        c2.button(_("Continue"), key=f"{key}_continue", icon=":material/play_arrow:",
                  on_click=_set_state, args=(key, work, "running", "stopped"))
    return job


def adopt(key: str, work: Hashable, params: object, items: Iterable, *, max_jobs: int = 8) -> Job:
    """Record work done elsewhere as a finished job: as if `stepwise(key, work, …)` had made `items` with
    `params`, so the page that runs jobs of `key` shows them at once and runs nothing (the Tour hands
    what its Generate made to the step's page). Replaces any job for `work`; keeps the last `max_jobs`."""
    items = list(items)
    jobs = _jobs(key)
    jobs.pop(work, None)
    jobs[work] = job = Job(work, params, len(items), items, len(items), "done")
    while len(jobs) > max_jobs:
        del jobs[next(iter(jobs))]
    return job


def _advance(key: str, job: Job, run, progress, live, keep_last: bool) -> None:
    bar, stop, shown = st.empty(), st.empty(), st.empty()
    stop.button(_("Stop"), key=f"{key}_stop", icon=":material/stop:", on_click=_set_state,
                args=(key, job.work, "stopped", "running"), help=_("Stops here; what was made so far is kept."))

    def say(text: str) -> None:
        bar.progress(min(job.steps / max(job.total, 1), 1.0), text=f"{text}…")

    say(progress(job))
    me = object()
    with job.lock:  # from here on, an older run still finishing a step cannot add to the job
        if job.state != "running":
            return
        job.owner = me
        steps = iter(run(job, say))  # resumes after job.items, read now
    t0 = time.perf_counter()
    for item in steps:
        with job.lock:
            if job.owner is not me:  # Stop, or a newer run took the job over: this step is not wanted
                return
            if keep_last:
                job.items[:] = [item]
            else:
                job.items.append(item)  # saved before the next st.* call, where a Stop interrupts
            job.steps += 1
            job.seconds += time.perf_counter() - t0
        say(progress(job))
        if live is not None:
            live(job, shown)
        t0 = time.perf_counter()
    with job.lock:
        if job.owner is not me:
            return
        job.state, job.owner = "done", None
    bar.empty()
    stop.empty()
    shown.empty()
