"""The README and docs/ stay true: every measured number names the committed report it comes from,
every local link resolves, and docs/cli.md is what the scripts' parsers say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: pages of prose about measurements (docs/cli.md is the scripts' help: defaults, not measurements)
MEASURED_PAGES = [page for page in PAGES if page.name != "cli.md"]

#: a measured quantity: a percentage, a ratio, a time, a size, a throughput
MEASURED = re.compile(r"\d(?:[\d,.]*\d)?\s?(?:%|×|x faster|µs|ms\b|s\b(?! \w*\()|min\b|minutes?\b|h\b|hours?\b|seconds?\b|GB\b|MB\b|img/s|images/s)")
#: what may stand behind one: a committed report (or ledger), a test that holds it, or the seed
#: documents' own figures, quoted as theirs
SOURCE = re.compile(r"reports/[\w./-]+|tests/test_\w+\.py|notebook|cell \[\d+\]|"
                    r"[Ss]eed(?: document)? 00\d(?:'s)?(?: own)? (?:printed|prints|reported|table|code|Part)")


def blocks(text: str) -> list[str]:
    """Paragraphs, list items and tables (a table with the paragraph right above it: its caption);
    fenced code is left out."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    parts: list[str] = []
    for chunk in re.split(r"\n\s*\n", text):
        items = re.split(r"\n(?=[-*] |\d+\. )", chunk)
        for item in items:
            if item.lstrip().startswith("|") and parts:
                parts[-1] += "\n" + item  # a table belongs to its caption
            else:
                parts.append(item)
    return [part for part in parts if part.strip()]


def test_every_measured_number_names_its_source() -> None:
    unsourced = []
    for page in MEASURED_PAGES:
        for block in blocks(page.read_text()):
            if MEASURED.search(block) and not SOURCE.search(block):
                unsourced.append(f"{page.relative_to(REPO)}: {' '.join(block.split())[:110]}")
    assert not unsourced, "figures without a committed source:\n" + "\n".join(unsourced)


def test_every_cited_report_and_local_link_exists() -> None:
    missing = []
    for page in PAGES:
        text = page.read_text()
        for path in re.findall(r"\b(reports/[\w./-]*\w)", text):
            if not (REPO / path).exists() and not list(REPO.glob(path)):
                missing.append(f"{page.relative_to(REPO)}: {path}")
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(REPO)}: link {target}")
    assert not missing, "\n".join(missing)


def test_the_command_line_reference_is_what_the_parsers_say() -> None:
    from deeplab.commands.__main__ import cli_reference

    assert (REPO / "docs" / "cli.md").read_text() == cli_reference(), \
        "docs/cli.md is stale: python -m deeplab.commands > docs/cli.md"


@pytest.mark.parametrize("text, flagged", [
    ("It reached 98.06 % in 65 s.", True),
    ("It reached 98.06 % (reports/first_run/results.json).", False),
    ("Seed 000's table prints 10.62 and 86.02 %.", False),
    ("k = 3 trains, 6 does not.", False),
])
def test_the_source_check_can_fail(text: str, flagged: bool) -> None:
    (block,) = blocks(text)
    assert bool(MEASURED.search(block) and not SOURCE.search(block)) is flagged
