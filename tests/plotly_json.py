"""Reading figures back as the browser receives them: Plotly JSON, base64 arrays included."""
from __future__ import annotations

import base64
import json

import numpy as np


def decode(value) -> np.ndarray:
    """An array from Plotly JSON: a plain list, or plotly 7's {'dtype', 'bdata', 'shape'} binary."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            arr = arr.reshape([int(s) for s in str(value["shape"]).split(",")])
        return arr
    if value and isinstance(value, list) and isinstance(value[0], str):
        return np.asarray(value, dtype=object)
    return np.asarray(value, dtype=float)


def chart_specs(at) -> list[dict]:
    """The figure JSON of every Plotly chart an AppTest run drew, in page order."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def figures_by_title(at) -> dict[str, dict]:
    """The same, keyed by each figure's title."""
    return {spec["layout"]["title"]["text"]: spec for spec in chart_specs(at)}


def figure(at, title_start: str) -> dict:
    """The one figure whose title starts with `title_start`."""
    matches = [f for title, f in figures_by_title(at).items() if title.startswith(title_start)]
    assert len(matches) == 1, list(figures_by_title(at))
    return matches[0]
