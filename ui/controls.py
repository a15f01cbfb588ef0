"""Page controls that are always in the link: one call draws a widget and mirrors it in the URL.

Every control that changes what a page draws is made here, so a copied link reopens the
same view (tab, layer, colour scale, threshold, …) and no page can forget one. Each helper
takes the widget's own bounds or options, so what the URL may set is exactly what the
widget accepts: `ui.url.url_state` seeds the value from the link on a session's first
visit, corrects what is out of bounds (an int to the nearest end, anything else to the
default), keeps it through runs that stop before drawing it, and writes it back to the
address bar.

    layer = controls.selectbox(c1, "Layer", range(lm.n_layer), key="attn_layer")
    view = controls.tabs(VIEWS, key="attn_view")

Labels are translated by the caller (`_("Layer")`); string options are values in the link
and shown through `_` unless the caller passes its own `format_func` (mark them with `N_`
where they are defined), so a link opens the same view in either language. Tabs likewise:
the link holds the English label, the page shows the translated one.

A slider or number input whose range has one value (Streamlit refuses min = max) shows
that value as text instead. Buttons and one-off pickers ("Open a head …") are not
controls of the view and stay out of the link.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import streamlit as st

from i18n import _, language, use_language
from ui.state import kept_value
from ui.url import url_state

_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _bool(raw: str) -> bool | None:
    return _BOOLS.get(str(raw).strip().lower())


def _options_parser(options: Sequence):
    """The option whose text is the link's text (options are ints, floats, strings, bools or
    tuples); an integer that is not an option is read as one (and corrected to the nearest)."""
    by_text = {str(o): o for o in options}
    by_text.update({json.dumps(o): o for o in options if isinstance(o, (list, tuple))})
    has_ints = any(type(o) is int for o in options)

    def parse(raw: str):
        if raw in by_text:
            return by_text[raw]
        if has_ints:
            return _number_parser(int)(raw)
        raise ValueError(raw)
    return parse


def _nearest_option(options: list, default):
    """The value itself if it is an option; an int that is not goes to the nearest int option
    (layer 7 of a 4-layer model is layer 3); anything else to the default."""
    ints = [o for o in options if type(o) is int]

    def correct(value):
        if value in options and type(value) is type(next(o for o in options if o == value)):
            return value
        if type(value) is int and ints:
            return min(ints, key=lambda o: (abs(o - value), o))
        return default
    return correct


def _clip(lo, hi):
    def clip(value):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return lo
        return min(max(value, lo), hi)
    return clip


def _number_parser(kind: type):
    def parse(raw: str):
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(raw)
        return int(round(value)) if kind is int else value
    return parse


def _choose(where, widget: str, label: str, options, key: str, default, kwargs: dict):
    options = list(options)
    if not options:
        return None
    default = options[0] if default is None or default not in options else default
    url_state({key: (_options_parser(options), default, _nearest_option(options, default))})
    kwargs["format_func"] = labels_of(kwargs.get("format_func", _shown), options)
    return getattr(where, widget)(label, options, key=key, **kwargs)


def _shown(option) -> str:
    """An option as the page shows it: strings translated (they were marked with N_), the rest as str()."""
    return _(option) if isinstance(option, str) else str(option)


def labels_of(format_func, options) -> Callable[[Any], str]:
    """`format_func` as a table of the options' labels, written now, in this run's language.

    Streamlit keeps a widget's format function for as long as the session lives (and AppTest calls it
    again, from its own thread). A function defined in a page holds that page's globals, its model and
    trace among them: a session left open would keep a model the store has unloaded. The table holds
    only the labels' text; an option it lacks is written as `_shown` writes it."""
    lang = language()
    with use_language(lang):
        labels = {}
        for option in options:
            try:
                labels[option] = format_func(option)
            except TypeError:  # an unhashable option: written when asked
                pass

    def shown(option) -> str:
        try:
            return labels[option]
        except (KeyError, TypeError):
            with use_language(lang):
                return _shown(option)
    return shown


