"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A reader (or a run killed with SIGKILL) sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import contextlib
from pathlib import Path
from typing import Any, Callable, IO, Iterator

__all__ = ["atomic_write", "atomic_write_json", "append_jsonl_line", "finite_or_null", "FILE_MODE", "reserve_folder",
           "reserved_folders", "remove_if_empty", "remove_stale_temporaries"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the permissions a plain ``open(path, "w")`` would give (mkstemp's temporary files are 0600)
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``.

    The file gets the usual permissions (0644 under the common umask 022), not
    the temporary file's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fchmod(file.fileno(), FILE_MODE)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def make_writable_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` (and parents) and prove a file can be written there; OSError if not.
    Every command checks its output folder this way before it trains anything."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".deeplab-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def reserve_folder(parent: str | os.PathLike, name: str) -> Path:
    """Create ``parent/name`` — or ``name-2``, ``name-3``, … when taken — and return it. Created with
    ``mkdir`` without ``exist_ok``, so two processes racing for one name get two folders, never one."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    index = 1
    while True:
        candidate = parent / (name if index == 1 else f"{name}-{index}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            index += 1


def reserved_folders(parent: str | os.PathLike, name: str) -> list[Path]:
    """The folders :func:`reserve_folder` gave out under ``parent`` for ``name``, oldest first."""
    found = []
    for path in Path(parent).glob(f"{name}*"):
        suffix = path.name[len(name):]
        if path.is_dir() and (suffix == "" or (suffix.startswith("-") and suffix[1:].isdigit())):
            found.append((1 if suffix == "" else int(suffix[1:]), path))
    return [path for _, path in sorted(found)]


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left beside ``path`` when a process was killed
    mid-write (``.last.ckpt.abc123.tmp``); call it only where no other process writes ``path`` now."""
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else ():
        with contextlib.suppress(OSError):
            stale.unlink()
            removed.append(stale)
    return removed


def remove_if_empty(folder: str | os.PathLike) -> None:
    """Remove ``folder`` if it exists and is empty (a reserved run folder nothing was written into)."""
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Strict JSON: NaN and ±inf (an epoch that diverged, a metric never measured) become ``null``."""
    text = json.dumps(finite_or_null(data), indent=2, sort_keys=False, default=_jsonable, allow_nan=False) + "\n"
    atomic_write(path, lambda file: file.write(text.encode()))


def map_floats(value: Any, convert: Callable[[float], Any]) -> Any:
    """``value`` with ``convert`` applied to every float, also inside lists, tuples, dicts and 0-d tensors:
    the one walker behind what JSON files do with non-finite numbers."""
    if isinstance(value, float):
        return convert(value)
    if isinstance(value, dict):
        return {key: map_floats(item, convert) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_floats(item, convert) for item in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a 0-d tensor or NumPy scalar
        return map_floats(value.item(), convert)
    return value


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (also inside lists and dicts) replaced by None."""
    return map_floats(value, lambda x: x if math.isfinite(x) else None)


def finite_or_text(value: Any, digits: int = 6) -> Any:
    """``value`` with ±inf and NaN as the strings "inf", "-inf", "nan" (a measurement whose infinity means
    something, as a depth scale of an identity map) and finite floats rounded to ``digits`` significant digits."""
    def convert(x: float) -> Any:
        if not math.isfinite(x):
            return "inf" if x > 0 else ("-inf" if x < 0 else "nan")
        return float(f"{x:.{digits}g}")

    return map_floats(value, convert)


def append_jsonl_line(path: str | os.PathLike, record: Any) -> None:
    """Append one JSON line with a single ``write`` + fsync (a crash leaves at most a partial last line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=_jsonable) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@contextlib.contextmanager
def no_empty_tree_on_failure(path: str | os.PathLike) -> Iterator[None]:
    """If the block fails, remove the folders it created at or under ``path`` that are still empty
    (deepest first), so a failed run or recipe leaves no empty tree behind; files are never touched,
    and a folder that existed before stays."""
    path = Path(path).absolute()
    first_missing = None
    for candidate in [path, *path.parents]:  # the shallowest folder the block may create
        if candidate.exists():
            break
        first_missing = candidate
    try:
        yield
    except BaseException:
        if first_missing is not None and first_missing.is_dir():
            for root, _, _ in sorted(os.walk(first_missing), key=lambda entry: -len(Path(entry[0]).parts)):
                with contextlib.suppress(OSError):  # not empty (or gone): keep it
                    os.rmdir(root)
        raise
