"""``scripts/experiment.py``: every recipe runs at ``--quick`` on the synthetic data sets and leaves
``report.md`` (with a markdown table), every PNG it references, ``results.json`` and TensorBoard runs.

The recipes run in this process (one interpreter start instead of seventeen), on one
intra-op thread; together they take about a minute on a 2-core CPU.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import SCRIPTS_DIR, SYNTHETIC_TRAIN, fit_environment, write_synthetic_datasets

import deeplab.commands.experiment as experiment_script  # noqa: E402  (scripts/experiment.py's code)

from deeplab.experiments import ExperimentOptions, default_out, get_recipe, list_recipes  # noqa: E402
from deeplab.errors import DeeplabError  # noqa: E402

RECIPES = [recipe.name for recipe in list_recipes()]
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
TABLE_SEPARATOR = re.compile(r"^\|( *:?-{3,}:? *\|)+$", re.MULTILINE)


def run_script(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    from deeplab.cli import run_main

    try:
        code = run_main(lambda: experiment_script.main(args))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def check_outputs(out: Path, stdout: str, name: str) -> dict:
    """The contract every recipe keeps; returns results.json."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines[-1] == f"report: {out / 'report.md'}", lines[-3:]
    report = (out / "report.md").read_text()
    assert report.startswith("# "), report[:200]
    assert TABLE_SEPARATOR.search(report), f"{name}: no markdown table in report.md"
    images = IMAGE_LINK.findall(report)
    assert images, f"{name}: the report shows no figure"
    for image in images:
        assert image.endswith(".png"), image
        path = out / image
        assert path.is_file() and path.stat().st_size > 1000, f"{name}: {image} is referenced but missing"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
    results = json.loads((out / "results.json").read_text())
    assert results["recipe"] == name
    assert results["quick"] is True
    assert set(results["figures"]) == set(images)
    assert results["tables"], "results.json keeps the report's tables"
    return results


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("experiments")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic data sets of ``synthetic_data_dir`` with a 32-image test split: evaluating the
    CIFAR ResNets and VGG on 128 images would be most of this file's time."""
    return write_synthetic_datasets(tmp_path_factory.mktemp("experiment_data"), train=SYNTHETIC_TRAIN, test=32)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_quick(name: str, data_dir: Path, outputs: Path, single_thread, capsys) -> None:
    out = outputs / name
    code, stdout, stderr = run_script([name, "--quick", "--data-dir", str(data_dir), "--out", str(out)], capsys)
    assert code == 0, stderr[-3000:]
    results = check_outputs(out, stdout, name)
    recipe = get_recipe(name)
    assert results["dataset"] == recipe.dataset and results["on_seed_dataset"] is True
    report = (out / "report.md").read_text()
    assert "> **Smoke run (`--quick`)**" in report.splitlines()[2]  # said at the top, not only in the budget line
    too_wide = [line for line in report.splitlines() if line.startswith("|") and len(line) > 100]
    assert not too_wide, f"{name}: table lines wider than 100 characters: {too_wide[:2]}"
    assert "Best α here" not in report and "best validation accuracy here" not in report.lower()
    from PIL import Image

    for figure in out.glob("*.png"):  # a smoke run's figure says so in the image itself
        with Image.open(figure) as image:
            assert image.info.get("deeplab") == "smoke run (--quick): not a measurement", figure
    for training in results["trainings"]:
        for run in training["per_seed"]:
            run_dir = Path(run["run_dir"])
            assert run_dir.is_relative_to(out / "tb"), run_dir
            assert list(run_dir.glob("events.out.tfevents.*")), f"no TensorBoard events in {run_dir}"
            assert run["epochs_run"] == 1 and run["history"]
    if name in ("trainability", "phase_diagram", "lr_depth_scaling"):  # probe recipes: what their probes cost
        wall = next(line for line in report.splitlines() if line.startswith("- wall time: "))
        assert re.search(r"; the [1-9]\d* probes reported took \d+ s of training", wall), wall
    # one progress line per training (the depth search: one per probe)
    if name == "trainability":
        probes = [line for line in stdout.splitlines() if line.startswith("[trainability / ") and "probe k=" in line]
        assert len(probes) >= len(results["results"]["rows"]) == 7
    elif name == "phase_diagram":  # one search per σ_w²: its probe lines
        probes = [line for line in stdout.splitlines() if line.startswith("[phase_diagram σ_w²=") and "probe k=" in line]
        assert len(probes) >= len(results["results"]["columns"]) == 3
    elif name == "lr_depth_scaling":  # one line per η tried
        tried = [line for line in stdout.splitlines() if line.startswith("[lr_depth_scaling] ")]
        assert len(tried) == sum(len(sweep["probes"]) for sweep in results["results"]["sweeps"]) >= 4
    elif recipe.dataset is not None:
        progress = [line for line in stdout.splitlines() if line.startswith(f"[{name} ")]
        assert results["trainings"] and len(progress) == sum(len(t["per_seed"]) for t in results["trainings"])


