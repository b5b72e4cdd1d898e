"""scripts/bench.py and deeplab.bench: the seed-loop re-creations run and are faithful; the script writes its JSON.

No timing assertions: throughput on a shared CPU is noise at this size.
"""

from __future__ import annotations

import importlib.util
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeplab.data.synthetic import write_synthetic_datasets
import torch
import torch.nn as nn

from deeplab.bench import (
    RESULT_KEYS,
    SeedFiveLayerCNN,
    SeedSide,
    SeedTwoLayerNet,
    seed000_train_steps,
    seed001_train_steps,
    seed002_train_steps,
    seed_cifar10_loader,
    seed_mnist_loader,
)
from deeplab.cli import run_main
from deeplab.models import create_model
from deeplab.training.optim import MomentumSGD

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN, TINY_TEST = 48, 16


def _write_tiny_mnist(root: Path) -> Path:
    """IDX files under root/MNIST/raw: magic 2051 (images) / 2049 (labels), big-endian uint32 header."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", TINY_TRAIN), ("t10k", TINY_TEST)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, count) + labels.tobytes())
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a loaded 2-core machine a 2-thread op can wait milliseconds for its
    descheduled partner thread, which turns these few steps into seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_tiny_mnist(tmp_path_factory.mktemp("bench_mnist"))


def _positive_segment(build, steps: int, batch: int) -> None:
    segment = SeedSide("seed", build, batches_available=steps).segment(steps)
    assert segment.images == steps * batch
    assert segment.seconds > 0 and segment.images_per_s > 0


def test_seed000_loops_run_and_report_throughput(tiny_mnist: Path) -> None:
    cpu = torch.device("cpu")
    loader1 = seed_mnist_loader(tiny_mnist, batch_size=1, mean_std=((0.5,), (0.5,)))
    _positive_segment(lambda: lambda s: seed000_train_steps(SeedTwoLayerNet(), loader1, s, cpu, 0.005), 3, 1)
    loader4 = seed_mnist_loader(tiny_mnist, batch_size=4, mean_std=((0.5,), (0.5,)))
    _positive_segment(
        lambda: lambda s: seed000_train_steps(SeedFiveLayerCNN(), loader4, s, cpu, 0.005, momentum=0.9), 3, 4
    )


def test_seed002_and_seed001_loops_run(tiny_mnist: Path, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    loader = seed_mnist_loader(tiny_mnist, batch_size=8)

    def build002():
        model = create_model("cnn_elu_bn", depth=3, in_channels=1, num_classes=10, image_size=28)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return lambda s: seed002_train_steps(model, nn.CrossEntropyLoss(), optimizer, loader, s, cpu)

    _positive_segment(build002, 2, 8)

    write_synthetic_datasets(tmp_path, train=20, test=4, datasets=("cifar10",))
    cifar_loader = seed_cifar10_loader(tmp_path, batch_size=2, num_workers=0)
    image, _ = cifar_loader.dataset[0]
    assert image.shape == (3, 32, 32)  # RandomCrop + flip + ToTensor + Normalize through torchvision's CIFAR10

    def build001():
        model = create_model("cnn_elu_bn", depth=3, in_channels=3, num_classes=10, image_size=32)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        return lambda s: seed001_train_steps(model, nn.CrossEntropyLoss(), optimizer, cifar_loader, s, cpu,
                                             progress_file=io.StringIO())

    _positive_segment(build001, 2, 2)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_seed_momentum_update_equals_momentum_sgd(momentum: float) -> None:
    """Seed 000's SGD_Optimizer (momentum dict keyed by id(param)) = deeplab's MomentumSGD, step by step."""
    torch.manual_seed(0)
    seed_model = SeedFiveLayerCNN()
    deeplab_model = SeedFiveLayerCNN()
    deeplab_model.load_state_dict(seed_model.state_dict())
    optimizer = MomentumSGD(deeplab_model.parameters(), lr=0.05, momentum=momentum)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        images = torch.randn(4, 1, 28, 28, generator=generator)
        labels = torch.randint(0, 10, (4,), generator=generator)

        for param in seed_model.parameters():
            param.grad = None
        seed_model.cross_entropy_loss(seed_model(images), labels).backward()
        seed_model.SGD_Optimizer(seed_model.parameters(), 0.05, momentum=momentum)

        deeplab_model.cross_entropy_loss(deeplab_model(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for (name, seed_param), deeplab_param in zip(seed_model.named_parameters(), deeplab_model.parameters()):
        torch.testing.assert_close(deeplab_param, seed_param, rtol=1e-6, atol=1e-7, msg=name)


def test_seed_two_layer_net_matches_deeplab_model() -> None:
    """The re-created TwoLayerNet computes what deeplab's two_layer_mlp does (same weights)."""
    seed_model = SeedTwoLayerNet()
    deeplab_model = create_model("two_layer_mlp", in_channels=1, num_classes=10, image_size=28)
    deeplab_model.load_state_dict(seed_model.state_dict())
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(deeplab_model(x), seed_model(x))
    assert sum(p.numel() for p in seed_model.parameters()) == 203_530


