"""Hostile conditions (damaged, malicious or hand-made files; racing runs), each with the real thing:
a real flipped byte, a real pickle payload, real ledger files, real threads. Each of these failed
before its fix: a valid record deleted, a damaged checkpoint accepted, code run by a checkpoint, a
ledger that raised RecursionError or lost a probe, a flipped result taken silently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from conftest import SCRIPTS_DIR, fit_environment, run_fit_script
from deeplab.errors import DeeplabError
from deeplab.search.ledger import ProbeLedger
from deeplab.training.resumable.state import load_run_state

SETTINGS = {"model": "cnn_tanh", "epochs": 3, "lr": 0.01}


def record(depth: int, seed: int = 0, error: float = 0.05) -> dict:
    return {"model": "cnn_tanh", "depth": depth, "seed": seed, "settings": SETTINGS, "train_error": error,
            "test_error": error, "epoch_errors": [{"epoch": 1, "train_error": error, "test_error": error}],
            "epochs": 3, "epochs_run": 3, "diverged": False, "diverged_at_step": None}


# ------------------------------------------------------------------------ ledgers
def test_a_whole_last_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps(record(3)) + "\n" + json.dumps(record(6)))  # joined by hand: no final newline
    ledger = ProbeLedger(path)
    assert len(ledger) == 2 and ledger.skipped_lines == 0
    assert path.read_text().endswith("}\n")  # the newline added, so the next append starts a line
    ledger.add(record(9))
    assert len(ProbeLedger(path)) == 3


def test_a_partial_last_line_is_still_dropped(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps(record(3)) + "\n" + json.dumps(record(6))[:40])  # a kill mid-append
    ledger = ProbeLedger(path)
    assert len(ledger) == 1 and ledger.skipped_lines == 1
    assert path.read_text() == json.dumps(record(3)) + "\n"


def test_a_deeply_nested_line_is_an_unreadable_line(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps(record(3)) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    ledger = ProbeLedger(path)
    assert len(ledger) == 1 and ledger.skipped_lines == 1


def test_a_ledger_that_links_to_nothing_is_refused_before_a_probe_trains(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.symlink_to(tmp_path / "gone" / "probes.jsonl")
    with pytest.raises(DeeplabError, match="link to nothing"):
        ProbeLedger(path)


def test_a_probe_recorded_twice_with_different_results_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    lines = [record(3), record(6, error=0.05), record(3), record(6, error=0.9)]  # k = 3 repeated alike
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ledger = ProbeLedger(path)
    assert ledger.conflicts == [(6, 0)]
    assert ledger.get(SETTINGS, 6, 0)["test_error"] == 0.9  # the later line counts, said once


# ------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def real_checkpoint(synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("hostile_run")
    run = run_fit_script(["--model", "cnn5", "--dataset", "mnist", "--data-dir", str(synthetic_data_dir),
                          "--epochs", "2", "--batch-size", "16", "--max-steps", "3", "--no-grad-norms"], cwd)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.run_dir / "checkpoints" / "last.ckpt"


def resume(checkpoint: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--ckpt-path", str(checkpoint),
                           "--no-progress-bar"], cwd=cwd, env=fit_environment(), capture_output=True, text=True,
                          timeout=300)


def test_a_flipped_bit_in_a_checkpoint_is_one_line(real_checkpoint: Path, tmp_path: Path) -> None:
    import zipfile

    data = bytearray(real_checkpoint.read_bytes())
    with zipfile.ZipFile(real_checkpoint) as archive:  # a byte inside the largest tensor's data
        entry = max(archive.infolist(), key=lambda info: info.compress_size)
    offset = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra) + entry.compress_size // 2
    data[offset] ^= 0x01
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(bytes(data))
    torch.load(damaged, map_location="cpu", weights_only=True)  # torch itself takes it
    with pytest.raises(DeeplabError, match="damaged.*fails its checksum"):
        load_run_state(damaged)
    process = resume(damaged, tmp_path)
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and "fails its checksum" in lines[0], process.stderr[-2000:]
    assert damaged.read_bytes() == bytes(data)  # nothing written over it


class _Payload:
    """What a malicious checkpoint pickles: unpickling it would create a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "the_payload_ran"
    malicious = tmp_path / "malicious.ckpt"
    torch.save({"hyper_parameters": {"model_name": "cnn5"}, "payload": _Payload(marker)}, malicious)
    for argv in (["--ckpt-path", str(malicious)], ["--evaluate", str(malicious)]):
        process = subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), *argv], cwd=tmp_path,
                                 env=fit_environment(), capture_output=True, text=True, timeout=300)
        lines = [line for line in process.stderr.splitlines() if line.strip()]
        assert process.returncode == 2 and len(lines) == 1 and "refusing to load it" in lines[0], process.stderr
        assert not marker.exists(), "the checkpoint's pickled code ran"