def test_other_dataset_is_labelled(data_dir: Path, tmp_path: Path, single_thread, capsys) -> None:
    """A CIFAR-10 recipe on MNIST: the models adapt, and the report says the seed's numbers are another data set's."""
    out = tmp_path / "degradation-mnist"
    code, stdout, stderr = run_script(["degradation", "--quick", "--dataset", "mnist", "--data-dir",
                                       str(data_dir), "--out", str(out)], capsys)
    assert code == 0, stderr[-3000:]
    results = check_outputs(out, stdout, "degradation")
    assert results["dataset"] == "mnist" and results["on_seed_dataset"] is False
    report = (out / "report.md").read_text()
    assert "not the seed's" in report and "reference only" in report
    assert "crop + flip augmentation is off on MNIST" in report
    assert all(t["config"]["augment"] is False for t in results["trainings"])


def test_seeds_give_mean_and_spread(data_dir: Path, tmp_path: Path, single_thread, capsys) -> None:
    out = tmp_path / "fmnist"
    code, stdout, stderr = run_script(["fmnist_baselines", "--quick", "--seeds", "0,1", "--data-dir",
                                       str(data_dir), "--out", str(out)], capsys)
    assert code == 0, stderr[-3000:]
    results = check_outputs(out, stdout, "fmnist_baselines")
    assert results["seeds"] == [0, 1]
    assert all([run["seed"] for run in t["per_seed"]] == [0, 1] for t in results["trainings"])
    assert " ± " in (out / "report.md").read_text()
    run_dirs = {run["run_dir"] for t in results["trainings"] for run in t["per_seed"]}
    assert len(run_dirs) == 4  # one TensorBoard run per training and seed


def test_budget_overrides(data_dir: Path, tmp_path: Path, single_thread, capsys) -> None:
    out = tmp_path / "lr"
    code, stdout, stderr = run_script(["learning_rates", "--quick", "--epochs", "2", "--limit-train-batches", "2",
                                       "--data-dir", str(data_dir), "--out", str(out)], capsys)
    assert code == 0, stderr[-3000:]
    results = check_outputs(out, stdout, "learning_rates")
    for training in results["trainings"]:
        assert training["config"]["epochs"] == 2 and training["config"]["limit_train_batches"] == 2
        assert training["config"]["optimizer"] == "sgd" and training["config"]["momentum"] == 0.0
        assert all(run["global_step"] == 4 for run in training["per_seed"])
    assert len(results["results"]["scheduled_lr_per_epoch"][0]) == 2


def test_list_shows_every_recipe_with_seed_and_costs(capsys) -> None:
    code, stdout, _ = run_script(["--list"], capsys)
    assert code == 0
    lines = stdout.splitlines()
    for recipe in list_recipes():
        index = next(i for i, line in enumerate(lines) if line.startswith(recipe.name + " "))
        assert recipe.seed in lines[index] and recipe.experiment in lines[index]
        block = "\n".join(lines[index + 1: index + 4])
        assert f"full: {recipe.full_cost}" in block and "--quick: " in block


