"""The compute lane (core.lane): shared work is done once, sessions take turns, a session that goes away
drops its queued work, and the page says it is waiting."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from core.cache import ByteBoundedCache
from core.lane import Lane


@dataclass
class Blob:
    nbytes: int


class Gate:
    """Work that holds the lane's only worker until released."""

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self):
        self.started.set()
        assert self.release.wait(10)
        return "gate"


def in_thread(fn, *args, **kwargs):
    out = {}

    def go():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e
    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th, out


def wait_until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.fixture
def lane():
    return Lane(workers=1, threads=1, set_torch_threads=False)


def test_concurrent_misses_of_one_key_compute_once(monkeypatch):
    """Ten sessions miss the same trace at once: one computation, ten identical answers."""
    import core.cache

    shared = Lane(workers=2, threads=1, set_torch_threads=False)
    monkeypatch.setattr(core.cache, "lane", lambda: shared)
    cache = ByteBoundedCache(max_bytes=10_000)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.3)  # long enough for every request to arrive while it runs
        return Blob(10)

    barrier = threading.Barrier(10)
    threads = [in_thread(lambda: (barrier.wait(), cache.get_or_compute("k", compute))[1]) for _ in range(10)]
    for th, _ in threads:
        th.join(10)
    values = [out["value"] for _, out in threads]
    assert len(calls) == 1
    assert all(v is values[0] for v in values)
    assert cache.misses == 1


def test_a_session_that_goes_away_drops_its_queued_work(lane):
    """Work queued behind another session's is dropped when its page stops waiting (Streamlit raises in
    the waiter when the tab closes or the script reruns), and never runs."""
    gate = Gate()
    first, _ = in_thread(lane.run, "a", gate, owner="other")
    assert gate.started.wait(5)
    ran = []

    class Gone(BaseException):
        pass

    def waiter(ahead, running, label):
        raise Gone

    th, out = in_thread(lane.run, "b", lambda: ran.append(1), owner="me", on_wait=waiter)
    th.join(5)
    assert isinstance(out.get("error"), Gone)
    assert lane.queued() == 0 and lane.dropped == 1
    gate.release.set()
    first.join(5)
    time.sleep(0.2)
    assert ran == []


def test_work_shared_with_a_session_still_waiting_is_kept(lane):
    """One of two sessions waiting for the same work leaves: the other still gets it."""
    gate = Gate()
    first, _ = in_thread(lane.run, "a", gate, owner="x")
    assert gate.started.wait(5)
    leaving = threading.Event()

    def leave(*_):
        if leaving.is_set():
            raise KeyboardInterrupt

    th1, out1 = in_thread(lane.run, "shared", lambda: "result", owner="s1", on_wait=leave)
    wait_until(lambda: lane.queued() == 1)
    th2, out2 = in_thread(lane.run, "shared", lambda: "other", owner="s2")
    wait_until(lambda: lane.shared == 1)
    leaving.set()
    th1.join(5)
    gate.release.set()
    th2.join(5)
    assert isinstance(out1.get("error"), KeyboardInterrupt)
    assert out2 == {"value": "result"}


def test_sessions_take_turns(lane):
    """A session that asks for six layers does not make the next session wait for all six."""
    gate = Gate()
    in_thread(lane.run, None, gate, owner="first")
    assert gate.started.wait(5)
    order = []
    heavy = [in_thread(lane.run, ("heavy", i), lambda i=i: order.append(("heavy", i)), owner="heavy")
             for i in range(6)]
    wait_until(lambda: lane.queued() == 6)
    light = in_thread(lane.run, "light", lambda: order.append("light"), owner="light")
    wait_until(lambda: lane.queued() == 7)
    gate.release.set()
    for th, _ in heavy + [light]:
        th.join(5)
    assert order.index("light") == 1, order  # after the heavy session's first layer, not its sixth


