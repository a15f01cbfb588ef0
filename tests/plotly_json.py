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
