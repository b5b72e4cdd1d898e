"""Runs you can stop and continue (issue 13): every way a run stops, resumed, equals the straight run.

The table: one straight run (3 epochs of 16 batches, SGD with a cosine
schedule, a gradient-norm record every step) and, for each way a run can stop
— ``--max-steps`` mid-epoch and at an epoch's end, the end of ``--epochs``,
``--limit-train-batches``, SIGKILL mid-epoch and right after an epoch's end
with default options, SIGTERM, SIGINT — the stopped run resumed with the
straight command. Parameters, optimizer state, global_step, the history and
the per-epoch gradient profiles must be equal bit for bit.

Deterministic stops run in-process (``deeplab.training.fit.fit``), signals as real
``scripts/fit.py`` processes; all at one intra-op thread, so both give the
same numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import SCRIPTS_DIR, fit_environment, run_fit_script, write_synthetic_datasets
from deeplab.config import FitConfig
from deeplab.errors import DeeplabError, RunInterrupted
from deeplab.training.fit import fit

EPOCHS = 3
#: the straight run; every stopped run is resumed with exactly these options
STRAIGHT = ["--model", "cnn5", "--dataset", "mnist", "--batch-size", "16", "--epochs", str(EPOCHS),
            "--limit-val-batches", "1", "--seed", "5", "--optimizer", "sgd", "--schedule", "cosine", "--lr", "0.05",
            "--grad-every", "1"]


def as_config(args: list[str], **fields) -> FitConfig:
    """The FitConfig ``scripts/fit.py ARGS`` would build (for in-process runs)."""
    values = {"model": "cnn5", "dataset": "mnist", "batch_size": 16, "epochs": EPOCHS, "limit_val_batches": 1,
              "seed": 5, "optimizer": "sgd", "schedule": "cosine", "lr": 0.05, "grad_every": 1,
              "progress_bar": False}
    assert args == STRAIGHT  # keep the two spellings of the straight run together
    values.update(fields)
    return FitConfig(**values)


def fit_quietly(config: FitConfig) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return fit(config)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Synthetic MNIST with 2,048 training images: 128 steps of 16 an epoch, long enough to
    signal a process part-way through an epoch."""
    return write_synthetic_datasets(tmp_path_factory.mktemp("resume_data"), train=2048, test=128)


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory) -> dict:
    """The uninterrupted run, as a real process."""
    cwd = tmp_path_factory.mktemp("straight")
    run = run_fit_script(STRAIGHT + ["--data-dir", str(data_dir)], cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.results


def checkpoint_state(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def max_differences(a: dict, b: dict) -> tuple[float, float]:
    """(largest |Δ| over model parameters, over optimizer state tensors) of two checkpoints."""
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    params = max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa if k.startswith("model."))
    oa = [t for e in a["optimizer_states"][0]["state"].values() for t in e.values() if isinstance(t, torch.Tensor)]
    ob = [t for e in b["optimizer_states"][0]["state"].values() for t in e.values() if isinstance(t, torch.Tensor)]
    assert len(oa) == len(ob) > 0
    optimizer = max((x.double() - y.double()).abs().max().item() for x, y in zip(oa, ob))
    return params, optimizer


def assert_same_run(straight: dict, resumed: dict) -> tuple[float, float]:
    params, optimizer = max_differences(checkpoint_state(straight["checkpoint"]), checkpoint_state(resumed["checkpoint"]))
    assert params == 0.0, f"parameters differ by up to {params:.3g}"
    assert optimizer == 0.0, f"optimizer state differs by up to {optimizer:.3g}"
    assert resumed["global_step"] == straight["global_step"] == EPOCHS * 128
    assert resumed["history"] == straight["history"]
    assert resumed["grad"]["per_epoch_layer_l2"] == straight["grad"]["per_epoch_layer_l2"]
    assert resumed["grad"]["first_epoch_mean_l1"] == straight["grad"]["first_epoch_mean_l1"]
    assert resumed["test_acc"] == straight["test_acc"] and not resumed["interrupted"]
    return params, optimizer


# ---------------------------------------------------------------- stops by option
#: (stop kind, the stopping command's changed options) — resumed with the straight options
STOPS_BY_OPTION = {
    "max_steps mid-epoch": dict(max_steps=150),
    "max_steps at an epoch's end": dict(max_steps=128),
    "end of --epochs": dict(epochs=1),
    "--epochs and --max-steps mid-epoch": dict(max_steps=133),  # (the issue's --epochs 3 --max-steps 13)
    "--limit-train-batches": dict(epochs=1, limit_train_batches=40),  # epoch 1 closed after 40 of 128
}


@pytest.mark.parametrize("kind", list(STOPS_BY_OPTION), ids=list(STOPS_BY_OPTION))
def test_stopped_by_an_option_resumes_to_the_straight_run(kind, straight, data_dir, tmp_path, single_thread):
    log_dir = str(tmp_path / "logs")
    stopped = fit_quietly(as_config(STRAIGHT, data_dir=str(data_dir), log_dir=log_dir, **STOPS_BY_OPTION[kind]))
    assert stopped["global_step"] < straight["global_step"] and not stopped["interrupted"]
    resumed = fit_quietly(as_config(STRAIGHT, data_dir=str(data_dir), log_dir=log_dir, ckpt_path=stopped["checkpoint"]))
    assert resumed["run_dir"] == stopped["run_dir"]  # the same run, continued
    assert_same_run(straight, resumed)
    (resume,) = resumed["resumes"]
    assert resume["from_step"] == stopped["global_step"]


def test_a_run_stopped_twice_resumes_exactly(straight, data_dir, tmp_path, single_thread):
    log_dir = str(tmp_path / "logs")
    first = fit_quietly(as_config(STRAIGHT, data_dir=str(data_dir), log_dir=log_dir, max_steps=50))
    second = fit_quietly(as_config(STRAIGHT, data_dir=str(data_dir), log_dir=log_dir, max_steps=300,
                                   ckpt_path=first["checkpoint"]))
    assert second["global_step"] == 300 and second["partial_epoch"]["batches_done"] == 300 - 256
    resumed = fit_quietly(as_config(STRAIGHT, data_dir=str(data_dir), log_dir=log_dir, ckpt_path=second["checkpoint"]))
    assert_same_run(straight, resumed)
    assert [r["from_step"] for r in resumed["resumes"]] == [50, 300]
    assert resumed["resumes"][0]["changed"] == {"max_steps": [50, 300]}


# -------------------------------------------------------------------- signals
def start_fit(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPTS_DIR / "fit.py"), *args, "--no-progress-bar"], cwd=cwd,
                            env=fit_environment(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(process: subprocess.Popen, prefix: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no line starting {prefix!r}; stderr: {process.stderr.read()[-2000:]}")


def matching(pattern: Path) -> list[Path]:
    """The paths matching ``pattern`` (a path whose parts may hold ``*``: a run folder's name)."""
    return sorted(Path(pattern.anchor).glob(str(pattern.relative_to(pattern.anchor))))


def the_file(pattern: Path) -> Path:
    """The one path matching ``pattern``: ``logs/cnn5/*/checkpoints/last.ckpt`` in a log dir of one run."""
    found = matching(pattern)
    assert len(found) == 1, (pattern, found)
    return found[0]


def wait_for_file(pattern: Path, timeout: float = 120) -> Path:
    """Wait for the one path matching ``pattern`` to appear, and return it."""
    deadline = time.time() + timeout
    while not matching(pattern):
        assert time.time() < deadline, f"{pattern} never appeared"
        time.sleep(0.005)
    return the_file(pattern)


#: (kind, signal, how long after epoch 1's checkpoint to send it)
SIGNAL_STOPS = {
    "SIGKILL right after an epoch's end": (signal.SIGKILL, 0.0),
    "SIGKILL mid-epoch": (signal.SIGKILL, 0.15),
    "SIGTERM": (signal.SIGTERM, 0.15),
    "SIGINT": (signal.SIGINT, 0.15),
}


@pytest.mark.parametrize("kind", list(SIGNAL_STOPS), ids=list(SIGNAL_STOPS))
def test_stopped_by_a_signal_resumes_to_the_straight_run(kind, straight, data_dir, tmp_path):
    signum, delay = SIGNAL_STOPS[kind]
    args = STRAIGHT + ["--data-dir", str(data_dir), "--log-dir", str(tmp_path / "logs")]  # default checkpointing
    checkpoint = tmp_path / "logs" / "cnn5" / "*" / "checkpoints" / "last.ckpt"
    process = start_fit(args, tmp_path)
    try:
        wait_for_line(process, "Epoch 001/003")
        checkpoint = wait_for_file(checkpoint)
        time.sleep(delay)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    saved = checkpoint_state(checkpoint)  # intact, whatever the moment of the signal
    position = saved["deeplab"]["position"]
    assert saved["global_step"] < straight["global_step"]
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        assert position["epoch_closed"]  # default options: the last epoch end (or a 5-minute mark)
    else:
        assert process.returncode == 128 + signum
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert lines == [f"interrupted at step {saved['global_step']}; resume with: python {SCRIPTS_DIR / 'fit.py'} "
                         f"--ckpt-path {checkpoint} (the run's own settings come with it)"]
        results = json.loads((checkpoint.parents[1] / "results.json").read_text())
        assert results["interrupted"] is True and results["interrupted_by"] == signal.Signals(signum).name
        assert results["global_step"] == saved["global_step"]
    resumed = run_fit_script(args + ["--ckpt-path", str(checkpoint)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(straight, resumed.results)


def test_time_based_checkpoint_lands_mid_epoch_and_resumes_exactly(straight, data_dir, tmp_path):
    """--checkpoint-every-minutes (default 5) saves part-way through an epoch; a SIGKILL then loses
    only the steps since."""
    args = STRAIGHT + ["--data-dir", str(data_dir), "--log-dir", str(tmp_path / "logs")]
    checkpoint = tmp_path / "logs" / "cnn5" / "*" / "checkpoints" / "last.ckpt"
    process = start_fit(args + ["--checkpoint-every-minutes", "0.002"], tmp_path)  # every 0.12 s
    try:
        wait_for_line(process, "Epoch 001/003")
        checkpoint = wait_for_file(checkpoint)
        deadline = time.time() + 60
        while time.time() < deadline:  # wait for a mid-epoch checkpoint of epoch 2
            time.sleep(0.02)
            with contextlib.suppress(Exception):
                position = checkpoint_state(checkpoint)["deeplab"]["position"]
                if not position["epoch_closed"] and position["epoch"] == 1:
                    break
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        process.kill()
    position = checkpoint_state(checkpoint)["deeplab"]["position"]
    assert not position["epoch_closed"] and 0 < position["batches_done"] < 128
    resumed = run_fit_script(args + ["--ckpt-path", str(checkpoint)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(straight, resumed.results)


# ----------------------------------------------------------- refused resumes
def run_files(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


REFUSED = {
    "--lr": (["--lr", "0.1"], ["--lr 0.1", "0.05", "a resume continues the same run"]),
    "--batch-size": (["--batch-size", "8"], ["--batch-size 8", "16"]),
    "--optimizer": (["--optimizer", "adam"], ["--optimizer adam"]),
    "--seed and --init": (["--seed", "6", "--init", "kaiming"], ["--seed 6", "--init"]),
    "another model": (["--model", "two_layer_mlp"], ["holds model 'cnn5'"]),
    "nothing left to train": ([], ["nothing to train", "--epochs 1", "raise --epochs"]),
    "max steps already reached": (["--max-steps", "4"], ["nothing to train", "--max-steps 4"]),
    "limit below the position": (["--epochs", "2", "--limit-train-batches", "2"],
                                 ["after batch 2 of epoch 2", "more than 2 batches"]),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_a_refused_resume_leaves_the_run_byte_identical(case, data_dir, tmp_path, single_thread):
    """One `error:` line, exit 2, and not a byte of the resumed run changes (no new files either)."""
    from test_bad_input import run_script

    common = ["--dataset", "mnist", "--data-dir", str(data_dir), "--batch-size", "16", "--lr", "0.05",
              "--limit-val-batches", "1", "--seed", "5", "--no-progress-bar", "--log-dir", str(tmp_path / "logs")]
    first = ["--model", "cnn5", "--epochs", "1", "--limit-train-batches", "4"] + common
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_script("fit", first + (["--max-steps", "6", "--epochs", "2"] if case == "limit below the position"
                                          else [])) == 0
    run_dir = the_file(tmp_path / "logs" / "cnn5" / "*")
    before = run_files(run_dir)
    extra, words = REFUSED[case]
    argv = ["--model", "cnn5", "--epochs", "1", "--limit-train-batches", "4"] + common + extra
    argv += ["--ckpt-path", str(run_dir / "checkpoints" / "last.ckpt")]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = run_script("fit", argv)
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert run_files(run_dir) == before
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["cnn5"]
    assert sorted((tmp_path / "logs" / "cnn5").iterdir()) == [run_dir]


def test_resume_a_folder_or_an_old_checkpoint_is_one_line(tmp_path):
    from deeplab.training.resumable.resume import read_checkpoint

    with pytest.raises(DeeplabError, match="is a folder"):
        read_checkpoint(tmp_path)
    old = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": {"model_name": "cnn5"}, "state_dict": {}}, old)
    with pytest.raises(DeeplabError, match="older deeplab"):
        read_checkpoint(old)


def test_run_interrupted_says_how_to_resume(tmp_path):
    stopped = RunInterrupted(signal.SIGTERM, 12, tmp_path / "last.ckpt")
    assert stopped.exit_code == 143 and stopped.signal_name == "SIGTERM"
    assert str(stopped) == (f"interrupted at step 12; resume with: python scripts/fit.py --ckpt-path "
                            f"{tmp_path / 'last.ckpt'} (the run's own settings come with it)")
    assert RunInterrupted(signal.SIGINT).exit_code == 130


# ------------------------------------------------------------ disk and files
def test_a_full_disk_is_one_line_and_the_previous_checkpoint_survives(data_dir, tmp_path, monkeypatch, capsys,
                                                                      single_thread):
    import errno

    from deeplab.training.resumable import checkpointing
    from test_bad_input import run_script

    real_save, calls = torch.save, []

    def save_until_the_disk_fills(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the second checkpoint (epoch 2's end) finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(checkpointing.torch, "save", save_until_the_disk_fills)
    argv = ["--model", "cnn5", "--dataset", "mnist", "--data-dir", str(data_dir), "--batch-size", "64",
            "--epochs", "2", "--limit-train-batches", "3", "--limit-val-batches", "1", "--no-progress-bar",
            "--log-dir", str(tmp_path / "logs")]
    status = run_script("fit", argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1, lines
    assert "No space left on device" in lines[0] and "previous checkpoint (step 3) is intact" in lines[0]
    checkpoint = the_file(tmp_path / "logs" / "cnn5" / "*" / "checkpoints" / "last.ckpt")
    assert checkpoint_state(checkpoint)["global_step"] == 3  # the epoch-1 checkpoint, whole
    assert [p.name for p in checkpoint.parent.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_a_read_only_run_folder_is_refused_before_training(data_dir, tmp_path, monkeypatch, capsys, single_thread):
    """Resuming into a run folder on a read-only file system: one line, nothing trains."""
    import errno
    import pathlib

    from test_bad_input import run_script

    argv = ["--model", "cnn5", "--dataset", "mnist", "--data-dir", str(data_dir), "--batch-size", "64",
            "--epochs", "1", "--limit-train-batches", "2", "--limit-val-batches", "1", "--no-progress-bar",
            "--log-dir", str(tmp_path / "logs")]
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_script("fit", argv) == 0
    checkpoint = the_file(tmp_path / "logs" / "cnn5" / "*" / "checkpoints" / "last.ckpt")
    real_write_bytes = pathlib.Path.write_bytes

    def read_only(self, data):
        if self.name.startswith(".deeplab-write-test"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", read_only)
    capsys.readouterr()
    status = run_script("fit", argv + ["--epochs", "2", "--ckpt-path", str(checkpoint)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and "Read-only file system" in lines[0], lines


def test_results_are_strict_json_with_the_usual_file_mode(tmp_path):
    from deeplab.io import atomic_write_json

    target = tmp_path / "results.json"
    atomic_write_json(target, {"loss": float("nan"), "history": [{"val_acc": float("inf")}], "ok": 1.5})
    assert json.loads(target.read_text()) == {"loss": None, "history": [{"val_acc": None}], "ok": 1.5}
    assert "NaN" not in target.read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


# ------------------------------------------------------ resume from the checkpoint alone
def test_resume_from_the_run_folder_alone_is_the_straight_run(straight, data_dir, tmp_path):
    """Stopped by SIGINT mid-epoch, resumed with nothing but ``--ckpt-path RUN`` from another folder: the run's
    own settings and data folder come with the checkpoint; the result is the straight run's, bit for bit;
    the interrupt hint printed that command; the partial epoch counts its whole length."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative_data = os.path.relpath(data_dir, tmp_path)  # a relative --data-dir, resolved when the run started
    args = STRAIGHT + ["--data-dir", relative_data, "--log-dir", str(tmp_path / "logs")]
    checkpoint = tmp_path / "logs" / "cnn5" / "*" / "checkpoints" / "last.ckpt"
    process = start_fit(args, tmp_path)
    try:
        wait_for_line(process, "Epoch 001/003")
        checkpoint = wait_for_file(checkpoint)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-2000:]
    hint = stderr.strip().splitlines()[-1]
    assert f"--ckpt-path {checkpoint}" in hint and "resume with: python" in hint
    step = checkpoint_state(checkpoint)["global_step"]

    def resume(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--ckpt-path", str(checkpoint.parents[1]),
                               "--no-progress-bar", *extra], cwd=elsewhere, env=fit_environment(),
                              capture_output=True, text=True, timeout=600)

    # a resume that stops part-way again: its partial epoch counts the whole epoch, not what was left of it
    target = (step // 128) * 128 + 100 if step % 128 < 90 else (step // 128 + 1) * 128 + 100
    again = resume("--max-steps", str(target))
    assert again.returncode == 0, again.stderr[-3000:]
    partial = [line for line in again.stdout.splitlines() if "partial:" in line]
    assert partial == [line for line in partial if "(partial: 100 of 128 batches)" in line] and len(partial) == 1
    resumed = resume()  # stopped by its --max-steps: trains on to --epochs
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((checkpoint.parents[1] / "results.json").read_text())
    assert_same_run(straight, results)
    assert not (elsewhere / "lightning_logs").exists()  # it continued in its own folder


def test_a_resume_beside_a_changed_run_setting_is_refused(data_dir, tmp_path, single_thread):
    stopped = fit_quietly(as_config(STRAIGHT, max_steps=5, data_dir=str(data_dir), log_dir=str(tmp_path)))
    completed = subprocess.run([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--ckpt-path", stopped["checkpoint"],
                                "--lr", "0.5"], cwd=tmp_path, env=fit_environment(), capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 2 and "--lr 0.5 (the run has 0.05)" in completed.stderr
    assert "--dataset" not in completed.stderr  # only what was typed is compared
