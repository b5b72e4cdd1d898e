"""Bad input (issue 8): each mistake gets one line saying what to do, exit status 2, no traceback,
and nothing already written is damaged.

The table runs in-process through the scripts' own ``main`` (what ``python
scripts/fit.py ...`` runs), so it stays fast; two cases also run as real
subprocesses to prove the end-to-end exit status.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from deeplab.cli import run_main

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, argv: list[str]) -> int:
    module = load_script(name)
    try:
        return run_main(lambda: module.main(argv))
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code)


@pytest.fixture()
def workspace(tmp_path: Path, synthetic_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A log dir holding an earlier run's results and checkpoint that no mistake may touch."""
    monkeypatch.chdir(tmp_path)
    log_dir = tmp_path / "logs"
    earlier = log_dir / "cnn5" / "version_0"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "results.json").write_text('{"test_acc": 0.9}\n')
    (earlier / "checkpoints" / "last.ckpt").write_bytes(b"not a real checkpoint, but precious")
    other_model = tmp_path / "cnn15.ckpt"
    return {"data": synthetic_data_dir, "logs": log_dir, "earlier": earlier, "tmp": tmp_path}


def _real_checkpoint_of(model: str, data: Path, tmp: Path) -> Path:
    argv = ["--model", model, "--dataset", "mnist", "--data-dir", str(data), "--epochs", "1",
            "--limit-train-batches", "1", "--limit-val-batches", "1", "--batch-size", "4",
            "--no-progress-bar", "--no-grad-norms", "--log-dir", str(tmp / "made")]
    assert run_script("fit", argv) == 0
    return next((tmp / "made" / model).glob("*/checkpoints/last.ckpt"))


