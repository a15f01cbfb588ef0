"""The models in memory, shared by every browser session: each loaded once, at most a few at a
time, failures remembered. Never imports streamlit (the app keeps one store in
`st.cache_resource`)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from i18n import _

from . import model
from .model import LoadedModel, ModelLoadError, ProgressFn, display_name


class ModelStore:
    """Process-wide loaded models, shared by every browser session, loaded once each.

    At most `max_models` stay in memory (gpt2-xl alone takes 6 GB); the least recently used
    goes first, and `on_evict(name)` lets caches drop what they keep for it. Failures are
    remembered too (a model that is not in the offline cache would otherwise be retried,
    slowly, on every widget change) until `forget(name)`; they hold no model and do not count.
    Each name has its own lock: one session's 6 GB download never makes another session wait
    for a model that is already loaded, or for a different one.
    """

    MAX_FAILURES = 32

    def __init__(self, max_models: int = 2, on_evict: Callable[[str], None] | None = None):
        self.max_models = max_models
        self.on_evict = on_evict
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._failed: OrderedDict[str, ModelLoadError] = OrderedDict()
        self._lock = threading.Lock()  # guards the dicts; held only for a moment
        self._loading: dict[str, threading.Lock] = {}

    def _lookup(self, name: str) -> LoadedModel | ModelLoadError | None:
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        return self._failed.get(name)

    def get(self, name: str, progress: ProgressFn | None = None) -> LoadedModel:
        """The model for `name`, loading it if needed; raises ModelLoadError (also remembered)."""
        with self._lock:
            hit = self._lookup(name)
            name_lock = self._loading.setdefault(name, threading.Lock())
        if hit is None:
            if not name_lock.acquire(blocking=False):  # a second session asking for the same model waits for the load
                if progress:
                    waiting = _("Another session is loading {name}; waiting for it")
                    progress(0.0, waiting.format(name=display_name(name)))
                name_lock.acquire()
            try:
                with self._lock:
                    hit = self._lookup(name)
                if hit is None:
                    hit = self._load(name, progress)
            finally:
                name_lock.release()
        if isinstance(hit, ModelLoadError):
            raise hit.detached()  # a fresh exception: re-raising the stored one would chain every traceback
        return hit

    def _load(self, name: str, progress: ProgressFn | None) -> LoadedModel | ModelLoadError:
        try:
            lm = model.load_model(name, progress=progress)
        except ModelLoadError as e:
            with self._lock:
                self._failed[name] = e.detached()
                while len(self._failed) > self.MAX_FAILURES:
                    self._failed.popitem(last=False)
            return e.detached()
        gone = []
        with self._lock:
            self._failed.pop(name, None)
            while len(self._loaded) >= self.max_models:
                gone.append(self._loaded.popitem(last=False)[0])
            self._loaded[name] = lm
        for old in gone:
            if self.on_evict is not None:
                self.on_evict(old)
        return lm

    def loaded_names(self) -> list[str]:
        """Models in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def forget(self, name: str) -> None:
        """Drop what is remembered about `name` (a failure to retry, or a model to load afresh)."""
        with self._lock:
            self._failed.pop(name, None)
            dropped = self._loaded.pop(name, None) is not None
        if dropped and self.on_evict is not None:
            self.on_evict(name)
