"""One probe: a depth (or an η) of a family trained by :func:`deeplab.training.fit.fit`, here or in a worker.

:class:`ProbeRequest` is what a search asks for (a full FitConfig, its ledger key, the search's judge);
:func:`run_probe` trains it — continuing a probe stopped part-way from its checkpoint
(:func:`unfinished_probe_checkpoint`), exactly, by the resume contract — and returns its ledger record
(:class:`~deeplab.search.ledger.ProbeRecord`). :class:`ProcessPoolRunner` trains N probes at once in
spawned workers, one device each: the N GPUs (``CUDA_VISIBLE_DEVICES`` per worker, round-robin if there
are fewer GPUs than workers) or, on a CPU-only machine, N processes with ``cores // N`` threads each.
Each probe's TensorBoard run is named ``<model>[_<init>]_k<depth>_seed<seed>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from deeplab.callbacks.trainability import TrainabilityJudge
from deeplab.config import FitConfig
from deeplab.errors import DeeplabError
from deeplab.io import reserved_folders
from deeplab.search.ledger import ProbeRecord
from deeplab.training.resolve import resolve_config

__all__ = ["ProbeRequest", "run_probe", "probe_run_name", "unfinished_probe_checkpoint", "ProcessPoolRunner"]


@dataclass(frozen=True)
class ProbeRequest:
    """One probe to train: a full FitConfig (as a dict, so it pickles simply) and its ledger key."""

    config: dict[str, Any]
    settings: dict[str, Any]
    verbose: bool = False
    threshold: float = 0.2  # the search's judge: the probe's own verdict (results.json, HParams) uses it too
    metric: str = "test_error"
    progress: bool = False  # a progress bar inside the probe (a search in this process, on a terminal)

    @property
    def depth(self) -> int:
        return int(self.config["depth"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])




def probe_run_name(model: str, init: str | None, depth: int, seed: int) -> str:
    init_part = f"_{init}" if init not in (None, "seed") else ""
    return f"{model}{init_part}_k{depth}_seed{seed}"


def unfinished_probe_checkpoint(config: FitConfig) -> tuple[Path, int] | None:
    """``(last.ckpt, its global step)`` of this probe's newest run that stopped before writing its
    results (``<log_dir>/<run_name>``, ``<run_name>-2``…; or an older deeplab's ``<run_name>/version_N``),
    when that checkpoint holds the same run settings
    and has steps left to train; else None (the probe starts fresh).

    A run with ``results.json`` finished or was stopped cleanly (and, if whole, is in the ledger);
    one without it was killed, or is a run in progress of another search on the same folder —
    which the ledger cannot tell apart, as it cannot for fresh probes either.
    """
    from deeplab.training.resumable.resume import compare_settings, read_checkpoint
    from deeplab.training.fit import inherit_engine

    run_root = Path(config.log_dir) / str(config.run_name)
    legacy = sorted(run_root.glob("version_*"), key=lambda p: int(p.name.split("_")[-1])
                    if p.name.split("_")[-1].isdigit() else -1)
    for version in reversed(legacy + reserved_folders(config.log_dir, str(config.run_name))):
        checkpoint = version / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            continue
        results_file = version / "results.json"
        if results_file.is_file():
            try:
                if not json.loads(results_file.read_text()).get("interrupted"):
                    return None  # the newest run finished: nothing to continue
            except (OSError, ValueError):
                pass
        try:
            saved, _ = read_checkpoint(checkpoint)
            compare_settings(saved, inherit_engine(resolve_config(config), saved.config).to_dict())
        except DeeplabError:
            return None  # another probe's settings, or unreadable (a kill mid-write is prevented: atomic)
        if saved.diverged_at_step is not None:
            return None
        return checkpoint, saved.global_step
    return None


def run_probe(request: ProbeRequest) -> dict[str, Any]:
    """Train one probe (continuing it when an earlier attempt was stopped part-way) and return its
    ledger record (raw errors, no verdict)."""
    from deeplab.training.fit import fit

    config = dataclasses.replace(FitConfig(**request.config), progress_bar=request.progress)
    unfinished = unfinished_probe_checkpoint(config)
    started = time.perf_counter()
    # fit always prints the seeds' per-epoch line; N probes at once would interleave them.
    quiet_stdout = contextlib.nullcontext() if request.verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet_stdout, warnings.catch_warnings():
        # tiny probes (--limit-train-batches 2) would each warn about the logging interval
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        results = None
        if unfinished is not None:
            judge = TrainabilityJudge(request.threshold, request.metric)
            try:
                results = fit(dataclasses.replace(config, ckpt_path=str(unfinished[0])), callbacks=[judge],
                              quiet=not request.progress)
            except DeeplabError:
                unfinished = None  # the checkpoint cannot be continued (e.g. nothing left): train afresh
        if results is None:
            judge = TrainabilityJudge(request.threshold, request.metric)
            results = fit(config, callbacks=[judge], quiet=not request.progress)
    wall_time = time.perf_counter() - started
    train_error, test_error = judge.final_errors(results)
    return ProbeRecord(
        model=config.model, depth=config.depth, seed=config.seed, settings=request.settings,
        train_error=train_error, test_error=test_error, epoch_errors=judge.epochs, epochs=config.epochs,
        epochs_run=int(results.epochs_run), diverged=judge.diverged, diverged_at_step=judge.diverged_at_step,
        global_step=results.global_step, parameters=results.parameters,
        wall_time_s=round(wall_time, 3),  # this attempt's time (a resumed probe: the part it trained)
        resumed_from_step=None if unfinished is None else unfinished[1], device=results.device,
        process=os.getpid(), run_dir=results.run_dir,
        finished_at=datetime.datetime.now().isoformat(timespec="seconds"),
    ).to_json()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _init_worker(slots: Any, gpu_count: int, threads: int) -> None:
    """A pool worker's setup: die with the parent, then take one GPU or a share of the cores."""
    try:  # Linux: SIGKILL this worker when the search process dies (kill -9 included)
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover
        pass
    slot = slots.get()
    if gpu_count > 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpu_count)  # before CUDA initializes
    import torch

    torch.set_num_threads(threads)