# ------------------------------------------------------------------------ a signal in the final test
def signal_after_line(process: subprocess.Popen, prefix: str, signals: tuple[int, ...],
                      delay: float) -> tuple[str, str]:
    """Wait for ``process``'s stdout line starting with ``prefix``, then send each signal ``delay`` s
    after the previous; its remaining (stdout, stderr). The process is killed if anything fails."""
    try:
        for line in process.stdout:
            if line.startswith(prefix):
                break
        for signum in signals:
            time.sleep(delay)
            process.send_signal(signum)
        return process.communicate(timeout=300)
    finally:
        process.kill()



@pytest.fixture(scope="module")
def large_test_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic MNIST whose test split takes seconds to evaluate, so a signal lands inside it."""
    from conftest import write_synthetic_datasets

    return write_synthetic_datasets(tmp_path_factory.mktemp("large_test_split"), train=256, test=30000)


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)], ids=["SIGTERM", "two SIGINTs"])
def test_a_signal_during_the_final_test_keeps_the_run(signals, large_test_split: Path, tmp_path: Path) -> None:
    """The final test (a held-out split) re-registered Lightning's SIGTERM handler: SIGTERM there exited 0
    with no results.json, and two Ctrl-C said "nothing to resume" beside a checkpoint."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS_DIR / "fit.py"), "--model", "cnn15_skip2", "--dataset", "mnist", "--data-dir",
         str(large_test_split), "--epochs", "1", "--limit-train-batches", "5", "--val-split", "64",
         "--no-progress-bar", "--no-grad-norms", "--out", str(tmp_path / "logs")],
        cwd=tmp_path, env=fit_environment(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    # "Epoch 001/001" is printed when the epoch closes: the final test starts now
    _, stderr = signal_after_line(process, "Epoch 001/001", signals, delay=0.3)
    assert process.returncode == 128 + signals[0], (process.returncode, stderr[-2000:])
    (results_path,) = (tmp_path / "logs").glob("cnn15_skip2/*/results.json")
    results = json.loads(results_path.read_text())
    assert results["interrupted"] is True and results["interrupted_by"] == signal.Signals(signals[0]).name
    hint = [line for line in stderr.splitlines() if line.strip()][-1]
    if len(signals) == 1:  # the test was let finish: the run is whole
        assert results["test_acc"] is not None and "the run is complete" in hint, hint
    else:  # stopped at once: the training is saved, and --evaluate measures the missing test
        assert results["test_acc"] is None and (results_path.parent / "checkpoints" / "last.ckpt").is_file()
        assert f"--evaluate {results_path.parent}" in hint and "nothing to resume" not in hint, hint


# ------------------------------------------------------------------------ options that passed and crashed later
@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_a_true_precision_trains(precision: str, synthetic_data_dir: Path, tmp_path: Path) -> None:
    """Listed as valid, they crashed at the first convolution (float inputs, double or bfloat16 weights)."""
    run = run_fit_script(["--model", "cnn_tanh", "--depth", "3", "--dataset", "mnist", "--data-dir",
                          str(synthetic_data_dir), "--epochs", "1", "--max-steps", "3", "--batch-size", "16",
                          "--precision", precision, "--no-grad-norms"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    results = run.results
    assert results["hparams"]["precision"] == precision and results["global_step"] == 3


# ------------------------------------------------------------------------ the Python API and config files
@pytest.mark.parametrize("call, words", [
    (lambda d: d.fit({"model": "cnn5"}), "takes a deeplab.FitConfig"),
    (lambda d: d.Classifier("cnn5", datamodule=object()), "datamodule"),
    (lambda d: d.Classifier("cnn5", max_epochs=0), "max_epochs"),
    (lambda d: d.TrainabilitySearch(seeds="abc"), "seeds"),
    (lambda d: d.TrainabilitySearch(lower=None), "lower"),
    (lambda d: d.create_model("cnn5", image_size=5), "image_size 5 does not fit"),
    (lambda d: d.create_model("cnn5", num_classes=0), "num_classes"),
], ids=["fit(dict)", "datamodule=object()", "max_epochs=0", "seeds='abc'", "lower=None", "image_size=5",
        "num_classes=0"])
def test_library_calls_name_the_bad_argument(call, words: str) -> None:
    import deeplab

    with pytest.raises(deeplab.DeeplabError, match=words):
        call(deeplab)


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe{\"model\": \"cnn5\"}", "not UTF-8"),
    (b'{"model": "cnn5", "model_kwargs": {"bogus": 1}}', "takes no such keyword"),
], ids=["not UTF-8", "unknown model keyword"])
def test_a_bad_config_file_is_one_line(content: bytes, words: str, synthetic_data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(content)
    process = subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--config", str(config), "--dataset",
                              "mnist", "--data-dir", str(synthetic_data_dir), "--out", str(tmp_path / "logs")],
                             cwd=tmp_path, env=fit_environment(), capture_output=True, text=True, timeout=300)
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and words in lines[0], process.stderr[-2000:]
    assert not (tmp_path / "logs").exists()


