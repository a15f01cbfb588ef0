"""One compute lane for model work: every session's forwards and per-layer recomputations go through
a small pool of worker threads sized to the machine, in fair order between sessions, and identical
work is done once.

Why: Streamlit runs each session's script on its own thread, and each forward uses torch's intra-op
threads. Thirty sessions on a 2-core machine would ask for ~60 compute threads that spin waiting for
each other; through the lane they take turns on the cores instead.

- **Workers.** `GPT2VIZ_LANE_WORKERS` (default: 1, which measured fastest in total on small CPUs, see
  `benchmarks/lane_workers.py`) threads run the work; torch's intra-op threads are set so workers x
  threads = the cores (`GPT2VIZ_LANE_THREADS`, else `OMP_NUM_THREADS`, overrides: replicas on one
  machine split its cores). On a GPU the lane has one worker: one stream.
- **Fair order.** Each owner (a browser session) has its own queue; workers take the oldest item of
  each owner in turn (round robin), so a session that asks for 12 layers does not make the next
  session wait for all 12.
- **Shared work.** Work has a key (the byte-bounded cache's key); a second request for a key that is
  queued or running waits on the same computation instead of queueing another.
- **Waiting.** `run` blocks its caller until the result is there, calling `on_wait(ahead, running,
  label)` every `POLL_S` (ahead: items that will run before it; running: it has started). The app's waiter
  shows "waiting: N ahead" there. If `on_wait` raises (Streamlit stops a script run that way when its
  tab closes or it is rerun), the caller leaves: work that has not started and that nobody else waits
  for is dropped from the queue; work already running finishes (its result is cached for the next
  request).
- **Work nobody waits for yet.** `prefetch` queues work a page will likely ask for next (the summaries
  of every layer, once one attention view is drawn). It runs only when no asked work is queued, one
  piece at a time, so it never delays what a person is waiting for by more than one piece; a request
  for its key joins it (and moves it into that session's turn if it has not started). At most
  PREFETCH_MAX pieces wait; the oldest go first.
- **Nesting.** Work running on a worker that asks for more work (a layer's MLP needs its attention
  first) does it there and then, on the same worker, so a one-worker lane never waits on itself.

Never imports streamlit; the app sets the owner and the waiter per script run (`ui.shell`).
"""
from __future__ import annotations

import contextvars
import itertools
import os
import threading
from collections import OrderedDict, deque
from typing import Callable, Hashable

ENV_WORKERS = "GPT2VIZ_LANE_WORKERS"
ENV_THREADS = "GPT2VIZ_LANE_THREADS"
POLL_S = 0.1
PREFETCH_MAX = 48  # prefetched pieces waiting at most (each holds its trace): the oldest are dropped

# Who is asking, and how they want to hear about waiting: set per script run by the app. The waiter
# is a factory: called once per wait, it returns what the lane calls with (ahead, running, label)
# every POLL_S, and whose optional `close()` is called when the wait ends normally.
owner_var: contextvars.ContextVar[Hashable] = contextvars.ContextVar("lane_owner", default=None)
waiter_var: contextvars.ContextVar[Callable[[], Callable[[int, bool, str], None]] | None] = contextvars.ContextVar(
    "lane_waiter", default=None)


class Ticket:
    """One piece of work: queued, running or done, with everyone waiting for it."""

    __slots__ = ("key", "fn", "owner", "label", "waiters", "state", "value", "error", "done", "seq")

    def __init__(self, key: Hashable, fn: Callable[[], object], owner: Hashable, label: str, seq: int):
        self.key, self.fn, self.owner, self.label, self.seq = key, fn, owner, label, seq
        self.waiters = 1
        self.state = "queued"  # "queued", "running", "done" or "dropped"
        self.value = self.error = None
        self.done = threading.Event()


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    try:
        return max(1, int(value)) if value else None
    except ValueError:
        return None


