"""Shared figure hygiene: text that fits the canvas, run names in titles, integer ticks, series styles.

Every figure the project draws goes through :func:`fit_text` before it is
saved: tight layout, titles wider than the room they have are shrunk a little
and then wrapped, and whatever still sticks out (e.g. long rotated tick
labels) makes the canvas grow until it fits. :func:`text_overflow` measures the result (pixels of the
figure's tight bounding box outside the canvas; 0 when everything fits).

:func:`pyplot` is the one place that selects matplotlib's backend (Agg: files only, no display);
every drawing module takes ``plt`` from it.
"""

from __future__ import annotations

import textwrap
import warnings
from typing import Any, Iterable, Sequence

__all__ = [
    "pyplot",
    "fit_text",
    "text_overflow",
    "run_title",
    "integer_ticks",
    "series_style",
    "figure_legend",
    "MARKER_MAX_POINTS",
]

#: series of at most this many points are drawn with markers (a one-epoch curve is a visible dot)
MARKER_MAX_POINTS = 30

def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (figures go to files; no display is needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_MARKERS = "osD^v<>ph*"
_LINESTYLES = ("-", "--", "-.", ":")
_MIN_FONT = 7.0


def run_title(*parts: Any, sep: str = " · ") -> str:
    """``"cnn15_skip2 · mnist · lr0.02-s0"``: the non-empty parts joined (a path part gives its last name)."""
    names = []
    for part in parts:
        if part is None or part == "":
            continue
        text = str(part)
        if "/" in text or "\\" in text:
            text = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        names.append(text)
    return sep.join(names)


def integer_ticks(*axes: Any) -> None:
    """Only integer major ticks on these axes (``axis.xaxis`` / ``axis.yaxis`` objects): depths, epochs.

    ``min_n_ticks=1``: a single epoch (view 0.95…1.05) still gets the tick "1" instead of MaxNLocator's
    fallback to 0.96, 0.98, ….
    """
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def series_style(index: int, points: int) -> dict[str, Any]:
    """Line style of the ``index``-th series of ``points`` points: a marker for short series, and per
    series its own marker shape, line style and a marker size that shrinks with the index, so identical
    series stay visible under each other."""
    style: dict[str, Any] = {"linestyle": _LINESTYLES[index % len(_LINESTYLES)]}
    if points <= MARKER_MAX_POINTS:
        style.update(marker=_MARKERS[index % len(_MARKERS)], markersize=max(2.5, 5.5 - 1.0 * (index % 4)))
    return style


# ------------------------------------------------------------------------------------ measuring
def _renderer(figure: Any) -> Any:
    canvas = figure.canvas
    if not hasattr(canvas, "get_renderer"):  # e.g. a FigureCanvasBase of a figure made without pyplot
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(figure)
    return canvas.get_renderer()


def _overflow_sides(figure: Any) -> tuple[float, float, float, float]:
    """Pixels of the tight bounding box outside the canvas: (left, bottom, right, top), each ≥ 0."""
    renderer = _renderer(figure)
    tight = figure.get_tightbbox(renderer)  # inches
    canvas = figure.bbox  # pixels
    dpi = figure.dpi
    x0, y0, x1, y1 = tight.x0 * dpi, tight.y0 * dpi, tight.x1 * dpi, tight.y1 * dpi
    return (max(0.0, canvas.x0 - x0), max(0.0, canvas.y0 - y0), max(0.0, x1 - canvas.x1), max(0.0, y1 - canvas.y1))


def text_overflow(figure: Any) -> float:
    """How many pixels the figure's tight bounding box sticks out of the canvas (the worst side); 0 when
    every title, label, legend and tick label is inside."""
    worst = max(_overflow_sides(figure))
    return 0.0 if worst < 0.5 else float(worst)  # (sub-pixel rounding of the layout is not clipping)


# ------------------------------------------------------------------------------------ fitting
def _titles(figure: Any) -> Iterable[tuple[Any, float]]:
    """(title text, pixels of room) for the suptitle and every axes' titles, in the current layout."""
    width = figure.bbox.width
    suptitle = getattr(figure, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        yield suptitle, 0.96 * width
    for axis in figure.axes:
        box = axis.get_position()
        center = (box.x0 + box.x1) / 2 * width
        room = 2 * min(center, width - center)  # a centred title may spread this far either side
        spec = axis.get_subplotspec() if hasattr(axis, "get_subplotspec") else None
        if spec is not None:  # and not over its neighbours
            columns = spec.get_gridspec().ncols
            room = min(room, width * (spec.colspan.stop - spec.colspan.start) / columns)
        for title in (axis.title, axis._left_title, axis._right_title):
            if title.get_text():
                yield title, 0.95 * room


def _fit_title(text: Any, room: float, renderer: Any) -> None:
    """Shrink (to 85 %, not below 7 pt) then wrap ``text`` until it is at most ``room`` pixels wide."""
    if text.get_window_extent(renderer).width <= room:
        return
    size = text.get_fontsize()
    smaller = max(_MIN_FONT, 0.85 * size)
    if smaller < size:
        text.set_fontsize(smaller)
        if text.get_window_extent(renderer).width <= room:
            return
    lines = text.get_text().split("\n")
    widest = max(lines, key=len)
    chars = max(12, len(widest))
    for _ in range(40):
        chars = max(8, int(chars * 0.9))
        wrapped = "\n".join(textwrap.fill(line, chars, break_long_words=True, break_on_hyphens=False) or line
                            for line in lines)
        text.set_text(wrapped)
        if text.get_window_extent(renderer).width <= room or chars == 8:
            break
    while text.get_window_extent(renderer).width > room and text.get_fontsize() > 5:
        text.set_fontsize(text.get_fontsize() - 0.5)  # one unbreakable word wider than the room


def figure_legend(figure: Any, handles: Sequence[Any], labels: Sequence[str], *, max_columns: int = 4,
                  **options: Any) -> Any:
    """A figure legend (e.g. ``loc="lower center"``) with as many columns, up to ``max_columns``, as fit in
    95 % of the canvas width (long labels: fewer columns, more rows)."""
    renderer = _renderer(figure)
    columns = max(1, min(len(labels), max_columns))
    while True:
        legend = figure.legend(handles, labels, ncols=columns, **options)
        if columns == 1 or legend.get_window_extent(renderer).width <= 0.95 * figure.bbox.width:
            return legend
        legend.remove()
        columns -= 1


def _tight_layout(figure: Any, rect: Sequence[float] | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not compatible with tight_layout" / "cannot make axes…"
        if rect is None:
            figure.tight_layout()
        else:
            figure.tight_layout(rect=tuple(rect))


def fit_text(figure: Any, rect: Sequence[float] | None = None, *, bottom_legend: Any = None,
             grow: bool = True) -> Any:
    """Make every text of ``figure`` fit inside its canvas; returns the figure.

    :meth:`~matplotlib.figure.Figure.tight_layout` (in ``rect`` when given), then titles wider than
    their room are shrunk and wrapped and the layout is redone (figure legends: see
    :func:`figure_legend`). With ``bottom_legend`` (a figure legend anchored at the bottom) the layout
    leaves its height free below the axes. If text still sticks out (``grow``), the canvas grows by the overflow and
    the layout is redone.
    """
    renderer = _renderer(figure)

    def layout() -> None:
        box = list(rect) if rect is not None else [0.0, 0.0, 1.0, 1.0]
        if bottom_legend is not None:
            height = bottom_legend.get_window_extent(renderer).height / figure.bbox.height
            box[1] = max(box[1], min(0.45, height + 0.01))
        _tight_layout(figure, box if (rect is not None or bottom_legend is not None) else None)

    layout()
    for text, room in _titles(figure):
        _fit_title(text, room, renderer)
    layout()
    for _ in range(4):
        if not grow:
            break
        left, bottom, right, top = _overflow_sides(figure)
        if max(left, bottom, right, top) < 0.5:
            break
        width, height = figure.get_size_inches()
        dpi = figure.dpi
        figure.set_size_inches(width + (left + right + 4) / dpi, height + (bottom + top + 4) / dpi)
        renderer = _renderer(figure)
        layout()
    return figure
