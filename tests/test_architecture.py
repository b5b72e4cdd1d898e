"""The package's shape: no module imports another that (directly or through others) imports it back.

Function-level imports count — they only hide a cycle until the function runs — and ``if
TYPE_CHECKING:`` imports do not (they never run). A package's ``__init__`` importing its own
submodules is the normal direction; the reverse (a submodule importing its package, e.g. to trigger
registration) is a cycle and is reported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deeplab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(count_type_checking: bool = False) -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = set() if count_type_checking else type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for target in targets:
                if target.startswith("deeplab"):
                    resolved = resolve(target)
                    if resolved and resolved != name:
                        graph[name].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 40 and "deeplab.training.fit" in graph
    found = cycles(graph)
    detail = "; ".join(" ↔ ".join(c) + " (" + ", ".join(f"{m} → {sorted(graph[m] & set(c))}" for m in c) + ")"
                       for c in found)
    assert not found, f"import cycles: {detail}"


def test_no_cycle_even_through_type_checking_imports() -> None:
    """A reader should not have to hold both ends of a circle at once, even one that only type hints close."""
    found = cycles(import_graph(count_type_checking=True))
    assert not found, f"import cycles through TYPE_CHECKING imports: {found}"


def test_the_top_level_stays_small_and_config_is_a_leaf() -> None:
    """At most 15 modules directly in deeplab/ (the rest live in the packages that say what they are), and the
    settings module imports nothing of deeplab but its errors, so anything may read it."""
    top = [path for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
    assert len(top) <= 15, sorted(p.name for p in top)
    assert import_graph(count_type_checking=True)["deeplab.config"] <= {"deeplab.errors"}


def test_no_function_is_longer_than_100_lines() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 100:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_mean_field_is_numbers_only() -> None:
    """The theory imports no model: the seed 002 prediction lives beside the search."""
    assert import_graph()["deeplab.theory.mean_field"] <= {"deeplab.errors"}


def test_the_module_loads_only_the_callback_bases() -> None:
    """``module.py`` imports ``callbacks/base.py``; the package's lazy ``__init__`` keeps that from loading
    every callback (an eager one would, and a callback importing the module would then be a cycle at run
    time that the graph above cannot see)."""
    import subprocess
    import sys

    assert import_graph()["deeplab.callbacks.base"] == set()  # base imports nothing of deeplab
    code = ("import sys, deeplab.training.module; "
            "print(sorted(m for m in sys.modules if m.startswith('deeplab.callbacks')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                               cwd=PACKAGE.parent)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split("\n")[-2] == "['deeplab.callbacks', 'deeplab.callbacks.base']"


def test_help_imports_no_torch() -> None:
    """``--help`` of the training scripts answers without importing torch (it used to take 4-9 s)."""
    import subprocess
    import sys

    scripts = PACKAGE.parent / "scripts"
    for script in ("fit.py", "search.py", "experiment.py"):
        code = (f"import runpy, sys; sys.argv = ['{script}', '--help']\n"
                f"try:\n    runpy.run_path({str(scripts / script)!r}, run_name='__main__')\n"
                f"except SystemExit:\n    pass\n"
                f"assert 'torch' not in sys.modules, '{script} --help imported torch'")
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, completed.stderr[-2000:]
        assert "usage:" in completed.stdout


def test_console_entry_points_name_the_commands() -> None:
    """pyproject's console scripts point at each command's entry(), and the launchers in scripts/ run the
    same code."""
    import importlib
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    scripts = project["scripts"]
    assert set(scripts) == {"deeplab-fit", "deeplab-search", "deeplab-diagnose", "deeplab-experiment", "deeplab-bench"}
    for name, target in scripts.items():
        module_name, _, function = target.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function)) and callable(module.main) and callable(module.build_parser)
        launcher = (PACKAGE.parent / "scripts" / f"{name.removeprefix('deeplab-')}.py").read_text()
        assert f"from {module_name} import entry" in launcher


def test_help_shows_the_choices_the_code_accepts() -> None:
    """--help lists choices without importing torch, so they are written out: they must stay the code's."""
    import argparse

    from deeplab.models import inits
    from deeplab.config import add_training_arguments
    from deeplab.models import DATASET_SHAPES
    from deeplab.training.module import LOSSES, OPTIMIZERS, SCHEDULES

    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    usage = " ".join(parser.format_usage().split())
    expected = {"--dataset": DATASET_SHAPES, "--optimizer": OPTIMIZERS, "--loss": LOSSES, "--schedule": SCHEDULES,
                "--init": inits.SCHEMES}
    for option, values in expected.items():
        assert f"[{option} {{{','.join(values)}}}]" in usage, option