def test_a_fifo_config_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    process = subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--config", str(fifo)], cwd=tmp_path,
                             env=fit_environment(), capture_output=True, text=True, timeout=120)
    assert process.returncode == 2 and "not a regular file" in process.stderr, process.stderr


# ------------------------------------------------------------------------ a real full disk
@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 1 MiB filesystem (a tmpfs where this process may mount one), else ``None``: the caller then
    limits the process's file size instead (RLIMIT_FSIZE, SIGXFSZ ignored), which fails writes alike."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    yield mount_point, mounted
    if mounted:
        subprocess.run(["umount", str(mount_point)], capture_output=True)


def _limited_file_size(limit: int) -> Callable[[], None]:
    def limit_it() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write then fails with EFBIG, as ENOSPC does
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_it


@pytest.mark.parametrize("script", ["fit", "search"])
def test_a_full_disk_is_one_line_with_the_right_advice(script: str, small_disk, synthetic_data_dir: Path,
                                                       tmp_path: Path) -> None:
    """torch's checkpoint writer reported a full disk as RuntimeError("unexpected pos …"): a traceback; and a
    search gave the probe's advice ("resume with --ckpt-path") instead of the search's."""
    folder, mounted = small_disk
    free = 1 << 20 if script == "fit" else 20_000  # a probe's checkpoint is small: leave less room
    if mounted and script == "search":
        (folder / "filler").write_bytes(b"\0" * ((1 << 20) - free - 8192))
    common = ["--dataset", "mnist", "--data-dir", str(synthetic_data_dir), "--epochs", "1",
              "--batch-size", "16", "--no-progress-bar" if script == "fit" else "--verbose"]
    argv = (["--model", "cnn5", "--out", str(folder / "logs")] if script == "fit" else
            ["--model", "cnn_tanh", "--lower", "3", "--upper", "3", "--out", str(folder / "search")])
    process = subprocess.run([sys.executable, str(SCRIPTS_DIR / f"{script}.py"), *argv, *common], cwd=tmp_path,
                             env=fit_environment(), capture_output=True, text=True, timeout=600,
                             preexec_fn=None if mounted else _limited_file_size(free))
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and "Traceback" not in process.stderr, process.stderr[-3000:]
    assert "could not write the checkpoint" in lines[0] and ("No space left" in lines[0] or "too large" in lines[0])
    if script == "fit":
        assert "start the run again" in lines[0], lines[0]
    else:
        assert "run the same command again" in lines[0] and "--ckpt-path" not in lines[0], lines[0]


def test_a_killed_writes_temporary_is_removed_when_the_run_goes_on(real_checkpoint: Path, tmp_path: Path) -> None:
    """A kill -9 during a checkpoint write left a .last.ckpt.*.tmp (1.4 MB) that no later run removed."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(real_checkpoint.parents[1], run_dir)
    stale = run_dir / "checkpoints" / ".last.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    process = subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--ckpt-path", str(run_dir),
                              "--max-steps", "4", "--no-progress-bar"], cwd=tmp_path, env=fit_environment(),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    assert not stale.exists() and sorted(p.name for p in stale.parent.iterdir()) == ["last.ckpt"]


def test_sigterm_while_the_run_is_planned_is_a_clean_stop(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """SIGTERM before training (while the data is read) was the default kill: no message, and the log
    folder the run had just created left behind, empty. A real os.kill at that phase, in a subprocess."""
    script = f"""
import os, signal, sys, time
import deeplab
import deeplab.training.fit as fit_module
real = fit_module.datamodule_for
def reading_the_data(config):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)
    return real(config)
fit_module.datamodule_for = reading_the_data
from deeplab.cli import run_main
sys.exit(run_main(lambda: deeplab.fit(deeplab.FitConfig(model="cnn5", dataset="mnist", epochs=1,
    data_dir={str(synthetic_data_dir)!r}, log_dir={str(tmp_path / 'logs')!r}, progress_bar=False)) and 0))