def test_the_waiter_hears_how_many_are_ahead(lane):
    gate = Gate()
    in_thread(lane.run, None, gate, owner="a")
    assert gate.started.wait(5)
    for i in range(3):
        in_thread(lane.run, ("b", i), lambda: None, owner="b")
    wait_until(lambda: lane.queued() == 3)
    heard = []
    th, out = in_thread(lane.run, "mine", lambda: "mine", owner="c",
                        on_wait=lambda ahead, running, label: heard.append((ahead, running, label)), label="Mine")
    wait_until(lambda: len(heard) >= 2)
    assert heard[0] == (1, False, "Mine")  # round robin: b's first item, then this one
    gate.release.set()
    th.join(5)
    assert out == {"value": "mine"}


def test_work_that_asks_for_more_work_does_not_wait_on_itself(lane):
    """With one worker, a layer's MLP needs its attention first: the nested request runs in place."""
    inner = lambda: "inner"  # noqa: E731
    th, out = in_thread(lane.run, "outer", lambda: lane.run("inner", inner) + "+outer")
    th.join(5)
    assert out == {"value": "inner+outer"}


def test_errors_reach_every_waiter(lane):
    gate = Gate()
    in_thread(lane.run, None, gate, owner="a")
    assert gate.started.wait(5)

    def boom():
        raise ValueError("no")

    waiting = [in_thread(lane.run, "bad", boom, owner=o) for o in ("x", "y")]
    wait_until(lambda: lane.shared == 1)
    gate.release.set()
    for th, out in waiting:
        th.join(5)
        assert isinstance(out.get("error"), ValueError)


def test_work_runs_in_the_asking_pages_language(lane):
    """Text made on the worker (an error, a label) is in the language of the page that asked."""
    from i18n import _, set_language, use_language

    def text():
        return _("Compute")

    with use_language("zh"):
        set_language("zh")
        th, out = in_thread(lambda: (set_language("zh"), lane.run(None, text))[1])
        th.join(5)
    assert out["value"] != "Compute" and out["value"] == _catalog_zh("Compute")


def _catalog_zh(msgid: str) -> str:
    from i18n import _, use_language

    with use_language("zh"):
        return _(msgid)


def test_the_page_says_it_waits_behind_other_sessions():
    """A page whose work is queued behind another session's shows "Waiting for the model: 1 request …
    ahead" at once (kept on the page here by not clearing it, to read it after the run)."""
    from streamlit.testing.v1 import AppTest

    import core.lane
    import ui.waiting

    gate = Gate()
    shared = core.lane.lane()
    blocker, _ = in_thread(shared.run, None, gate, owner="another session")
    assert gate.started.wait(5)
    in_thread(shared.run, ("another", 1), lambda: None, owner="another session")
    wait_until(lambda: shared.queued() == 1)
    threading.Timer(1.5, gate.release.set).start()

    def script():
        import core.lane
        import ui.waiting

        ui.waiting.join_lane()
        core.lane.run(("mine",), lambda: None, label="Computing layer 3's attention over 12 tokens…")

    keep = ui.waiting.Waiting.close
    ui.waiting.Waiting.close = lambda self: None
    try:
        at = AppTest.from_function(script, default_timeout=20).run()
    finally:
        ui.waiting.Waiting.close = keep
        gate.release.set()
        blocker.join(5)
    shown = [i.value for i in at.info]
    # The last message drawn stays: "1 request … ahead" for the 1.5 s held, unless a poll fell in the moment
    # between the other session's item and this one ("next in line").
    assert any("Waiting for the model" in s and ("1 request" in s or "next in line" in s) and "layer 3" in s
               for s in shown), shown


