"""`streamlit run …` of the checkout REPO, with the server's own work timed (for time_to_figure.py).

    python benchmarks/_timed_server.py REPO LOG run app.py --server.port …

Before Streamlit starts, wraps (wherever a loaded module holds them) the functions that do a
page's model and figure work: the forward (core.trace.trace_ids), the attention summaries
(core.attention.pattern_summaries) and every public function of recipes.attention and
recipes.next_token ("compute"); and what st.plotly_chart calls to serialise a figure
(plotly.tools.return_figure_from_figure_or_data, plotly.io.to_json: "serialise"). Each call
appends one JSON line [kind, name, start, end, bytes] (epoch seconds; bytes of to_json's
output) to LOG. The app's code is not changed. Imports come from REPO only, not this checkout.
"""
from __future__ import annotations

import functools
import inspect
import json
import sys
import threading
import time


def main() -> None:
    repo, log = sys.argv[1], sys.argv[2]
    sys.path[0] = repo  # instead of this file's folder: the app's packages come from REPO

    import plotly.io
    import plotly.tools

    import core.attention  # noqa: F401 (loaded, to wrap its pattern_summaries)
    import core.trace  # noqa: F401 (loaded, to wrap its trace_ids)
    import recipes.attention
    import recipes.next_token

    out, lock = open(log, "a", buffering=1), threading.Lock()

    def timed(kind: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0, size = time.time(), None
            try:
                result = fn(*args, **kwargs)
                size = len(result) if isinstance(result, str) else None
                return result
            finally:
                with lock:
                    out.write(json.dumps([kind, fn.__qualname__, t0, time.time(), size]) + "\n")
        return wrapper

    def patch(kind: str, fn) -> None:
        wrapped = timed(kind, fn)
        for module in list(sys.modules.values()):
            names = getattr(module, "__dict__", None) or {}
            for name, value in list(names.items()):
                if value is fn:
                    setattr(module, name, wrapped)

    modules = sys.modules  # `core.trace` the attribute is core's trace() function, not the module
    compute = [modules["core.trace"].trace_ids, modules["core.attention"].pattern_summaries]
    for module in (recipes.attention, recipes.next_token):
        compute += [f for name, f in vars(module).items()
                    if inspect.isfunction(f) and f.__module__ == module.__name__ and not name.startswith("_")]
    for fn in compute:
        patch("compute", fn)
    for fn in (plotly.tools.return_figure_from_figure_or_data, plotly.io.to_json):
        patch("serialise", fn)

    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[3:]]
    streamlit_main()


if __name__ == "__main__":
    main()
