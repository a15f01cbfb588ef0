"""Recipes: what each page shows, as plain Python. (model, trace, settings) -> a list of
titled figures, tables and texts, in the order the page shows them.

A page draws its widgets, calls a recipe with their values and hands the result to
`ui.figures.show`; the batch exporter (`recipes.figure_set`, `python -m recipes.export`) and
the benchmarks call the same recipes, so a figure is built one way wherever it appears. A
recipe never imports streamlit: it computes with `core` and draws with `viz`.

Work that reads every layer (and may take seconds) is handed to the page as a `LongJob`:
the recipe says what it is and how to run it, `ui.progress.run_job` shows its progress and
Stop, so a page never calls `core` itself.

Texts are Markdown shown by Streamlit: token text in them goes through `md` (escaped),
titles of figures through `viz.common.esc`. Every text is built in the page's language
(`i18n._`) when the recipe runs; a table's headers through `translated_table`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence, Union

from i18n import N_, _

# Column names of the tables these recipes show (core builds most of them, in English): marked
# here for the catalog, shown in the page's language by `translated_table`.
COLUMNS = (
    N_("rank"), N_("token"), N_("tokens"), N_("id"), N_("ids"), N_("probability"), N_("position"), N_("bytes"),
    N_("character split over tokens"), N_("word"), N_("vector"), N_("cosine"),
    N_("step"), N_("chosen"), N_("p (model)"), N_("p (drawn)"), N_("out of"), N_("entropy (bits)"), N_("repeat"),
    N_("run"), N_("first step that differs from greedy"), N_("text"), N_("beam"), N_("score"), N_("log-prob"),
    N_("text so far"),
    N_("block"), N_("n"), N_("mean"), N_("std"), N_("kurtosis"), N_("min"), N_("max"), N_("name"), N_("kind"),
    N_("shape"), N_("count"), N_("frobenius"),
)


@dataclass(frozen=True)
class Figure:
    key: str  # the widget key, unique on the page
    fig: Any  # plotly.graph_objects.Figure
    name: str | None = None  # the exported files' name (default: the figure's title)
    on_select: Any = None  # for the page: a callback when a point is clicked
    selection_mode: str | None = None


@dataclass(frozen=True)
class Table:
    key: str
    data: Any  # pandas.DataFrame
    name: str  # the exported CSV's name
    formats: dict | None = None  # column -> format string or function, for the screen (the CSV keeps the numbers)
    height: int | None = None


@dataclass(frozen=True)
class Text:
    text: str  # Markdown; escape token text with `md`
    kind: str = "caption"  # caption, markdown, info, warning, error, subheader, code


@dataclass(frozen=True)
class Metric:
    label: str
    value: str
    help: str | None = None


@dataclass(frozen=True)
class Row:
    """Items side by side, one column each (an item may be a list of items). Every figure in a
    Row is fitted to its column (viz.common.fit_to_column: title, ticks, and the share marked for
    the Slides styles), so no recipe has to remember it."""
    columns: Sequence[Any]
    widths: Sequence[float] | None = None

    def __post_init__(self):
        from viz.common import fit_to_column

        for fig, share in self.figures_in_columns():
            fit_to_column(fig, share)

    def figures_in_columns(self, share: float = 1.0):
        """(figure, share of the page's width) for every figure in the Row, nested Rows included."""
        widths = list(self.widths or [1] * len(self.columns))
        for column, width in zip(self.columns, widths):
            stack = [(item, share * width / sum(widths)) for item in (column if isinstance(column, list) else [column])]
            while stack:
                item, part = stack.pop()
                if isinstance(item, Figure):
                    yield item.fig, part
                elif isinstance(item, Row):
                    yield from item.figures_in_columns(part)
                elif isinstance(item, list):
                    stack += [(i, part) for i in item]


Item = Union[Figure, Table, Text, Metric, Row, list]


@dataclass
class View:
    """What a recipe returns: the items to show, and any values the page needs besides (a
    target token, the cells of an atlas in score order, …)."""
    items: list = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def add(self, *items: Item) -> "View":
        self.items.extend(items)
        return self

    def figures(self) -> dict:
        """key -> figure, every figure in the view (rows included): for the batch exporter and tests."""
        out = {}

        def walk(items):
            for item in items:
                if isinstance(item, Figure):
                    out[item.key] = item.fig
                elif isinstance(item, Row):
                    walk([c for col in item.columns for c in (col if isinstance(col, list) else [col])])
                elif isinstance(item, list):
                    walk(item)
        walk(self.items)
        return out


@dataclass(frozen=True)
class LongJob:
    """Work done one layer at a time, described by the recipe that needs it and run by
    `ui.progress.run_job` (progress bar, Stop, and a Compute click first when it is long).
    Core caches each layer it finishes, so running the job again after a Stop resumes it."""
    label: str  # what it does, in the page's language ("Reading every head of every layer")
    n_layer: int  # the layers it goes through: `run` calls on_layer(L) before computing layer L
    run: Callable[[Callable[[int], None]], Any]  # run(on_layer) -> the result
    estimate_s: float = 0.0  # about how long it takes; 0 when every layer is cached
    work_id: Hashable = None  # what it computes (a trace's key, settings): a Compute click is kept for it


def translated_table(key: str, data, name: str, formats: dict | None = None, height: int | None = None) -> Table:
    """A Table of the DataFrame `data` whose headers read in the page's language (a renamed copy;
    `data` keeps its English columns for the caller); `formats` is keyed by the English names."""
    names = {c: _(c) for c in data.columns if isinstance(c, str)}
    shown = {names.get(c, c): f for c, f in formats.items()} if formats else formats
    return Table(key, data.rename(columns=names), name, shown, height)


WORD_JOINER = "\u2060"  # invisible, zero width: splits a domain name so no autolink finds it


def md(text: str) -> str:
    """Escape text (a token, a prompt) for Markdown, so it is shown as written, never rendered.

    Backslashes stop Markdown's syntax but not GitHub-flavoured autolinks: Streamlit's renderer finds
    `www.x.y`, `https://x.y` and `a@x.y` in the text after unescaping and makes them live links. Every
    autolink needs a dot right after a domain's letters, so an invisible word joiner before each dot
    leaves the text as it reads and links nothing."""
    specials = "\\`*_{}[]()#+-.!|<>~$"
    escaped = "".join("\\" + c if c in specials else c for c in text)
    return escaped.replace("\\.", WORD_JOINER + "\\.")