"""
    process = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=fit_environment(),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, (process.returncode, process.stderr[-2000:])
    assert "interrupted (SIGTERM)" in process.stderr and "Traceback" not in process.stderr, process.stderr
    assert not (tmp_path / "logs").exists()  # the folder it had created is gone


def test_a_killed_parallel_worker_loses_no_probe(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """kill -9 of one --parallel worker broke the pool (BrokenProcessPool, exit 1) and lost the other
    worker's probe; now the probes it took down are trained again in a fresh pool."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS_DIR / "search.py"), "--model", "cnn_tanh", "--lower", "3", "--upper", "6",
         "--parallel", "2", "--dataset", "mnist", "--data-dir", str(synthetic_data_dir), "--epochs", "2",
         "--batch-size", "16", "--out", str(tmp_path / "search")],
        cwd=tmp_path, env=fit_environment(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        for line in process.stdout:
            if "started" in line:
                break
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            found = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "spawn_main"], capture_output=True,
                                   text=True).stdout.split()
            workers = [int(pid) for pid in found]
            time.sleep(0.2)
        assert workers, "no worker processes found"
        time.sleep(2.0)
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    ledger = [json.loads(line) for line in (tmp_path / "search" / "probes.jsonl").read_text().splitlines()]
    assert sorted(record["depth"] for record in ledger) == [3, 6]
    assert stdout.strip().splitlines()[-1].startswith("max trainable depth:")


def test_ctrl_c_in_the_bench_leaves_nothing_and_offers_no_resume(tmp_path: Path) -> None:
    """The bench's Ctrl-C suggested resuming from a checkpoint in a temporary folder it had already deleted,
    and deeplab-bench-* folders stayed behind."""
    from conftest import write_synthetic_datasets

    synthetic_data_dir = write_synthetic_datasets(tmp_path / "data", train=20000, test=64)  # long enough a run
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS_DIR / "bench.py"), "--quick", "--cases", "two_layer_mlp_bs1", "--steps", "20000", "--deeplab-set",
         "compile=off", "--data-dir",
         str(synthetic_data_dir)], cwd=tmp_path, env=fit_environment(PYTHONUNBUFFERED="1", TMPDIR=str(scratch)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = signal_after_line(process, "deeplab bench:", (signal.SIGINT,), delay=4.0)
    assert process.returncode == 130, stderr[-2000:]
    assert "--ckpt-path" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert not list(scratch.glob("deeplab-bench-*")), list(scratch.iterdir())


def test_max_steps_inside_the_first_epoch_without_evaluation_ends_cleanly(synthetic_data_dir: Path,
                                                                         tmp_path: Path) -> None:
    """--max-steps inside the first epoch with --limit-val-batches 0: no epoch closed, nothing evaluated —
    a KeyError('val_acc') after training, found measuring activation checkpointing at k = 999."""
    run = run_fit_script(["--model", "cnn5", "--dataset", "mnist", "--data-dir", str(synthetic_data_dir),
                          "--epochs", "1", "--batch-size", "16", "--max-steps", "2", "--limit-val-batches", "0",
                          "--no-grad-norms"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.results["test_acc"] is None and run.results["global_step"] == 2


@pytest.mark.parametrize("content, words", [
    ('{"seeds": []}', "at least one seed"), ('{"seeds": "a,b"}', "integers separated by commas"),
    ('{"out": 5}', "out must be text"), ('{"name": ["x"]}', "name must be text"),
], ids=["seeds []", "seeds 'a,b'", "out 5", "name list"])
def test_experiment_config_values_of_the_wrong_kind_are_one_line(content: str, words: str, tmp_path: Path) -> None:
    config = tmp_path / "recipe.json"
    config.write_text(content)
    process = subprocess.run([sys.executable, str(SCRIPTS_DIR / "experiment.py"), "batch_size", "--config",
                              str(config)], cwd=tmp_path, env=fit_environment(), capture_output=True, text=True,
                             timeout=120)
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 2 and len(lines) == 1 and words in lines[0], process.stderr[-2000:]


def test_two_runs_started_together_get_two_folders(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """Two real processes with the same settings into one --out: two run folders, each with its own
    results.json (the next version was "list the folder, add one", reserved only later)."""
    argv = [sys.executable, str(SCRIPTS_DIR / "fit.py"), "--model", "cnn5", "--dataset", "mnist", "--data-dir",
            str(synthetic_data_dir), "--epochs", "1", "--batch-size", "16", "--max-steps", "2", "--no-grad-norms",
            "--no-progress-bar", "--no-run-figures", "--out", str(tmp_path / "logs")]
    processes = [subprocess.Popen(argv, cwd=tmp_path, env=fit_environment(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-1500:] for _, err in outputs]
    results = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert len(set(results)) == 2, results
    assert sorted(p.name for p in (tmp_path / "logs" / "cnn5").iterdir()) == ["mnist-ep1-bs16-steps2-s0",
                                                                             "mnist-ep1-bs16-steps2-s0-2"]
