"""The probe ledger: every finished probe, one JSON line each, so a search resumes where it stopped.

``<out>/probes.jsonl``. A probe is appended (one ``write`` + fsync,
:func:`deeplab.io.append_jsonl_line`) the moment it finishes, by the search's
main process only. Running the same search again reads the ledger and trains
only the probes it lacks; a ``kill -9`` mid-probe loses just that probe (a
partial last line is dropped on open, before anything is appended after it).

Key: model (family), depth, seed and the training settings that change what a
probe learns (:data:`KEY_SETTINGS`, taken from the *resolved* config, so
``--lr 0.01`` and the spec's default 0.01 share probes while ``--lr 0.1``
does not). The ledger keeps raw errors, not verdicts: threshold and metric are
applied when reading, so changing ``--threshold`` re-judges without
retraining. Left out of the key on purpose: the data folder (moving it must
not invalidate probes), devices and thread counts (they change speed, not the
experiment), and the output and logging options.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeplab.config import FitConfig, key_settings, legacy_values
from deeplab.errors import DeeplabError
from deeplab.io import append_jsonl_line, atomic_write

__all__ = ["LEDGER_FILE", "KEY_SETTINGS", "ProbeLedger", "ProbeRecord", "probe_settings", "probe_key"]

LEDGER_FILE = "probes.jsonl"

#: FitConfig fields that change what a probe learns (roles "run" and "budget", but for its depth and seed)
KEY_SETTINGS = key_settings()
#: key settings added after ledgers were written without them, with the value those probes had (each field's
#: ``legacy``, the record the resume contract keeps too): a key leaves such a setting out while it has that
#: value, so committed ledgers keep matching their probes
ADDED_KEY_SETTINGS = {name: value for name, value in legacy_values().items() if name in KEY_SETTINGS}


@dataclass(frozen=True)
class ProbeRecord:
    """One finished probe, as its ledger line holds it (raw errors, no verdict: a search judges them)."""

    model: str
    depth: int
    seed: int
    settings: dict[str, Any]  # the key settings (probe_settings)
    train_error: float | None  # the last epoch's
    test_error: float | None  # the last epoch's evaluation (the final test with a held-out split)
    epoch_errors: list[dict[str, Any]]
    epochs: int
    epochs_run: int
    diverged: bool
    diverged_at_step: int | None
    global_step: int
    parameters: int
    wall_time_s: float  # this attempt's (a probe continued from a checkpoint: the part it trained)
    resumed_from_step: int | None
    device: str
    process: int
    run_dir: str
    finished_at: str

    def to_json(self) -> dict[str, Any]:
        """The ledger line's content."""
        return dataclasses.asdict(self)


def probe_settings(config: FitConfig) -> dict[str, Any]:
    """The key settings of a resolved config (``init`` None and ``"seed"`` are the same model)."""
    values = config.to_dict()
    settings = {name: values[name] for name in KEY_SETTINGS}
    if settings["init"] is None:
        settings["init"] = "seed"
    return settings


def probe_key(settings: dict[str, Any], depth: int, seed: int) -> str:
    canonical = {name: list(value) if isinstance(value, tuple) else value for name, value in settings.items()
                 if not (name in ADDED_KEY_SETTINGS and value == ADDED_KEY_SETTINGS[name])}
    return json.dumps({"settings": canonical, "depth": int(depth), "seed": int(seed)}, sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_record(record: Any) -> None:
    """TypeError unless ``record`` has the fields a search reads, with their types."""
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise TypeError("not a probe record")
    for name in ("depth", "seed"):
        if not isinstance(record.get(name), int) or isinstance(record.get(name), bool):
            raise TypeError(f"{name} is not an integer")
    for name in ("train_error", "test_error", "diverged_at_step", "wall_time_s"):
        if record.get(name) is not None and not _is_number(record[name]):
            raise TypeError(f"{name} is not a number")
    if not isinstance(record.get("diverged", False), bool):
        raise TypeError("diverged is not true/false")
    epochs = record.get("epoch_errors", [])
    if not isinstance(epochs, list) or not all(isinstance(entry, dict) for entry in epochs):
        raise TypeError("epoch_errors is not a list of epochs")
    for entry in epochs:
        for name in ("train_error", "test_error"):
            if entry.get(name) is not None and not _is_number(entry[name]):
                raise TypeError(f"epoch {name} is not a number")


def _parse_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """``(key, record)`` of one ledger line, or None when it is not a whole, valid record."""
    try:
        record = json.loads(line)
        _check_record(record)
        return probe_key(record["settings"], record["depth"], record["seed"]), record
    except (ValueError, KeyError, TypeError, RecursionError):  # (RecursionError: a line nested thousands deep)
        return None


def _outcome(record: dict[str, Any]) -> tuple[Any, ...]:
    return record.get("test_error"), record.get("train_error"), bool(record.get("diverged"))


class ProbeLedger:
    """Finished probes of one ``--out`` folder, read once and appended to as probes finish."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_symlink() and not self.path.exists():
            raise DeeplabError(f"the ledger {self.path} is a link to nothing ({os.readlink(self.path)}); remove the "
                               f"link or give another --out")
        if self.path.exists() and not self.path.is_file():
            what = "a folder" if self.path.is_dir() else "not a regular file"
            raise DeeplabError(f"the ledger {self.path} is {what}; move it away or give another --out")
        self._records: dict[str, dict[str, Any]] = {}
        #: lines that could not be read (a crash's partial line, hand edits)
        self.skipped_lines = 0
        #: probes recorded twice with different results: ``(depth, seed)``; the later line counts
        self.conflicts: list[tuple[int, int]] = []
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # The last line has no newline: a record whole (a file edited or joined by hand) gets its
            # newline; a kill mid-append's partial line is dropped now, or the next append would glue a
            # good record onto it and lose both.
            last = data[data.rfind(b"\n") + 1:]
            if _parse_line(last.decode("utf-8", errors="replace")) is not None:
                data = data + b"\n"
            else:
                self.skipped_lines += 1
                data = data[: data.rfind(b"\n") + 1]
            atomic_write(self.path, lambda file: file.write(data))
        for line in data.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            parsed = _parse_line(line)
            if parsed is None:
                self.skipped_lines += 1  # unreadable or hand-edited: that probe is trained again
                continue
            key, record = parsed
            earlier = self._records.get(key)
            if earlier is not None and _outcome(earlier) != _outcome(record):
                self.conflicts.append((record["depth"], record["seed"]))
            self._records[key] = record  # a later line for the same probe wins

    def __len__(self) -> int:
        return len(self._records)

    def get(self, settings: dict[str, Any], depth: int, seed: int) -> dict[str, Any] | None:
        return self._records.get(probe_key(settings, depth, seed))

    def records(self) -> list[dict[str, Any]]:
        """Every probe, in ledger order (a probe recorded twice: its later line)."""
        return list(self._records.values())

    def records_for(self, settings: dict[str, Any], seed: int) -> dict[int, dict[str, Any]]:
        """Every probe of these settings and seed, ``{depth: record}`` in ledger order."""
        found = {}
        for record in self._records.values():
            if record["seed"] == seed and self._records.get(probe_key(settings, record["depth"], seed)) is record:
                found[record["depth"]] = record
        return found

    def add(self, record: dict[str, Any]) -> None:
        """Append a finished probe (must carry ``settings``, ``depth`` and ``seed``)."""
        key = probe_key(record["settings"], record["depth"], record["seed"])
        append_jsonl_line(self.path, record)
        self._records[key] = record