def test_list_shows_measured_quick_costs_with_their_machine(tmp_path: Path, monkeypatch, capsys) -> None:
    costs = tmp_path / "recipe_quick_costs.json"
    monkeypatch.setattr(experiment_script, "COSTS_FILE", costs)
    code, stdout, _ = run_script(["--list"], capsys)
    assert "--quick: ≈ 7 s (not measured)" in stdout  # no measurement: the recipe's own estimate, labelled
    costs.write_text(json.dumps({"machine": "x86_64 CPU, 2 cores", "measured_at": "2026-11-30", "dataset": "mnist",
                                 "load_average": "2.0 → 2.1", "seconds": {"batch_size": 41.3}}))
    code, stdout, _ = run_script(["--list"], capsys)
    lines = stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("batch_size "))
    assert "--quick: 41 s measured" in "\n".join(lines[index + 1: index + 4])
    assert "measured by --measure-quick-costs on x86_64 CPU, 2 cores, 2026-11-30, data mnist, load average 2.0 → 2.1" \
        in stdout


def test_every_seed_experiment_has_a_recipe() -> None:
    assert set(RECIPES) == {
        "fmnist_baselines", "activations_bs1", "batch_size", "momentum_sweep", "skip_connections",
        "resnet_vs_plain", "architectures", "trainability", "cifar_architectures", "cifar_activations",
        "learning_rates", "xor_boundary", "conv2d_from_scratch", "degradation", "plain_vs_resnet",
        "resnet_depths", "residual_magnitudes", "lr_depth_scaling", "phase_diagram"}
    assert {r.seed for r in list_recipes()} == {"000", "001", "002", "003", "004"}


