"""The report writer: markdown sections, tables and figures of one experiment.

A recipe adds to ``ctx.report`` in reading order: ``heading``, ``text``,
``table`` (kept also in ``results.json`` under ``tables``), ``figure`` (a
PNG already written into the output folder, linked by its relative path) and
``bullets``. :meth:`Report.render` returns the body that
:meth:`~deeplab.experiments.runner.ExperimentContext.finish` wraps with the
header (what, on which data, which budget) and the settings table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from deeplab.reporting.tables import markdown_table

__all__ = ["Report", "markdown_table", "MAX_TABLE_WIDTH", "fit_columns", "fitted_tables"]

#: a report table wider than this many characters is split into narrower ones (first column repeated)
MAX_TABLE_WIDTH = 100


def _width(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None) -> int:
    return max(len(line) for line in markdown_table(headers, rows, align).splitlines())


def fit_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None,
                width: int = MAX_TABLE_WIDTH) -> list[list[int]]:
    """Column groups (indices, the first column in each) whose tables are at most ``width`` wide: our
    columns first, the seed's (headers starting "seed ") after them, packed in order."""
    if _width(headers, rows, align) <= width:
        return [list(range(len(headers)))]
    ours = [i for i in range(1, len(headers)) if not str(headers[i]).startswith("seed ")]
    seeds = [i for i in range(1, len(headers)) if str(headers[i]).startswith("seed ")]
    groups: list[list[int]] = []
    for block in (ours, seeds):  # the seed's numbers never share a table with ours once we must split
        current: list[int] = []
        for index in block:
            trial = [0, *current, index]
            if current and _width([headers[i] for i in trial], [[row[i] for i in trial] for row in rows],
                                  None if align is None else "".join(align[i] for i in trial)) > width:
                groups.append([0, *current])
                current = []
            current.append(index)
        if current:
            groups.append([0, *current])
    return groups


def fitted_tables(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None,
                  width: int = MAX_TABLE_WIDTH) -> list[tuple[list[int], str]]:
    """The table as one or more markdown tables of at most ``width`` characters: (column group, markdown)."""
    tables = []
    for group in fit_columns(headers, rows, align, width):
        tables.append((group, markdown_table([headers[i] for i in group], [[row[i] for i in group] for row in rows],
                                             None if align is None else "".join(align[i] for i in group))))
    return tables


SMOKE_RUN_MARK = "smoke run (--quick): not a measurement"


def mark_smoke_run(path: Path) -> None:
    """Stamp a PNG with :data:`SMOKE_RUN_MARK` (top left, red) and record it in its metadata."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 7 * len(SMOKE_RUN_MARK) + 8, 16), fill=(255, 235, 235))
    draw.text((4, 2), SMOKE_RUN_MARK, fill=(200, 0, 0))
    info = PngInfo()
    info.add_text("deeplab", SMOKE_RUN_MARK)
    image.save(path, pnginfo=info)


class Report:
    """Markdown body of a report, in the order the recipe writes it."""

    def __init__(self, out: Path, quick: bool = False):
        self.out = Path(out)
        self.quick = quick
        self.parts: list[str] = []
        self.tables: dict[str, dict[str, Any]] = {}
        self.figures: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"{'#' * level} {text}\n")

    def text(self, markdown: str) -> None:
        self.parts.append(markdown.strip() + "\n")

    def conclusion(self, markdown: str) -> None:
        """A sentence that draws a conclusion from the numbers; a --quick smoke run draws none."""
        if self.quick:
            self.parts.append("*Smoke run (`--quick`): no conclusion is drawn from these numbers.*\n")
        else:
            self.text(markdown)

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.parts.append("\n".join(f"- {item}" for item in items) + "\n")

    def table(self, name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
              align: str | None = None, caption: str | None = None) -> None:
        """A table, also stored as ``tables[name]`` in results.json."""
        self.tables[name] = {"headers": list(headers), "rows": [[None if v is None else str(v) for v in row] for row in rows]}
        parts = []  # results.json keeps the whole table; the report, readable widths
        for number, (group, body) in enumerate(fitted_tables(headers, rows, align)):
            if number > 0:
                seed_part = all(str(headers[i]).startswith("seed ") for i in group[1:])
                body = f"*{'The seed' + chr(39) + 's numbers for' if seed_part else 'Continued:'} the rows above:*\n\n{body}"
            parts.append(body)
        body = "\n\n".join(parts)
        if caption:
            body = f"{caption.strip()}\n\n{body}"
        self.parts.append(body + "\n")

    def figure(self, path: str | Path, caption: str) -> None:
        """Link a PNG that lies in the output folder (by its path relative to the report); a ``--quick`` smoke
        run's figure is stamped as one, in the image itself (and its PNG metadata), wherever it is shown."""
        path = Path(path)
        if self.quick and path.suffix == ".png" and path.is_file():
            mark_smoke_run(path)
        try:
            relative = path.resolve().relative_to(self.out.resolve())
        except ValueError:
            relative = path
        self.figures.append(str(relative))
        alt = caption.replace("[", "(").replace("]", ")")  # brackets would end the link text
        self.parts.append(f"![{alt}]({relative.as_posix()})\n\n*{caption}*\n")

    def render(self) -> str:
        return "\n".join(self.parts)