# (id, script, argv with {data} {logs} {tmp} placeholders, words the one line must contain)
BAD_INPUTS = [
    ("unknown model", "fit", ["--model", "cnn15_skp2"], ["unknown model", "cnn15_skip2"]),
    ("no model", "fit", [], ["--model"]),
    ("depth not a multiple of 3", "fit", ["--model", "cnn_tanh", "--depth", "4"], ["multiple of 3"]),
    ("depth zero", "fit", ["--model", "cnn_elu", "--depth", "0"], ["multiple of 3"]),
    ("depth for a fixed-depth model", "fit", ["--model", "cnn5", "--depth", "6"], ["fixed depth", "--depth"]),
    ("unknown dataset", "fit", ["--model", "cnn5", "--dataset", "imagenet"], ["unknown dataset", "mnist"]),
    ("dataset files missing offline", "fit", ["--model", "cnn5", "--data-dir", "{tmp}/empty"],
     ["FashionMNIST/raw", "--data-dir"]),
    ("truncated dataset file", "fit", ["--model", "cnn5", "--dataset", "mnist", "--data-dir", "{tmp}/truncated"],
     ["truncated or corrupt", "--data-dir"]),
    ("a label outside the classes", "fit", ["--model", "cnn5", "--dataset", "mnist", "--data-dir", "{tmp}/badlabel"],
     ["label 255", "outside 0…9", "--data-dir"]),
    ("crop padding beyond the image", "fit", ["--model", "cnn5", "--crop-padding", "100000"],
     ["--crop-padding 100000", "at most 28"]),
    ("a depth scaling that overflows", "fit", ["--model", "cnn_tanh", "--depth", "3", "--lr-depth-scaling",
                                               "power:400@1000000"], ["--lr-depth-scaling", "η = inf"]),
    ("a normalization std that divides to infinity", "fit", ["--model", "cnn5", "--normalize-std", "1e-320"],
     ["--normalize-std", "at least 1e-06"]),
    ("a 300-character run name", "fit", ["--model", "cnn5", "--run-name", "r" * 300], ["--run-name", "300 bytes"]),
    ("a config path too long for the file system", "fit", ["--model", "cnn5", "--config", "{tmp}/" + "c" * 300],
     ["path is too long"]),
    ("a pipe as the checkpoint", "fit", ["--model", "cnn5", "--ckpt-path", "{tmp}/pipe.ckpt"],
     ["not a regular file"]),
    ("batch size zero", "fit", ["--model", "cnn5", "--batch-size", "0"], ["--batch-size", "positive"]),
    ("batch size not a number", "fit", ["--model", "cnn5", "--batch-size", "many"], ["--batch-size"]),
    ("negative learning rate", "fit", ["--model", "cnn5", "--lr", "-0.1"], ["--lr", "positive"]),
    ("momentum of 1", "fit", ["--model", "cnn5", "--momentum", "1.0"], ["--momentum", "[0, 1)"]),
    ("negative momentum", "fit", ["--model", "cnn5", "--momentum", "-0.5"], ["--momentum", "[0, 1)"]),
    ("more devices than exist", "fit", ["--model", "cnn5", "--accelerator", "cpu", "--devices", "64"],
     ["--devices", "cores"]),
    ("gpu on a machine without one", "fit", ["--model", "cnn5", "--accelerator", "gpu"], ["no CUDA GPU"]),
    ("missing resume checkpoint", "fit", ["--model", "cnn5", "--ckpt-path", "{tmp}/nope.ckpt"],
     ["--ckpt-path", "no such checkpoint"]),
    ("resume a checkpoint of another model", "fit", ["--model", "cnn5", "--ckpt-path", "{other_ckpt}"],
     ["holds model", "two_layer_mlp"]),
    ("unwritable log directory", "fit", ["--model", "cnn5", "--log-dir", "{tmp}/readonly/logs"],
     ["--log-dir", "not writable"]),
    ("val split above 1 as fraction", "fit", ["--model", "cnn5", "--val-split", "1.5"], ["--val-split", "fraction"]),
    ("val split of zero", "fit", ["--model", "cnn5", "--val-split", "0"], ["--val-split"]),
    ("val split larger than the training set", "fit", ["--model", "cnn5", "--val-split", "100000"],
     ["--val-split", "leaves"]),
    ("unknown optimizer", "fit", ["--model", "cnn5", "--optimizer", "rmsprop"], ["--optimizer", "momentum_sgd"]),
    ("unknown schedule", "fit", ["--model", "cnn5", "--schedule", "linear"], ["--schedule", "cosine"]),
    ("zero epochs", "fit", ["--model", "cnn5", "--epochs", "0"], ["--epochs"]),
    ("unknown init", "fit", ["--model", "cnn_tanh", "--depth", "3", "--init", "magic"], ["magic"]),
    ("fixup on a plain family", "fit", ["--model", "cnn_tanh", "--depth", "6", "--init", "fixup"], ["fixup"]),
    ("search threshold above 1", "search", ["--model", "cnn_tanh", "--upper", "9", "--threshold", "1.5"],
     ["--threshold"]),
    ("search threshold zero", "search", ["--model", "cnn_tanh", "--upper", "9", "--threshold", "0"],
     ["--threshold"]),
    ("search lower above upper", "search", ["--model", "cnn_tanh", "--lower", "12", "--upper", "6"],
     ["--lower", "--upper"]),
    # issue 13: numbers out of range, unknown names, hardware this machine lacks — all before training
    ("train-batch limit above 1 as a fraction", "fit", ["--model", "cnn5", "--limit-train-batches", "1.5"],
     ["--limit-train-batches 1.5", "fraction in (0, 1]"]),
    ("negative train-batch limit", "fit", ["--model", "cnn5", "--limit-train-batches", "-1"],
     ["--limit-train-batches -1"]),
    ("train-batch limit nan", "fit", ["--model", "cnn5", "--limit-train-batches", "nan"], ["--limit-train-batches nan"]),
    ("train-batch limit of zero", "fit", ["--model", "cnn5", "--limit-train-batches", "0"], ["trains nothing"]),
    ("negative max steps", "fit", ["--model", "cnn5", "--max-steps", "-5"], ["--max-steps", "-5"]),
    ("max steps of zero", "fit", ["--model", "cnn5", "--max-steps", "0"], ["--max-steps", "trains nothing"]),
    ("negative checkpoint interval", "fit", ["--model", "cnn5", "--checkpoint-every-n-steps", "-2"],
     ["--checkpoint-every-n-steps"]),
    ("negative checkpoint minutes", "fit", ["--model", "cnn5", "--checkpoint-every-minutes", "-1"],
     ["--checkpoint-every-minutes"]),
    ("unknown precision", "fit", ["--model", "cnn5", "--precision", "foo"], ["--precision 'foo'", "32-true"]),
    ("float16 on the CPU", "fit", ["--model", "cnn5", "--accelerator", "cpu", "--precision", "16-mixed"],
     ["16-mixed", "bf16-mixed"]),
    ("unknown strategy", "fit", ["--model", "cnn5", "--strategy", "foo"], ["--strategy 'foo'", "ddp"]),
    ("unknown accelerator", "fit", ["--model", "cnn5", "--accelerator", "tpu"], ["--accelerator 'tpu'", "cpu"]),
    ("a device listed twice", "fit", ["--model", "cnn5", "--devices", "1,1"], ["--devices 1,1", "twice"]),
    ("negative seed", "fit", ["--model", "cnn5", "--seed", "-1"], ["--seed", "4294967295"]),
    ("seed beyond 32 bits", "fit", ["--model", "cnn5", "--seed", "99999999999"], ["--seed", "4294967295"]),
    ("init for a model with one init", "fit", ["--model", "cnn5", "--init", "xavier"], ["cnn5", "drop --init"]),
    ("infinite learning rate", "fit", ["--model", "cnn5", "--lr", "inf"], ["--lr", "finite"]),
    ("weight decay nan", "fit", ["--model", "cnn5", "--weight-decay", "nan"], ["--weight-decay", "finite"]),
    ("run name escaping the log dir", "fit", ["--model", "cnn5", "--run-name", "../../escaped"],
     ["--run-name", "plain folder name"]),
    ("several nodes without a launcher", "fit", ["--model", "cnn5", "--num-nodes", "2"], ["--num-nodes 2", "SLURM"]),
    ("a depth that cannot fit in memory", "fit", ["--model", "cnn_tanh", "--depth", "3000000"],
     ["--depth 3000000", "needs about", "lower --depth"]),
    ("resume from a folder", "fit", ["--model", "cnn5", "--ckpt-path", "{tmp}"], ["--ckpt-path", "is a folder"]),
    ("search seed negative", "search", ["--model", "cnn_tanh", "--upper", "9", "--seeds", "-1"], ["--seeds", "-1"]),
    ("search out is a file", "search", ["--model", "cnn_tanh", "--upper", "9", "--out", "{tmp}/a_file"],
     ["--out", "is a file"]),
    ("search ledger is a folder", "search", ["--model", "cnn_tanh", "--upper", "9", "--out", "{tmp}/ledger_dir"],
     ["probes.jsonl", "is a folder"]),
    ("search upper that cannot fit", "search", ["--model", "cnn_tanh", "--upper", "3000000000"],
     ["--upper 3000000000", "needs about"]),
    ("search unknown option", "search", ["--model", "cnn_tanh", "--upper", "9", "--bogus"], ["--bogus"]),
    ("experiment train-batch limit 1.5", "experiment", ["batch_size", "--limit-train-batches", "1.5"],
     ["--limit-train-batches 1.5"]),
    ("experiment seed negative", "experiment", ["batch_size", "--seeds", "-1"], ["--seeds", "-1"]),
    ("bench unknown device", "bench", ["--device", "tpu"], ["--device 'tpu'", "cpu"]),
    ("bench json is a folder", "bench", ["--json", "{tmp}"], ["--json", "is a folder"]),
    ("bench no cases", "bench", ["--cases", ","], ["--cases", "no case"]),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_gets_one_line_and_status_2(case, workspace, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, script, argv, words = case
    tmp = workspace["tmp"]
    (tmp / "empty").mkdir(exist_ok=True)
    if "{tmp}/truncated" in " ".join(argv):
        raw = tmp / "truncated" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for source in (workspace["data"] / "MNIST" / "raw").iterdir():
            (raw / source.name).write_bytes(source.read_bytes())
        (raw / "train-images-idx3-ubyte").write_bytes((raw / "train-images-idx3-ubyte").read_bytes()[:5000])
    if "{tmp}/pipe.ckpt" in argv:
        os.mkfifo(tmp / "pipe.ckpt")
    if "{tmp}/badlabel" in " ".join(argv):  # a real IDX label file with one byte ≥ 10
        raw = tmp / "badlabel" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for source in (workspace["data"] / "MNIST" / "raw").iterdir():
            (raw / source.name).write_bytes(source.read_bytes())
        labels = bytearray((raw / "train-labels-idx1-ubyte").read_bytes())
        labels[8 + 3] = 255  # after the 8-byte header: the fourth image's label
        (raw / "train-labels-idx1-ubyte").write_bytes(bytes(labels))
    if "{tmp}/readonly/logs" in " ".join(argv):
        if os.geteuid() == 0:
            # root ignores permission bits; a regular file in the path is unwritable for anyone
            (tmp / "readonly").write_text("a file, not a folder")
        else:
            (tmp / "readonly").mkdir()
            (tmp / "readonly").chmod(0o500)
    if "{tmp}/a_file" in " ".join(argv):
        (tmp / "a_file").write_text("not a folder")
    if "{tmp}/ledger_dir" in " ".join(argv):
        (tmp / "ledger_dir" / "probes.jsonl").mkdir(parents=True)
    other_ckpt = _real_checkpoint_of("two_layer_mlp", workspace["data"], tmp) if "{other_ckpt}" in argv else ""
    argv = [a.format(tmp=tmp, other_ckpt=other_ckpt) for a in argv]
    if script == "fit":
        argv += [] if "--data-dir" in argv else ["--data-dir", str(workspace["data"])]
        argv += ["--log-dir", str(workspace["logs"])] if "--log-dir" not in argv else []
    elif script in ("search", "experiment"):
        argv += ["--data-dir", str(workspace["data"])]
        argv += [] if "--out" in argv else ["--out", str(tmp / "out")]
    else:
        argv += ["--data-dir", str(workspace["data"])]
    for variable in ("SLURM_NTASKS", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "NODE_RANK"):
        monkeypatch.delenv(variable, raising=False)
    capsys.readouterr()

    status = run_script(script, argv)

    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2, captured.err
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    earlier = workspace["earlier"]
    assert (earlier / "results.json").read_text() == '{"test_acc": 0.9}\n'
    assert (earlier / "checkpoints" / "last.ckpt").read_bytes() == b"not a real checkpoint, but precious"
    assert sorted(p.name for p in (workspace["logs"] / "cnn5").iterdir()) == ["version_0"]
    assert sorted(p.name for p in workspace["logs"].iterdir()) == ["cnn5"]  # no run directory was started
    assert not (tmp / "out" / "runs").exists()  # no search probe or recipe training started


@pytest.mark.parametrize("argv", [["--model", "cnn15_skp2"], ["--model", "cnn5", "--data-dir", "/nonexistent/deeplab"]])
def test_bad_input_as_a_real_process(argv: list[str], tmp_path: Path) -> None:
    process = subprocess.run([sys.executable, str(REPO / "scripts" / "fit.py"), *argv], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert len(process.stderr.strip().splitlines()) == 1 and process.stderr.startswith("error: ")


def test_a_closed_pipe_is_a_quiet_exit(tmp_path: Path) -> None:
    """``fit.py --print-config | head -1``: the reader goes away; no BrokenPipeError traceback."""
    import subprocess
    import sys

    from conftest import SCRIPTS_DIR

    process = subprocess.Popen([sys.executable, str(SCRIPTS_DIR / "fit.py"), "--model", "cnn5", "--print-config"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # as head does once it has its lines: here before anything is written
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
