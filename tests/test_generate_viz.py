"""The Generation page's coloured strip as a picture: its colour bar's labels never overlap, however
few lines the continuation takes (a one-line strip squashed the bar, "100%" on top of "0%"), in the
Screen and both Slides styles, in English and Chinese; the red frames sit on the repeated tokens'
cells at every size; the CSV still reads."""
from __future__ import annotations

import numpy as np
import pytest

from i18n import use_language
from tests import figure_checks
from viz.export import presentation_style, to_csv
from viz.generate import token_strip

STYLES = ("Screen", "Slides", "Slides (dark)")


def strip(n: int, lang: str, style: str, loops: tuple[int, ...] = ()):
    rng = np.random.default_rng(n)
    tokens = [" " + w for w in rng.choice(["the", "LORD", "and", "unto", "ashamed", ","], n)]
    mask = np.zeros(n, dtype=bool)
    mask[list(loops)] = True
    with use_language(lang):
        fig = token_strip(tokens, rng.uniform(0, 1, n), mask, "The continuation, coloured by mini-gpt2-kjv's "
                          "probability · mini-gpt2-kjv · “In the beginning”")
        if style != "Screen":
            fig = presentation_style(fig, dark=style == "Slides (dark)", prompt="In the beginning")
    return fig


def font_px(fig, size) -> float:
    return size or fig.layout.font.size or 12  # Plotly's default


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("n", [1, 5, 16, 17, 40, 64])
def test_the_colour_bar_holds_its_title_and_labels_a_line_apart(n, style, lang):
    fig = strip(n, lang, style, loops=tuple(range(n // 2, n)))
    height = fig.layout.height
    assert figure_checks.colour_bar_ticks_fit(fig, 800, height) == []
    assert figure_checks.check_figure(fig, 800, height) == []
    bar = fig.data[0].colorbar
    m = fig.layout.margin
    bar_px = height - m.t - m.b  # the bar runs the plot area's height
    title_px = figure_checks.LINE * font_px(fig, bar.title.font.size) + 4
    tick_px = font_px(fig, bar.tickfont.size)
    labels = len(bar.tickvals)
    assert labels == 3 and (bar_px - title_px) / (labels - 1) >= figure_checks.LINE * tick_px


@pytest.mark.parametrize("style", STYLES)
def test_the_frames_sit_on_the_repeated_tokens_cells(style):
    per_row, loops = 16, (3, 4, 15, 16, 17, 30)
    fig = strip(33, "en", style, loops)
    frames = [s for s in fig.layout.shapes if s.line.color == "#c0392b"]
    assert len(frames) == len(loops)
    for shape, i in zip(frames, loops):
        row, col = divmod(i, per_row)
        assert (shape.xref, shape.yref) == ("x", "y")  # in the cells' units: they scale with the cells
        assert shape.x0 < col < shape.x1 and col - 0.5 <= shape.x0 and shape.x1 <= col + 0.5
        assert shape.y0 < row < shape.y1 and row - 0.5 <= shape.y0 and shape.y1 <= row + 0.5
    assert [t.name for t in fig.data[1:]] == ["inside a repeated phrase"]  # the legend names them


def test_the_csv_carries_the_tokens():
    fig = strip(20, "en", "Screen", loops=(18, 19))
    csv = to_csv(fig).decode()
    assert "LORD" in csv or "the" in csv
    assert figure_checks.csv_carries_labels(fig) == []