@pytest.mark.parametrize("which", ["generation", "steering"])
def test_generation_steps_take_their_turn_on_the_lane(which, tiny_lm, monkeypatch):
    """A generation (or steered generation) step behind another session's work waits for it instead of
    running beside it (2 + 2 torch threads on 2 cores before), and its logits are still the model's."""
    import torch
    from transformers import DynamicCache

    import core.kv_cache
    import core.lane
    import core.steering

    shared = Lane(workers=1, threads=1, set_torch_threads=False)
    monkeypatch.setattr(core.lane, "_LANE", shared)  # the process-wide lane, as the app has it
    ids = [5, 17, 3, 42, 8]
    if which == "generation":
        step = lambda: core.kv_cache.next_logits(  # noqa: E731
            tiny_lm, torch.tensor([ids]), DynamicCache(config=tiny_lm.config))[0]
    else:
        step = lambda: torch.as_tensor(next(core.steering.generate(tiny_lm, ids, 1)).probs)  # noqa: E731
    gate = Gate()
    blocker, _ = in_thread(shared.run, None, gate, owner="another session")
    wait_until(gate.started.is_set)
    th, out = in_thread(step)
    time.sleep(0.4)
    assert th.is_alive() and not out, "the step ran beside another session's work"
    gate.release.set()
    th.join(10)
    blocker.join(10)
    with torch.inference_mode():
        logits = tiny_lm.model(torch.tensor([ids])).logits[0, -1].float()
    expected = logits if which == "generation" else torch.softmax(logits, -1)
    torch.testing.assert_close(out["value"], expected, atol=1e-5, rtol=1e-4)


def test_prefetched_work_runs_only_when_nobody_waits_and_a_request_joins_it(lane):
    """Work queued ahead (prefetch) runs after every asked piece, however late that was asked; a request for
    a prefetched key that has not started moves it into the asker's turn and is answered by that one run."""
    gate = Gate()
    blocker, _ = in_thread(lane.run, None, gate, owner="A")
    wait_until(gate.started.is_set)
    order, calls = [], []
    assert lane.prefetch("ahead", lambda: order.append("prefetched"))
    assert not lane.prefetch("ahead", lambda: order.append("twice"))  # already queued
    assert lane.prefetch("joined", lambda: (calls.append(1), "value")[1])
    asked, _ = in_thread(lane.run, None, lambda: order.append("asked"), owner="B")
    wait_until(lambda: lane.queued() == 1)
    joiner, got = in_thread(lane.run, "joined", lambda: "not this", owner="C")
    wait_until(lambda: lane.queued() == 2)  # moved into C's turn, before the other prefetched piece
    gate.release.set()
    for th in (blocker, asked, joiner):
        th.join(10)
    wait_until(lambda: len(order) == 2)
    assert order == ["asked", "prefetched"]
    assert got["value"] == "value" and calls == [1]


def test_the_attention_page_prefetches_what_its_views_read_when_short_and_never_when_long(tiny_env, monkeypatch):
    """After a view of the Attention page is drawn, what "One head across layers" (the picked head in every
    layer) and the entropy atlas (the summaries) read is computed while the lane is idle; when it would
    take over the page's 2 s (estimated), nothing starts unasked."""
    import recipes.attention
    from core.attention import head_across_cached, summaries_cached
    from core.model import load_model
    from core.trace import trace
    from recipes.attention import grid_side
    from tests import apptest

    lm = load_model(str(tiny_env))
    prompt = "The lane prefetches the summaries of a prompt nobody opened yet, once."
    t = trace(lm, prompt)
    side = grid_side(lm)
    monkeypatch.setattr(recipes.attention, "summaries_seconds", lambda t: 12.0)
    at = apptest.open_page(apptest.ATTENTION, prompt)
    assert at.get("plotly_chart")
    time.sleep(1.0)
    assert not summaries_cached(t, side) and not head_across_cached(t, 2, side)
    monkeypatch.setattr(recipes.attention, "summaries_seconds", lambda t: 0.1)
    at.selectbox(key="attn_head").set_value(2).run()
    wait_until(lambda: summaries_cached(t, side) and head_across_cached(t, 2, side), timeout=20)
    assert not head_across_cached(t, 1, side)  # the picked head's, not every head's