class ProcessPoolRunner:
    """``workers`` spawned processes, each training one probe at a time on its own device."""

    def __init__(self, workers: int, use_gpus: bool):
        import multiprocessing

        import torch

        self.workers = workers
        self.gpu_count = torch.cuda.device_count() if use_gpus else 0
        self.threads = max(1, _usable_cores() // workers)
        # the children alive before the pool: whatever else is alive at close() is one of its workers
        self._children_before = {process.pid for process in multiprocessing.active_children()}
        self._start()

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        slots = context.Queue()
        for slot in range(self.workers):
            slots.put(slot)
        self._slots = slots
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=context, initializer=_init_worker,
            initargs=(slots, self.gpu_count, self.threads),
        )

    def describe(self) -> str:
        if self.gpu_count:
            return f"{self.workers} worker processes on {self.gpu_count} GPU(s)"
        return f"{self.workers} CPU worker processes × {self.threads} threads"

    def __call__(self, requests: Sequence[ProbeRequest]) -> Iterator[dict[str, Any]]:
        """Submit every probe now (they start at once); the records come back as they finish.

        A worker that dies (killed, out of memory) breaks the whole pool: the probes that finished are
        still handed back (the search records them), the ones it took down are trained once more in a
        fresh pool (each continues from its own last checkpoint), and a second death is one line."""
        futures = {self._executor.submit(run_probe, request): request for request in requests}  # start now
        return self._results(futures)

    def _results(self, futures: dict[Any, ProbeRequest]) -> Iterator[dict[str, Any]]:
        lost = yield from self._finished(futures)
        if not lost:
            return
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._start()  # a fresh pool for the probes the dead worker took down
        lost = yield from self._finished({self._executor.submit(run_probe, request): request for request in lost})
        if lost:
            probes = ", ".join(f"k={request.depth} seed {request.seed}" for request in lost)
            raise DeeplabError(f"a probe worker process died twice (killed, or out of memory?) training {probes}; "
                               f"the finished probes are in the ledger: run the same command again to go on")

    @staticmethod
    def _finished(futures: dict[Any, ProbeRequest]) -> Iterator[dict[str, Any]]:
        """Each record as its probe finishes; returns the requests a broken pool lost."""
        lost = []
        for future in as_completed(futures):
            try:
                record = future.result()
            except BrokenProcessPool:
                lost.append(futures[future])
                continue
            yield record
        return lost

    def close(self, cancel: bool = False) -> None:
        if cancel:
            # Our own workers (children that appeared with the pool; no concurrent.futures privates):
            # a failed or interrupted search must not leave probes training.
            import multiprocessing

            for process in multiprocessing.active_children():
                if process.pid not in self._children_before and process.is_alive():
                    process.terminate()
        self._executor.shutdown(wait=not cancel, cancel_futures=cancel)