@pytest.mark.parametrize("args, message", [
    (["skip_conection", "--quick"], "unknown experiment 'skip_conection'. Did you mean skip_connections?"),
    ([], "give a recipe NAME"),
    (["fmnist_baselines", "--quick", "--dataset", "imagenet"], "--dataset 'imagenet'"),
    (["fmnist_baselines", "--seeds", "0,0"], "--seeds repeats a seed"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    code, _, stderr = run_script([*args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and message in stderr, stderr


def test_missing_seed_dataset_fails_with_one_line(tmp_path: Path, single_thread, capsys) -> None:
    """Fashion-MNIST is not on disk: the user is told to point --data-dir at it (or pick --dataset)."""
    code, _, stderr = run_script(["activations_bs1", "--quick", "--data-dir", str(tmp_path / "empty"),
                                  "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "--data-dir" in stderr, stderr


def test_script_prints_report_path_last(data_dir: Path, tmp_path: Path) -> None:
    """The real command line, in a subprocess: exit 0 and the last line names the report."""
    out = tmp_path / "conv"
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS_DIR / "experiment.py"), "conv2d_from_scratch", "--quick", "--data-dir",
         str(data_dir), "--out", str(out)],
        capture_output=True, text=True, env=fit_environment(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == f"report: {out / 'report.md'}"
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["max_abs_diff"] < 1e-9


def test_default_out_names_dataset_and_budget() -> None:
    assert default_out("skip_connections", "fashion_mnist", "fashion_mnist", False) == Path("lightning_logs/experiments/skip_connections")
    assert default_out("skip_connections", "mnist", "fashion_mnist", True) == Path("lightning_logs/experiments/skip_connections-mnist-quick")
    assert ExperimentOptions().seeds == (0,)


# ------------------------------------------------------------------------------------ pieces
def _fake_trainer(lr: float) -> SimpleNamespace:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return SimpleNamespace(optimizers=[optimizer], logger=None, is_global_zero=True, global_step=0)


def test_scheduled_rate_at_epoch_ends_drops_once_per_target() -> None:
    from deeplab.experiments.callbacks import LrDropOnValAccuracy

    callback = LrDropOnValAccuracy()
    trainer = _fake_trainer(0.1)
    module = SimpleNamespace(print=lambda *a: None)
    for epoch, val_acc in enumerate([0.40, 0.64, 0.66, 0.69, 0.71, 0.80], start=1):
        callback.on_epoch_closed(trainer, module, {"epoch": epoch, "val_acc": val_acc})
    assert callback.lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert [(e["epoch"], e["target"]) for e in callback.events] == [(3, 0.65), (5, 0.70)]
    # both targets passed in one epoch: one phase ends per check, as in the seed (each phase trains)
    callback, trainer = LrDropOnValAccuracy(), _fake_trainer(0.1)
    callback.on_epoch_closed(trainer, module, {"epoch": 1, "val_acc": 0.75})
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01)


def test_scheduled_rate_phases_end_after_their_epochs_and_the_last_stops_the_run() -> None:
    """Seed 003 Part 5: a phase that misses its target still ends after 30 epochs (here 2)."""
    from deeplab.experiments.callbacks import LrDropOnValAccuracy

    callback, trainer = LrDropOnValAccuracy(phase_epochs=2), _fake_trainer(0.1)
    trainer.should_stop = False
    module = SimpleNamespace(print=lambda *a: None)
    for epoch in range(1, 6):
        callback.on_epoch_closed(trainer, module, {"epoch": epoch, "val_acc": 0.5})
        assert not trainer.should_stop
    callback.on_epoch_closed(trainer, module, {"epoch": 6, "val_acc": 0.5})
    assert trainer.should_stop
    assert callback.lrs == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001, 0.001])
    assert [(e["epoch"], e["target"]) for e in callback.events] == [(2, None), (4, None)]


def test_scheduled_rate_checks_every_n_batches_in_a_real_run(synthetic_data_dir, tmp_path) -> None:
    """The mid-epoch check of a real fit: target 0 is met at the first check (batch 2), the
    never-met second target ends its phase after one epoch, the last phase stops the run."""
    from deeplab.config import FitConfig
    from deeplab.experiments.callbacks import KeepModel, LrDropOnValAccuracy, validation_accuracy
    from deeplab.training.fit import fit

    schedule = LrDropOnValAccuracy(targets=(0.0, 1.5), check_every=2, phase_epochs=1)
    keeper = KeepModel()
    config = FitConfig(model="cnn_5", dataset="mnist", data_dir=str(synthetic_data_dir), epochs=10, batch_size=16,
                       limit_train_batches=5, optimizer="sgd", momentum=0.0, lr=0.1, val_split=0.25,
                       log_dir=str(tmp_path), progress_bar=False, grad_norms=False)
    results = fit(config, callbacks=[schedule, keeper], quiet=True)
    assert results["epochs_run"] == 3  # stopped by the last phase, not by --epochs 10
    assert [(e["epoch"], e["batch"], e["target"]) for e in schedule.events] == [(1, 2, 0.0), (2, None, None)]
    assert schedule.events[0]["step"] == 2
    assert schedule.lrs == pytest.approx([0.01, 0.001, 0.001])
    # every 2nd batch while a phase has a target: epoch 1 batches 2 (phase 0) and 4, epoch 2 batches 2 and 4
    # (phase 1, target never met); none in the last phase, which has no target
    assert schedule.checks == 4
    # the check measures what the epoch's evaluation measures: the same split, in eval mode
    trainer = SimpleNamespace(datamodule=None)
    from deeplab.data.datamodules import MNISTDataModule

    trainer.datamodule = MNISTDataModule(synthetic_data_dir, batch_size=16, val_split=0.25, download=False)
    module = SimpleNamespace(model=keeper.model, device=torch.device("cpu"))
    assert validation_accuracy(trainer, module) == pytest.approx(results["history"][-1]["val_acc"], abs=1e-6)
    assert keeper.model.training  # back in the mode it was in


def test_block_statistics_measure_the_residual_branch() -> None:
    from deeplab.experiments.seed004 import block_statistics
    from deeplab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet_deep", in_channels=1, image_size=12, num_classes=10, depth=4).eval()
    x = torch.randn(8, 1, 12, 12)
    stats = block_statistics(model, x)
    assert len(stats) == 2 and all(s["ratio"] > 0 for s in stats)
    for block in model.layer1:  # F(x) = 0: a zero residual branch
        torch.nn.init.zeros_(block.bn2.weight)
        torch.nn.init.zeros_(block.bn2.bias)
    assert all(s["ratio"] == 0 for s in block_statistics(model, x))


def test_format_values_mean_and_sd() -> None:
    from deeplab.experiments.runner import format_values

    assert format_values([0.5], scale=100, unit="%") == "50.00%"
    assert format_values([0.5, 0.7], scale=100, unit="%") == "60.00 ± 14.14%"
    assert format_values([None]) == "—"


def test_recipe_registry_rejects_duplicates_and_suggests() -> None:
    from deeplab.experiments.registry import register_recipe

    with pytest.raises(ValueError, match="already registered"):
        register_recipe("degradation", seed="004", experiment="", title="", dataset=None, trainings="",
                        full_cost="", quick_cost="")(lambda ctx: None)
    with pytest.raises(DeeplabError, match="Did you mean degradation"):
        get_recipe("degradatoin")


def test_one_batch_conv_gradients_are_seed001s_get_gradient_norms(synthetic_data_dir) -> None:
    """Seed 001 Part 8.2: one training batch, CrossEntropyLoss, backward, ‖grad‖ of each 'conv' weight."""
    import copy

    from deeplab.config import FitConfig

    from deeplab.training.resolve import resolve_config
    from deeplab.data.datamodules import create_datamodule
    from deeplab.experiments.common import one_batch_conv_gradients
    from deeplab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", in_channels=3, image_size=32, num_classes=10)
    before = copy.deepcopy(model.state_dict())
    config = resolve_config(FitConfig(model="resnet18", data_dir=str(synthetic_data_dir), batch_size=4))
    names, values = one_batch_conv_gradients(model, config)

    # the seed's function, on the batch its train_loader would give (the same first shuffled batch, augmented)
    datamodule = create_datamodule("cifar10", data_dir=str(synthetic_data_dir), batch_size=4, seed=config.seed)
    images, labels = next(iter(datamodule.train_dataloader()))
    reference = copy.deepcopy(model).train()
    reference.zero_grad()
    torch.nn.CrossEntropyLoss()(reference(datamodule.device_transform(images, training=True)), labels).backward()
    expected = {name: param.grad.norm().item() for name, param in reference.named_parameters()
                if param.grad is not None and "conv" in name and "weight" in name}
    assert names == list(expected) and values == pytest.approx(list(expected.values()), rel=1e-5)
    assert len(names) == 17 and not any("shortcut" in name for name in names)  # 1 stem + 16 block convs
    # the recipe's model is left as it was: no gradients, same weights and running statistics
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_failed_recipe_leaves_no_empty_tree(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs" / "batch_size"
    code, _, stderr = run_script(["batch_size", "--quick", "--data-dir", str(tmp_path / "no-data"), "--out", str(out)],
                                 capsys)
    assert code == 2 and "files not found" in stderr
    assert list(tmp_path.iterdir()) == []


def test_print_config_reruns_through_config(data_dir: Path, tmp_path: Path, capsys) -> None:
    """experiment.py's --print-config prints the resolved options; --config FILE takes them back, options
    beside it win, YAML works too, and an unknown name is one line, exit 2."""
    code, stdout, _ = run_script(["trainability", "--quick", "--seeds", "0,1", "--data-dir", str(data_dir),
                                  "--out", str(tmp_path / "out"), "--print-config"], capsys)
    assert code == 0 and not (tmp_path / "out").exists()  # printing runs nothing and writes nothing
    printed = json.loads(stdout)
    assert printed["name"] == "trainability" and printed["quick"] is True and printed["seeds"] == [0, 1]
    saved = tmp_path / "run.json"
    saved.write_text(stdout)
    code, again, _ = run_script(["--config", str(saved), "--print-config"], capsys)
    assert code == 0 and json.loads(again) == printed
    code, changed, _ = run_script(["--config", str(saved), "--seeds", "2", "--print-config"], capsys)
    assert json.loads(changed) == {**printed, "seeds": [2]}
    (tmp_path / "run.yaml").write_text("name: trainability\nquick: true\nseeds: [3, 4]\n")
    code, from_yaml, _ = run_script(["--config", str(tmp_path / "run.yaml"), "--print-config"], capsys)
    assert json.loads(from_yaml)["seeds"] == [3, 4] and json.loads(from_yaml)["quick"] is True
    (tmp_path / "bad.json").write_text('{"nme": "trainability"}')
    code, _, stderr = run_script(["--config", str(tmp_path / "bad.json")], capsys)
    assert code == 2 and stderr.strip().splitlines() == [
        f"error: --config {tmp_path / 'bad.json'}: unknown setting(s) nme; settings are named as "
        "`experiment.py NAME --print-config` prints them"]