# ---- callbacks that hold no page: a page's own functions would keep its model (see labels_of) ----------
def set_state(values: dict) -> None:
    """on_click/on_change: put `values` in the session state (open a tab, a layer, a head …)."""
    st.session_state.update(values)


def open_clicked(chart_key: str, y_key: str, x_key: str, values: dict) -> None:
    """on_select of a chart: the clicked cell's y and x (rounded) into `y_key` and `x_key`, then `values`."""
    event = st.session_state.get(chart_key)
    points = (event.selection.get("points", []) if event is not None else [])
    if points:
        st.session_state.update({y_key: int(round(points[0]["y"])), x_key: int(round(points[0]["x"])), **values})


def add_clicked(chart_key: str, key: str) -> None:
    """on_select of a chart: the clicked cell (y, x), rounded, added to the cells picked under `key` (a
    multiselect of (y, x) pairs; its kept value when the tab that draws it is closed)."""
    event = st.session_state.get(chart_key)
    points = (event.selection.get("points", []) if event is not None else [])
    if points:
        cell = (int(round(points[0]["y"])), int(round(points[0]["x"])))
        picked = st.session_state.get(key, kept_value(key, []))
        st.session_state[key] = sorted(set(map(tuple, picked)) | {cell})


def open_picked(picker_key: str, keys: tuple[str, ...], values: dict) -> None:
    """on_change of a one-off picker whose options are tuples: the tuple's parts into `keys`, then `values`."""
    picked = st.session_state.get(picker_key)
    if picked is not None:
        st.session_state.update({**dict(zip(keys, picked)), **values})


def in_page_language(format_func):
    """`format_func` bound to this run's language. Streamlit keeps a widget's format function and
    may call it again outside the run (AppTest does, from its own thread, where the language is
    the default): it must still write the option as the page did, or the option is not found."""
    lang = language()

    def shown(option) -> str:
        with use_language(lang):
            return format_func(option)
    return shown


def selectbox(where, label: str, options, *, key: str, default: Any = None, **kwargs):
    """st.selectbox in the link (the option's text); default: the first option."""
    return _choose(where, "selectbox", label, options, key, default, kwargs)


def radio(where, label: str, options, *, key: str, default: Any = None, **kwargs):
    return _choose(where, "radio", label, options, key, default, kwargs)


def tabs(labels: Sequence[str], *, key: str, default: str | None = None):
    """st.tabs whose open tab is in the link; returns {label: tab}. Draw a tab's contents only
    when `tabs[label].open`, so closed tabs cost nothing.

    `labels` are the English labels (marked with N_): they key the result and the link, while
    the widget (under its own key) shows them translated. A click on a tab reruns the page;
    the widget's translated label is then mapped back to its English one."""
    labels = list(labels)
    shown = {label: _(label) for label in labels}
    english = {v: k for k, v in shown.items()}
    ss, widget_key, last_key = st.session_state, f"{key}__tab", f"{key}__tab_set"
    clicked = ss.get(widget_key)
    if clicked in english and clicked != ss.get(last_key):  # a click, not a value set in code (or a link)
        ss[key] = english[clicked]
    url_state({key: (_options_parser(labels), default or labels[0], labels)})
    ss[widget_key] = ss[last_key] = shown[ss[key]]
    return dict(zip(labels, st.tabs(list(shown.values()), key=widget_key, on_change="rerun")))


# ---- positions: one rule for every control that picks a token of the prompt ------------------------
def prompt_id(t) -> int:
    """Tells one prompt's tokens from another's (the same text on another kept end or model is another)."""
    return hash((t.model_name, tuple(int(i) for i in t.token_ids)))


def follow(key: str, value, *, on) -> None:
    """Before drawing control `key`: when `on` (what the control's value is about: the prompt's tokens,
    a position) is not what it was the last time the control was drawn, the control goes to `value`.
    The first time, the link's value (or the default) stands: a link that names one keeps it."""
    ss, seen = st.session_state, f"{key}__follows"
    if seen in ss and ss[seen] != on:
        ss[key] = value
    ss[seen] = on


