"""The two table renderers every report and listing uses: markdown (reports, README tables) and aligned
plain text (the terminal: ``--list-models``, the bench). Pure Python, no torch."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["markdown_table", "text_table"]


def _cell(value: Any) -> str:
    text = "—" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one character per column ('l', 'r', 'c'); default:
    first column left, the rest right. None shows as "—"; a "|" in a cell is escaped."""
    align = align or ("l" + "r" * (len(headers) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None,
               ragged_last: bool = False) -> str:
    """Columns padded to their widest cell, two spaces apart, a dashed rule under the header; ``align``
    as in :func:`markdown_table` (default: first column left, the rest right). ``ragged_last``: the last
    column (e.g. a description) is left unpadded."""
    align = align or ("l" + "r" * (len(headers) - 1))
    lines = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    if ragged_last:
        widths[-1] = len(headers[-1])
    rendered = []
    for index, line in enumerate(lines):
        cells = [cell.ljust(width) if a == "l" else cell.rjust(width) for cell, width, a in zip(line, widths, align)]
        if ragged_last:
            cells[-1] = line[-1]
        rendered.append("  ".join(cells).rstrip())
        if index == 0:
            rendered.append("  ".join("-" * width for width in widths))
    return "\n".join(rendered)
