"""Reliability (issue 8): exact resume, crash safety, divergence, bad input, DDP, determinism.

Every check runs real training on the synthetic datasets of ``conftest.py``
in subprocesses, as a user would run ``scripts/fit.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deeplab.config import FitConfig
from deeplab.io import atomic_write, atomic_write_json

REPO = Path(__file__).resolve().parents[1]
FIT = [sys.executable, str(REPO / "scripts" / "fit.py")]


def run_fit(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    process = subprocess.run(FIT + args, cwd=cwd, capture_output=True, text=True, timeout=300)
    if check and process.returncode != 0:
        raise AssertionError(f"fit.py {' '.join(args)} failed ({process.returncode}):\n{process.stderr[-3000:]}")
    return process


def last_checkpoint(log_dir: Path) -> Path:
    (checkpoint,) = log_dir.glob("*/*/checkpoints/last.ckpt")
    return checkpoint


def model_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def optimizer_state(checkpoint: Path) -> list[torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["optimizer_states"][0]["state"]
    return [t for entry in state.values() for t in entry.values() if isinstance(t, torch.Tensor)]


# ------------------------------------------------------------- exact resume
RESUME_CASES = {
    "cnn5-momentum_sgd": ["--model", "cnn5", "--optimizer", "momentum_sgd", "--dataset", "fashion_mnist"],
    "cnn_elu_bn-sgd": ["--model", "cnn_elu_bn", "--depth", "6", "--optimizer", "sgd", "--dataset", "mnist"],
    "cnn5-adam-cosine": ["--model", "cnn5", "--optimizer", "adam", "--lr", "0.001", "--schedule", "cosine",
                         "--dataset", "mnist"],
}


@pytest.mark.parametrize("case", list(RESUME_CASES), ids=list(RESUME_CASES))
def test_resume_mid_epoch_is_bit_identical(case: str, synthetic_data_dir: Path, tmp_path: Path) -> None:
    """N straight steps == N/2 steps, stop, resume in a new process to N (stop inside epoch 2)."""
    # 6 batches an epoch × 2 epochs = 12 steps; the stop at step 9 is in the middle of epoch 2.
    common = RESUME_CASES[case] + [
        "--data-dir", str(synthetic_data_dir), "--batch-size", "16", "--epochs", "2",
        "--limit-train-batches", "6", "--limit-val-batches", "1", "--seed", "5", "--no-progress-bar",
        "--grad-every", "1",
    ]
    run_fit(common + ["--log-dir", str(tmp_path / "straight")], tmp_path)
    run_fit(common + ["--log-dir", str(tmp_path / "split"), "--max-steps", "9", "--checkpoint-every-n-steps", "9"], tmp_path)
    half = last_checkpoint(tmp_path / "split")
    assert torch.load(half, weights_only=True)["global_step"] == 9
    run_fit(common + ["--log-dir", str(tmp_path / "split"), "--ckpt-path", str(half)], tmp_path)

    straight, resumed = last_checkpoint(tmp_path / "straight"), last_checkpoint(tmp_path / "split")
    a, b = model_tensors(straight), model_tensors(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    for x, y in zip(optimizer_state(straight), optimizer_state(resumed), strict=True):
        assert torch.equal(x, y), "optimizer state (momentum / Adam moments) differs after resume"
    results_a = json.loads((straight.parents[1] / "results.json").read_text())
    results_b = json.loads((resumed.parents[1] / "results.json").read_text())
    assert results_a["global_step"] == results_b["global_step"] == 12
    assert results_a["history"] == results_b["history"]  # epoch metrics, incl. the split epoch, agree


# ------------------------------------------------------------- crash safety
def test_sigkill_leaves_a_resumable_checkpoint(synthetic_data_dir: Path, tmp_path: Path) -> None:
    common = ["--model", "cnn5", "--dataset", "mnist", "--data-dir", str(synthetic_data_dir), "--batch-size", "4",
              "--limit-val-batches", "1", "--no-progress-bar", "--log-dir", str(tmp_path / "logs")]
    args = common + ["--epochs", "50", "--checkpoint-every-n-steps", "2"]
    process = subprocess.Popen(FIT + args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    model_dir = tmp_path / "logs" / "cnn5"
    deadline = time.time() + 120
    try:
        # Wait for several checkpoint rewrites so the kill is likely to land during one.
        while time.time() < deadline and len(list(model_dir.glob("*/checkpoints/last.ckpt"))) == 0:
            time.sleep(0.2)
        time.sleep(3.0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (checkpoint,) = model_dir.glob("*/checkpoints/last.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # intact, never half-written
    killed_at = state["global_step"]
    assert killed_at >= 2
    # Resume through one more whole epoch: the kill may land just after an end-of-epoch
    # checkpoint, where ``--epochs epoch+1`` would leave nothing to train.
    resumed = run_fit(common + ["--ckpt-path", str(checkpoint), "--epochs", str(state["epoch"] + 2)], tmp_path)
    assert resumed.stdout.strip().splitlines()[-1].startswith("results: ")
    final = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert final["global_step"] > killed_at


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    atomic_write_json(target, {"test_acc": 0.9})
    before = target.read_bytes()

    def crash_halfway(file) -> None:
        file.write(b'{"test_acc": 0.')
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, crash_halfway)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind


# --------------------------------------------------------------- divergence
def test_divergence_stops_with_one_line_and_exit_3(synthetic_data_dir: Path, tmp_path: Path) -> None:
    process = run_fit(["--model", "cnn5", "--dataset", "mnist", "--data-dir", str(synthetic_data_dir),
                       "--lr", "1e30", "--loss", "torch", "--batch-size", "16", "--epochs", "3",
                       "--no-progress-bar", "--log-dir", str(tmp_path / "logs")], tmp_path, check=False)
    assert process.returncode == 3, process.stderr[-2000:]
    error_lines = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "diverged" in error_lines[0] and "--lr" in error_lines[0]
    assert "Traceback" not in process.stderr
    results_path = Path(process.stdout.strip().splitlines()[-1].removeprefix("results: "))
    results = json.loads(results_path.read_text())
    assert results["diverged"] is True and isinstance(results["diverged_at_step"], int)
    assert results["global_step"] < 3 * 16  # stopped at once, not after 3 epochs


# ------------------------------------------------------- determinism on CPU
def test_same_command_same_metrics(synthetic_data_dir: Path, tmp_path: Path) -> None:
    args = ["--model", "cnn5", "--dataset", "cifar10", "--data-dir", str(synthetic_data_dir), "--batch-size", "16",
            "--epochs", "2", "--limit-train-batches", "4", "--seed", "11", "--no-progress-bar"]
    first = run_fit(args + ["--log-dir", str(tmp_path / "a")], tmp_path)
    second = run_fit(args + ["--log-dir", str(tmp_path / "b")], tmp_path)
    load = lambda p: json.loads(Path(p.stdout.strip().splitlines()[-1].removeprefix("results: ")).read_text())
    a, b = load(first), load(second)
    assert a["history"] == b["history"] and a["test_acc"] == b["test_acc"]
    assert a["grad"]["first_epoch_mean_l1"] == b["grad"]["first_epoch_mean_l1"]


# ------------------------------------------------------------- distributed
def test_ddp_two_cpu_processes_match_one_process(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """2 × gloo processes at batch 8 == 1 process at batch 16 over the same global batches (no BN)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPU cores")
    common = ["--model", "cnn5", "--dataset", "mnist", "--data-dir", str(synthetic_data_dir), "--epochs", "2",
              "--limit-train-batches", "4", "--limit-val-batches", "1", "--seed", "2", "--accelerator", "cpu",
              "--no-progress-bar", "--no-grad-norms"]
    run_fit(common + ["--devices", "2", "--strategy", "ddp", "--batch-size", "8", "--log-dir", str(tmp_path / "ddp")], tmp_path)
    run_fit(common + ["--devices", "1", "--batch-size", "16", "--log-dir", str(tmp_path / "one")], tmp_path)
    assert len(list((tmp_path / "ddp" / "cnn5").iterdir())) == 1  # one run dir for both ranks
    a, b = model_tensors(last_checkpoint(tmp_path / "ddp")), model_tensors(last_checkpoint(tmp_path / "one"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=f"{name} differs")


def test_runs_started_together_never_share_a_folder(tmp_path) -> None:
    """Run folders are reserved by ``mkdir`` (no "list the folder, add one"): six threads reserving
    one name five times each, released at once, get thirty different folders."""
    import threading

    from deeplab.io import reserve_folder, reserved_folders

    barrier, names, lock = threading.Barrier(6), [], threading.Lock()

    def reserve() -> None:
        barrier.wait()
        for _ in range(5):
            name = reserve_folder(tmp_path, "lr0.02-s0").name
            with lock:
                names.append(name)

    threads = [threading.Thread(target=reserve) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = ["lr0.02-s0"] + [f"lr0.02-s0-{i}" for i in range(2, 31)]
    assert len(names) == len(set(names)) == 30 and sorted(names) == sorted(expected)
    assert [p.name for p in reserved_folders(tmp_path, "lr0.02-s0")] == expected  # oldest first


def test_run_folder_names_say_what_the_run_changed() -> None:
    from deeplab.training.resolve import resolve_config, run_folder_name

    def name(**fields) -> str:
        return run_folder_name(resolve_config(FitConfig(**fields)))

    assert name(model="cnn15_skip2") == "s0"  # the seed protocol itself
    assert name(model="cnn15_skip2", lr=0.02) == "lr0.02-s0"
    assert name(model="cnn_tanh", depth=30, init="delta_orthogonal", lr=0.005, seed=1) == \
        "k30-delta_orthogonal-lr0.005-s1"
    long = name(model="cnn5", epochs=1, batch_size=16, max_steps=5, limit_train_batches=3, optimizer="adam",
                clip_grad_norm=1.0, augment=True, weight_decay=1e-4, momentum=0.5, schedule="cosine")
    assert len(long) <= 60 and long.startswith("ep1-bs16-") and long.endswith("-s0") and "+" in long, long