def position(where, label: str, t, *, key: str, default: int | None = None, **kwargs) -> int:
    """The prompt's position picker (a select box of "i: token"), with the app's one position rule: it
    opens on `default` (the last token unless the view says otherwise) and, whenever the prompt changes,
    goes back to it for the new prompt, unless the link names a position (on the session's first visit).
    A position past the end goes to the last token."""
    n = t.n_tokens
    default = n - 1 if default is None else min(max(int(default), 0), n - 1)
    follow(key, default, on=prompt_id(t))
    labels = [f"{i}: {token}" for i, token in enumerate(t.tokens)]  # no closure over the trace (nor its model)
    kwargs.setdefault("format_func", labels.__getitem__)
    return selectbox(where, label, range(n), key=key, default=default, **kwargs)


def _ranged(where, widget: str, label: str, lo, hi, key: str, default, kwargs: dict):
    kind = float if any(isinstance(v, float) for v in (lo, hi, default, kwargs.get("step"))) else int
    lo, hi = kind(lo), kind(max(hi, lo))
    default = _clip(lo, hi)(kind(lo if default is None else default))
    url_state({key: (_number_parser(kind), default, _clip(lo, hi))})
    if hi <= lo:
        where.caption(_("{label}: {value} (the only possible value)").format(label=label, value=lo))
        return lo
    return getattr(where, widget)(label, lo, hi, key=key, **kwargs)


def slider(where, label: str, lo, hi, *, key: str, default=None, **kwargs):
    """st.slider over [lo, hi] in the link; ints unless a bound, the default or the step is a float."""
    return _ranged(where, "slider", label, lo, hi, key, default, kwargs)


def number_input(where, label: str, lo, hi, *, key: str, default=None, **kwargs):
    return _ranged(where, "number_input", label, lo, hi, key, default, kwargs)


def toggle(where, label: str, *, key: str, default: bool = False, **kwargs) -> bool:
    url_state({key: (_bool, bool(default), (True, False))})
    return where.toggle(label, key=key, **kwargs)


def checkbox(where, label: str, *, key: str, default: bool = False, **kwargs) -> bool:
    url_state({key: (_bool, bool(default), (True, False))})
    return where.checkbox(label, key=key, **kwargs)


def _text_fits(max_chars: int | None):
    return (lambda v: v if isinstance(v, str) and (max_chars is None or len(v) <= max_chars) else None)


def text_input(where, label: str, *, key: str, default: str = "", max_chars: int | None = 200, **kwargs) -> str:
    """st.text_input in the link (text longer than max_chars goes back to the default)."""
    fits = _text_fits(max_chars)
    url_state({key: (str, default, lambda v: v if fits(v) is not None else default)})
    return where.text_input(label, key=key, max_chars=max_chars, **kwargs)


def text_area(where, label: str, *, key: str, default: str = "", max_chars: int | None = 2000, **kwargs) -> str:
    fits = _text_fits(max_chars)
    url_state({key: (str, default, lambda v: v if fits(v) is not None else default)})
    return where.text_area(label, key=key, max_chars=max_chars, **kwargs)


def multiselect(where, label: str, options, *, key: str, default: Sequence = (), **kwargs) -> list:
    """st.multiselect in the link (a JSON list); values that are not options are dropped."""
    options = list(options)
    tuples = any(isinstance(o, tuple) for o in options)

    def parse(raw: str):
        values = json.loads(raw)
        if not isinstance(values, list):
            raise ValueError(raw)
        return [tuple(v) if tuples and isinstance(v, list) else v for v in values]

    def keep(values):
        if not isinstance(values, list):
            return [v for v in default if v in options]
        seen = []
        for v in values:
            if v in options and v not in seen:
                seen.append(v)
        return seen

    url_state({key: (parse, [v for v in default if v in options], keep)})
    if "format_func" in kwargs:
        kwargs["format_func"] = labels_of(kwargs["format_func"], options)
    return where.multiselect(label, options, key=key, **kwargs)