def test_script_quick_writes_json(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--quick", "--cases", "two_layer_mlp_bs1",
         "--steps", "8", "--data-dir", str(tiny_mnist), "--json", str(out),
         "--deeplab-set", "compile=off"],  # the compiled step has its own tests; this one is the script's
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [row["case"] for row in rows] == ["two_layer_mlp_bs1"]
    row = rows[0]
    assert set(RESULT_KEYS) <= set(row)
    assert row["deeplab_images_per_s"] > 0 and row["seed_loop_images_per_s"] > 0 and row["ratio"] > 0
    assert row["cpu_ratio"] > 0 and row["deeplab_images_per_cpu_s"] > 0
    assert row["repeats"] == 1 and len(row["pair_ratios"]) == 1  # --quick: one pair, no warm-up
    assert row["torch_threads"] == 1  # ≤ 4 cores: one thread by default
    assert row["deeplab_engine"]["compile"] == "off"
    first = completed.stdout.splitlines()[0]
    assert "1 torch thread(s)" in first and "load average" in first and "not a measurement" in first
    assert "CPU ratio" in completed.stdout


def test_script_rejects_unknown_case(tiny_mnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_script", REPO_ROOT / "scripts" / "bench.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    status = run_main(lambda: script.main(["--cases", "no_such_case", "--data-dir", str(tiny_mnist)]))
    assert status == 2
    assert "unknown case 'no_such_case'" in capsys.readouterr().err


def test_ceiling_case_is_the_compiled_step_on_in_memory_batches(tiny_mnist: Path) -> None:
    """The ceiling trains deeplab's own model with the same compiled step fit uses, data already in memory."""
    from deeplab.bench import CASES, BenchContext, CeilingSide, run_case

    context = BenchContext(data_dir=tiny_mnist, work_dir=tiny_mnist / "work", quick=True)
    ceiling, seed = CASES["two_layer_mlp_bs1_ceiling"].build(context, 4)
    assert isinstance(ceiling, CeilingSide) and seed.label.startswith("seed 000")
    segment = ceiling.segment(70)  # more than one chunk of 64
    assert segment.images == 70 and segment.images_per_s > 0 and segment.cpu > 0
    row = run_case(CASES["two_layer_mlp_bs1_ceiling"], context, repeats=1, steps=8)
    assert row["case"] == "two_layer_mlp_bs1_ceiling" and row["ratio"] > 0 and row["target"] is None


def test_overhead_and_grad_norm_cases_compare_like_with_like(tiny_mnist: Path) -> None:
    from deeplab.bench import CASES, BenchContext, DeeplabFitSide, PlainLoopSide

    context = BenchContext(data_dir=tiny_mnist, work_dir=tiny_mnist / "work")
    on, off = CASES["grad_norms_overhead_bs1"].build(context, 2)
    assert on.config.model == off.config.model == "two_layer_mlp" and on.config.batch_size == 1
    assert on.config.grad_norms and not off.config.grad_norms and on.epoch == off.epoch == 2  # steady state
    assert on.config.compile == off.config.compile == "step"
    assert CASES["grad_norms_overhead_bs1"].target == pytest.approx(0.9)  # ≤ 10 % of a batch-1 step
    fit_side, plain = CASES["lightning_overhead_bs1"].build(context, 2)
    assert isinstance(fit_side, DeeplabFitSide) and isinstance(plain, PlainLoopSide)
    assert not fit_side.config.grad_norms and fit_side.config.compile == "step"


def test_seed002_family_cases_and_their_geometric_mean(tiny_mnist: Path) -> None:
    from deeplab.bench import CASES, GROUP_TARGETS, SEED002_FAMILIES, BenchContext, format_table, summary_rows

    context = BenchContext(data_dir=tiny_mnist, work_dir=tiny_mnist / "work")
    for family in SEED002_FAMILIES:
        case = CASES[f"{family}_k30_bs256"]
        deeplab_side, seed_side = case.build(context, 1)
        assert deeplab_side.config.model == family and deeplab_side.config.depth == 30
        assert deeplab_side.config.batch_size == 256 and seed_side.label.startswith("seed 002")
        assert case.group == "seed002_families_k30_bs256"
    rows = [{"case": "a", "ratio": 2.0, "cpu_ratio": 1.0, "group": "seed002_families_k30_bs256"},
            {"case": "b", "ratio": 0.5, "cpu_ratio": 4.0, "group": "seed002_families_k30_bs256"},
            {"case": "c", "ratio": 9.0, "cpu_ratio": 9.0, "group": None}]
    (summary,) = summary_rows(rows, GROUP_TARGETS)
    assert summary["ratio"] == pytest.approx(1.0) and summary["cpu_ratio"] == pytest.approx(2.0)
    assert summary["target"] == 1.5 and summary["members"] == ["a", "b"]
    assert summary["met"] is False  # a target holds only when both the wall and the CPU ratio reach it
    assert "geometric mean of 2" in format_table([summary]) and "MISSED" in format_table([summary])
    rows[1]["ratio"] = 2.0
    assert summary_rows(rows, GROUP_TARGETS)[0]["met"] is True


def test_quick_leaves_out_only_cases_whose_code_path_a_kept_case_runs() -> None:
    from deeplab.bench import CASES, DEFAULT_CASES, quick_selection

    kept, skipped = quick_selection(list(DEFAULT_CASES), CASES)
    assert skipped == ["cnn5_sigmoid_bs1_ceiling", "grad_norms_overhead_bs1_epoch1"]
    assert all(CASES[name].quick_covered_by in kept for name in skipped)
    assert set(kept) | set(skipped) == set(DEFAULT_CASES)
    # a case whose covering case is not selected is kept
    assert quick_selection(["cnn5_sigmoid_bs1_ceiling"], CASES) == (["cnn5_sigmoid_bs1_ceiling"], [])