class Lane:
    """A bounded pool of workers with per-owner queues (see the module's docstring)."""

    def __init__(self, workers: int | None = None, threads: int | None = None, *, set_torch_threads: bool = True):
        self.workers = workers or _env_int(ENV_WORKERS) or 1
        self.threads = (threads or _env_int(ENV_THREADS) or _env_int("OMP_NUM_THREADS")  # replicas share cores
                        or max(1, _cores() // self.workers))
        self._set_torch = set_torch_threads
        self._queues: OrderedDict[Hashable, deque[Ticket]] = OrderedDict()  # owner -> queued tickets, in turn
        self._inflight: dict[Hashable, Ticket] = {}  # key -> queued or running ticket
        self._idle: deque[Ticket] = deque()  # prefetched work, run when no owner's queue has any
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._local = threading.local()  # .worker: this thread is one of the lane's workers
        self._threads: list[threading.Thread] = []
        self.dropped = self.shared = 0  # work dropped unrun, and requests that joined running or queued work

    # ---- the workers ---------------------------------------------------------------------------
    def _start(self) -> None:
        if self._threads:
            return
        if self._set_torch:
            import torch  # the lane is the only place that decides how many threads torch uses

            torch.set_num_threads(self.threads)
        for i in range(self.workers):
            th = threading.Thread(target=self._work, name=f"gpt2viz-lane-{i}", daemon=True)
            th.start()
            self._threads.append(th)

    def _next(self) -> Ticket:
        """The next ticket in fair order (called with the condition held): the first owner's oldest
        ticket, and that owner goes to the back of the line."""
        while True:
            for owner, queue in self._queues.items():
                ticket = queue.popleft()
                if queue:
                    self._queues.move_to_end(owner)
                else:
                    del self._queues[owner]
                return ticket
            if self._idle:
                return self._idle.popleft()
            self._cond.wait()

    def _work(self) -> None:
        self._local.worker = True
        if self._set_torch:
            import torch

            torch.set_num_threads(self.threads)
        while True:
            with self._cond:
                ticket = self._next()
                ticket.state = "running"
            self._execute(ticket)

    def _execute(self, ticket: Ticket) -> None:
        try:
            ticket.value = ticket.fn()
        except BaseException as e:  # handed to every waiter, who raises it
            ticket.error = e
        finally:
            with self._cond:
                ticket.state = "done"
                ticket.fn = None
                if self._inflight.get(ticket.key) is ticket:
                    del self._inflight[ticket.key]
            ticket.done.set()

    # ---- asking for work -------------------------------------------------------------------------
    def ahead_of(self, ticket: Ticket) -> int:
        """How many queued tickets will start before this one (0 once it runs)."""
        with self._cond:
            return self._ahead(ticket)

    def _ahead(self, ticket: Ticket) -> int:
        if ticket.state != "queued":
            return 0
        queues = list(self._queues.values())
        mine = next((i for i, q in enumerate(queues) if ticket in q), None)
        if mine is None:
            return 0
        depth = list(queues[mine]).index(ticket)  # this owner's tickets before it
        # Round robin: each owner's first `depth` tickets go first, and the `depth + 1`-th of the owners before it.
        return sum(min(len(q), depth + (1 if i < mine else 0)) for i, q in enumerate(queues) if i != mine) + depth

    def queued(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def run(self, key: Hashable, fn: Callable[[], object], *, label: str = "", owner: Hashable = None,
            on_wait: Callable[[int, bool, str], None] | None = None) -> object:
        """fn() run on the lane; a call with the key of queued or running work waits for that work
        instead (key None: never shared). Blocks until done; see the module's docstring for on_wait
        (default: one made by the context's `waiter_var`)."""
        if getattr(self._local, "worker", False):
            return self._nested(key, fn)
        owner = owner if owner is not None else owner_var.get()
        owner = owner if owner is not None else threading.get_ident()
        if on_wait is None and waiter_var.get() is not None:
            on_wait = waiter_var.get()()
        with self._cond:
            self._start()
            ticket = self._inflight.get(key) if key is not None else None
            if ticket is not None:
                ticket.waiters += 1
                self.shared += 1
                if ticket.state == "queued" and ticket in self._idle:  # prefetched, now asked for: its turn
                    self._idle.remove(ticket)
                    ticket.owner = owner
                    self._queues.setdefault(owner, deque()).append(ticket)
            else:
                ticket = Ticket(key, _as_caller(fn), owner, label, next(self._seq))
                if key is not None:
                    self._inflight[key] = ticket
                self._queues.setdefault(owner, deque()).append(ticket)
                self._cond.notify()
        try:
            while not ticket.done.wait(POLL_S):
                if on_wait is not None:
                    with self._cond:
                        ahead, running = self._ahead(ticket), ticket.state == "running"
                    on_wait(ahead, running, ticket.label)
        except BaseException:
            self._leave(ticket)
            raise
        close = getattr(on_wait, "close", None)
        if close is not None:
            close()
        if ticket.error is not None:
            raise ticket.error
        return ticket.value

    def prefetch(self, key: Hashable, fn: Callable[[], object], *, label: str = "") -> bool:
        """Queue fn() to run when no asked work is queued (see the module's docstring); nobody waits
        for it, and its result is whatever fn keeps (a cache). False when the key is already queued
        or running."""
        with self._cond:
            if key is None or key in self._inflight:
                return False
            self._start()
            ticket = Ticket(key, _as_caller(fn), None, label, next(self._seq))
            ticket.waiters = 0
            self._inflight[key] = ticket
            self._idle.append(ticket)
            while len(self._idle) > PREFETCH_MAX:
                self._drop(self._idle.popleft())
            self._cond.notify()
        return True

    def _drop(self, ticket: Ticket) -> None:
        """(with the condition held) A queued ticket nobody waits for, taken out unrun."""
        if self._inflight.get(ticket.key) is ticket:
            del self._inflight[ticket.key]
        ticket.state, ticket.fn = "dropped", None
        self.dropped += 1
        ticket.done.set()

    def _leave(self, ticket: Ticket) -> None:
        """A waiter went away: drop the ticket if it has not started and nobody else waits for it."""
        with self._cond:
            ticket.waiters -= 1
            if ticket.waiters > 0 or ticket.state != "queued":
                return
            queue = self._queues.get(ticket.owner)
            if queue is not None and ticket in queue:
                queue.remove(ticket)
                if not queue:
                    del self._queues[ticket.owner]
            self._drop(ticket)

    def _nested(self, key: Hashable, fn: Callable[[], object]) -> object:
        """Work asked for by work on a worker: done here, or joined if another worker is on it, or
        taken out of the queue and done here if it is waiting there."""
        with self._cond:
            ticket = self._inflight.get(key) if key is not None else None
            if ticket is not None and ticket.state == "queued":
                queue = self._queues.get(ticket.owner)
                if queue is not None and ticket in queue:
                    queue.remove(ticket)
                    if not queue:
                        del self._queues[ticket.owner]
                elif ticket in self._idle:
                    self._idle.remove(ticket)
                ticket.state = "running"
                claimed = ticket
            else:
                claimed = None
        if ticket is not None and claimed is None:  # running on another worker (never on this one)
            ticket.done.wait()
            if ticket.error is not None:
                raise ticket.error
            return ticket.value
        if claimed is not None:
            self._execute(claimed)
            if claimed.error is not None:
                raise claimed.error
            return claimed.value
        return fn()


def _as_caller(fn: Callable[[], object]) -> Callable[[], object]:
    """fn as its caller would run it: with the caller's context variables (the page's language) and
    torch's grad mode (inference mode and no_grad are per thread)."""
    ctx = contextvars.copy_context()
    import torch

    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def call():
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return ctx.run(fn)
    return call


_LANE: Lane | None = None
_LANE_LOCK = threading.Lock()


def lane() -> Lane:
    """The process-wide lane."""
    global _LANE
    with _LANE_LOCK:
        if _LANE is None:
            _LANE = Lane()
        return _LANE


def run(key: Hashable, fn: Callable[[], object], *, label: str = "") -> object:
    """fn() on the process-wide lane, shared with concurrent calls of the same key."""
    return lane().run(key, fn, label=label)
