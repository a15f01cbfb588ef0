"""The Generation page's long jobs (ui.progress.stepwise): what each step runs, what the progress
bar says, and the text drawn as it grows. Generate and Run side by side start them; Stop keeps
what was made and Continue goes on from there.

Core's generators are looked up when a job runs (`sampling.generate_steps`, `beam.beam_search_steps`),
not bound at import, so this module always drives the functions core.sampling and core.beam hold at
that moment."""
from __future__ import annotations

from typing import Sequence

from core import beam, sampling
from core.kv_cache import max_new_tokens
from i18n import _
from recipes.generation import text_so_far
from ui.progress import Job, stepwise


def _reading(what: str, say):
    """`what` is in the page's language."""
    reading = _("{what}: reading the prompt, {read:,} of {n:,} tokens")
    return lambda read, n: say(reading.format(what=what, read=read, n=n))


def generation(lm, ids: tuple[int, ...], settings: dict, start: bool) -> Job | None:
    """The Generate job for this model and prompt (recipes.generation.settings; `start`: Generate
    was clicked in this run), advanced as far as it goes; None before the first Generate."""

    def run(job, say):
        p = job.params
        if p["method"] == "beam":
            return beam.beam_search_steps(lm, ids, p["n_new"], *p["beam"],
                                          resume=job.items[-1] if job.items else None,
                                          on_prompt=_reading(_("Beam search"), say))
        return sampling.generate_steps(lm, ids, p["n_new"], p["decoding"], resume=[s.token_id for s in job.items],
                                       on_prompt=_reading(_("Generating"), say))

    def progress(job):
        beams = job.params["method"] == "beam"
        what = _("Beam search with {n} beams").format(n=job.params["beam"][0]) if beams else _("Generating")
        if not job.steps:
            return _("{what}: reading the prompt ({n:,} tokens)").format(what=what, n=len(ids))
        if beams:
            finished = int(job.items[-1].is_finished.sum())
            return _("{what}: step {step} of at most {total}, {finished} beams finished").format(
                what=what, step=job.steps, total=job.total, finished=finished)
        return _("{what}: token {step} of {total} ({rate:.1f} tokens/s)").format(
            what=what, step=job.steps, total=job.total, rate=job.steps / max(job.seconds, 1e-9))

    def live(job, slot):
        slot.code(text_so_far(lm, ids, job.params["method"], job.items), language=None, wrap_lines=True)

    return stepwise("gen", (lm.name, ids), run, progress, start=settings if start else None,
                    total=max_new_tokens(lm, len(ids), settings["n_new"]), live=live,
                    keep_last=settings["method"] == "beam")


def steps_of(job: Job | None) -> list:
    """The Steps of a sampled or greedy job ([] for none, or for beam search)."""
    return list(job.items) if job is not None and job.params["method"] != "beam" else []


def side_by_side(lm, ids: tuple[int, ...], plan: dict, start: bool) -> Sequence | None:
    """The (run, token id) pairs of the side-by-side job (recipes.generation.side_by_side_plan), as
    far as it goes; None before Run side by side was clicked for these settings."""
    labels, decodings, n_tokens = plan["labels"], plan["decodings"], plan["n_tokens"]

    def progress(job):
        if not job.items:
            return _("Side by side: reading the prompt ({n:,} tokens)").format(n=len(ids))
        r = job.items[-1][0]
        done = sum(1 for run_, _token in job.items if run_ == r)
        return _("Side by side: run {run} of {runs} ({label}), token {done} of {n_tokens}").format(
            run=r + 1, runs=len(labels), label=labels[r], done=done, n_tokens=n_tokens)

    def run(job, say):
        return sampling.continue_runs(lm, ids, n_tokens, decodings, sampling.runs_from_pairs(job.items, len(decodings)),
                                      on_prompt=_reading(_("Side by side"), say))

    job = stepwise("gen_sbs", (lm.name, ids, n_tokens, plan["temperature"], plan["seeds"]), run, progress,
                   start=True if start else None, total=len(decodings) * n_tokens)
    return list(job.items) if job is not None else None

