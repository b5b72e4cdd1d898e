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

__all__ = ["Report", "markdown_table"]


def _cell(value: Any) -> str:
    text = "—" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one character per column ('l', 'r', 'c'); default:
    first column left, the rest right."""
    align = align or ("l" + "r" * (len(headers) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


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
        body = markdown_table(headers, rows, align)
        if caption:
            body = f"{caption.strip()}\n\n{body}"
        self.parts.append(body + "\n")

    def figure(self, path: str | Path, caption: str) -> None:
        """Link a PNG that lies in the output folder (by its path relative to the report)."""
        path = Path(path)
        try:
            relative = path.resolve().relative_to(self.out.resolve())
        except ValueError:
            relative = path
        self.figures.append(str(relative))
        alt = caption.replace("[", "(").replace("]", ")")  # brackets would end the link text
        self.parts.append(f"![{alt}]({relative.as_posix()})\n\n*{caption}*\n")

    def render(self) -> str:
        return "\n".join(self.parts)
