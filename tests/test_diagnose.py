"""deeplab.diagnosis: measurements at initialization against mean-field theory, the residual and batch-norm
cases the literature describes, the SignalPropagation callback's TensorBoard records and the command."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from deeplab.diagnosis.measure import diagnose_model, predict_depth
from deeplab.diagnosis.signals import (fit_depth_scale, forward_signals, gradient_growth, jacobian_spectrum,
                                       measurement_copy, propagation_points)
from deeplab.diagnosis.table import measured_depths, rank_agreement
from deeplab.theory.mean_field import analyze

from conftest import SCRIPTS_DIR, fit_environment, run_fit_script

torch.set_num_threads(1)


def tanh_mlp(width: int, depth: int, sigma_w2: float, sigma_b2: float) -> nn.Module:
    """A wide random tanh MLP: W ~ N(0, σ_w²/width), b ~ N(0, σ_b²) (Poole et al. 2016's setting)."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        nn.init.normal_(linear.weight, 0.0, math.sqrt(sigma_w2 / width))
        nn.init.normal_(linear.bias, 0.0, math.sqrt(sigma_b2))
        layers += [linear, nn.Tanh()]
    return nn.Sequential(nn.Sequential(*layers), nn.Linear(width, 10))


# Tolerances, stated: at width 1000, depth 100 and 16 inputs (120 pairs) the empirical χ₁ (the Jacobian's
# mean squared singular value per layer) is within 3 % of mean field's and the correlation map's slope χ_c
# within 3 %; ξ_c = −1/ln χ_c amplifies χ_c's error by 1/|ln χ_c|, so it is held to 25 % where ξ_c ≤ 15.
@pytest.mark.parametrize("sigma_w2, sigma_b2", [(0.8, 0.05), (1.5, 0.05), (2.5, 0.1), (4.0, 0.3)],
                         ids=["ordered", "ordered-near-critical", "chaotic", "deep-chaotic"])
def test_a_wide_random_tanh_mlp_matches_mean_field(sigma_w2: float, sigma_b2: float) -> None:
    torch.manual_seed(0)
    theory = analyze("tanh", sigma_w2, sigma_b2)
    network = tanh_mlp(1000, 100, sigma_w2, sigma_b2)
    x = torch.randn(16, 1000) * math.sqrt(theory.q_star)
    points = propagation_points(network)
    assert len(points) == 100 and all(point.kind == "pre-activation" for point in points)
    signals = forward_signals(network, x, points)
    deep = signals["q"][50:]  # the length map's fixed point, where the length has settled (one layer's q fluctuates)
    assert sum(deep) / len(deep) == pytest.approx(theory.q_star, rel=0.05)
    fit = fit_depth_scale(signals["correlation"], [point.stage for point in points])
    assert fit["regime"] == "converging"
    assert fit["fixed_point"] == pytest.approx(theory.c_star, abs=0.05)
    assert fit["chi_c"] == pytest.approx(theory.chi_c, rel=0.03)
    assert fit["depth_scale"] == pytest.approx(theory.depth_scale, rel=0.25)
    spectrum = jacobian_spectrum(network, x[:1], 10, 30, points)
    assert spectrum["layers"] == 20
    assert spectrum["chi1"] == pytest.approx(theory.chi1, rel=0.03)


def test_an_identity_initialized_residual_stack_keeps_every_correlation() -> None:
    """SkipInit (every residual branch × 0): each block is the identity, so the correlation map is the identity:
    two inputs stay exactly as correlated as they entered each stage, and ξ_c is infinite."""
    from deeplab.models import create_model

    torch.manual_seed(0)
    network = create_model("resnet_elu_nobn", depth=30, init="skipinit")
    x = torch.randn(16, 1, 28, 28)
    record = diagnose_model(network, x, torch.arange(16) % 10)
    layers = record["layers"]
    for stage in {row["stage"] for row in layers}:
        rows = [row for row in layers if row["stage"] == stage]
        blocks = [row for row in rows if row["kind"] == "block"]
        assert len(blocks) == 9
        # the first block's input is the stage's first activation's output; every block after passes it on
        assert all(block["correlation"] == pytest.approx(blocks[0]["correlation"], abs=1e-6) for block in blocks)
        assert all(block["branch_variance"] == 0.0 for block in blocks)
    assert record["correlation"]["regime"] == "identity"
    assert record["correlation"]["depth_scale"] == math.inf
    measured = measurement_copy(network)
    points = propagation_points(measured)
    blocks = [index for index, point in enumerate(points) if point.kind == "block" and point.stage == "stages.2"]
    spectrum = jacobian_spectrum(measured, x[:1], blocks[0], blocks[-1], points)
    assert spectrum["max"] == pytest.approx(1.0, abs=1e-5) and spectrum["min"] == pytest.approx(1.0, abs=1e-5)


def _bn_stack(depth: int, width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU()]
    return nn.Sequential(nn.Sequential(*layers), nn.Linear(width, 10))


def test_batch_norm_makes_gradients_grow_with_depth_at_initialization() -> None:
    """Yang et al. (2019): in a batch-normalized stack at init the gradient explodes toward the input, at a rate
    per layer that does not depend on depth, so the first layer's gradient over the last grows with depth."""
    x = torch.randn(64, 64)
    y = torch.arange(64) % 10
    ratios, rates = [], []
    for depth in (8, 16, 32):
        network = measurement_copy(_bn_stack(depth))
        growth = gradient_growth(network, x, y)
        norms = growth["representation_grad_norms"]
        ratios.append(norms[0] / norms[-1])
        rates.append(growth["representation_growth"])
    assert ratios[0] < ratios[1] < ratios[2]
    assert ratios[2] > 10
    assert all(rate > 1.05 for rate in rates)
    assert predict_depth(None, rates[-1])["limited_by"] == "gradient"


def test_measuring_changes_neither_the_network_nor_its_batch_norm_statistics() -> None:
    network = _bn_stack(4)
    before = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    network.eval()
    diagnose_model(network, torch.randn(8, 64), torch.arange(8))
    assert not network.training  # its mode is its own
    after = network.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(parameter.grad is None for parameter in network.parameters())


def test_the_prediction_rule_takes_the_smaller_depth_scale() -> None:
    rule = predict_depth(10.0, math.exp(0.05))  # ξ_∇ = 1/(2·0.05) = 10 → 60; ξ_c = 10 → 60: a tie
    assert rule["correlation_depth"] == pytest.approx(60.0)
    assert rule["gradient_depth"] == pytest.approx(60.0)
    assert predict_depth(2.0, 1.0)["predicted_max_depth"] == pytest.approx(12.0)
    assert predict_depth(math.inf, 1.0)["predicted_max_depth"] == math.inf
    assert predict_depth(None, None)["predicted_max_depth"] is None


def test_rank_agreement_and_the_measured_table_reader(tmp_path) -> None:
    assert rank_agreement([1, 2, 3], [10, 20, 30]) == dict(spearman=1.0, concordant_pairs=3.0, pairs=3)
    assert rank_agreement([3, 2, 1], [10, 20, 30])["spearman"] == -1.0
    assert rank_agreement([1, math.inf], [5, 4])["concordant_pairs"] == 0.0
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"rows": [
        {"family": "cnn_tanh", "upper": 24, "searches": {"seed": {
            "max_trainable_median": 3.0, "seeds": [0, 1, 2],
            "per_seed": [{"min_untrainable": 6}, {"min_untrainable": 9}, {"min_untrainable": 6}]}}},
        {"family": "resnet_elu", "upper": 450, "searches": {"seed": {
            "max_trainable_median": 450.0, "seeds": [0], "per_seed": [{"min_untrainable": None}]},
            "skipinit": "not yet measured"}},
        {"family": "cnn_elu_bn", "upper": 300, "searches": {
            "seed": "in progress: seed 0: 147, seed 1: 180 (16 probes so far)"}},
    ]}))
    cells = measured_depths(table)
    assert cells[("cnn_tanh", "seed")] == dict(value=3.0, at_upper=False, seeds=[0, 1, 2], note=None)
    assert cells[("resnet_elu", "seed")]["at_upper"] is True
    assert ("resnet_elu", "skipinit") not in cells
    assert cells[("cnn_elu_bn", "seed")] == dict(value=163.5, at_upper=False, seeds=[0, 1], note="in progress")


def test_the_committed_seed002_table_is_read_for_every_family_it_measured() -> None:
    from conftest import REPO_ROOT

    cells = measured_depths(REPO_ROOT / "reports" / "seed002" / "table.json")
    assert {family for family, init in cells if init == "seed"} >= {"cnn_tanh", "resnet_elu_nobn", "resnet_elu"}


def test_the_callback_writes_its_scalars_and_images_at_the_start_and_every_n_steps(tmp_path, synthetic_data_dir) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_fit_script(["--model", "cnn_tanh_newinit", "--depth", "9", "--epochs", "1", "--batch-size", "16",
                          "--limit-train-batches", "6", "--signal-every", "3", "--data-dir", str(synthetic_data_dir)],
                         tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    accumulator = EventAccumulator(str(run.run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    for tag in ("signal/gradient_growth", "signal/last_layer_variance", "signal/last_layer_correlation"):
        assert [event.step for event in accumulator.Scalars(tag)] == [0, 3, 6], tag
    for tag in ("signal/propagation", "signal/correlation", "signal/gradients"):
        assert tag in tags["images"], tags["images"]
        images = accumulator.Images(tag)
        assert [image.step for image in images] == [0, 3, 6]
        assert images[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    # the signal changes as the network learns: the record at step 6 is not the one at step 0
    variances = [event.value for event in accumulator.Scalars("signal/last_layer_variance")]
    assert variances[0] != variances[-1]


def test_a_run_with_the_callback_trains_exactly_as_one_without(tmp_path, synthetic_data_dir) -> None:
    common = ["--model", "cnn_elu_bn", "--depth", "6", "--epochs", "1", "--batch-size", "16",
              "--limit-train-batches", "4", "--data-dir", str(synthetic_data_dir)]
    (tmp_path / "plain").mkdir()
    (tmp_path / "observed").mkdir()
    plain = run_fit_script(common, tmp_path / "plain")
    observed = run_fit_script(common + ["--signal-every", "1"], tmp_path / "observed")
    assert plain.returncode == observed.returncode == 0, observed.stderr[-3000:]
    for key in ("test_acc", "test_loss", "history"):
        assert plain.results[key] == observed.results[key], key
    grads = [{key: value for key, value in run.results["grad"].items() if key != "figure"} for run in (plain, observed)]
    assert grads[0] == grads[1]
    # one batch per training_step with the callback (it records at exact steps), chunks without: same updates
    assert observed.results["engine"]["steps_per_call"] == 1 < plain.results["engine"]["steps_per_call"]


def _diagnose_script(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS_DIR / "diagnose.py"), *args], cwd=cwd, env=fit_environment(),
                          capture_output=True, text=True, timeout=600)


def test_diagnose_writes_its_json_and_figures_and_predicts_a_depth(tmp_path, synthetic_data_dir) -> None:
    out = tmp_path / "diag"
    done = _diagnose_script(["--model", "cnn_elu_bn", "--depth", "12", "--examples", "16", "--data-dir",
                             str(synthetic_data_dir), "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == f"diagnosis: {out}/diagnosis.json"
    record = json.loads((out / "diagnosis.json").read_text())
    assert record["depth"] == 12 and record["examples"] == 16 and len(record["layers"]) == 12
    assert record["jacobian"]["stage"] == "stages.2" and record["jacobian"]["layers"] == 3
    assert record["prediction"]["predicted_max_depth"] is not None
    assert record["mean_field"]["reason"].startswith("batch norm")
    for name in ("signal_propagation.png", "correlation.png", "gradients.png", "jacobian.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "predicted trainable depth:" in done.stdout


def test_diagnose_builds_the_weights_fit_would_train(synthetic_data_dir) -> None:
    """Same settings, same seed: diagnose's network is the run's at step 0 (its first layer's gradient norm
    at init is a function of those weights and the data)."""
    from deeplab.diagnosis.diagnose import diagnose

    first = diagnose("cnn_tanh", 6, data_dir=str(synthetic_data_dir), examples=8, jacobian=False, seed=3)
    again = diagnose("cnn_tanh", 6, data_dir=str(synthetic_data_dir), examples=8, jacobian=False, seed=3)
    other = diagnose("cnn_tanh", 6, data_dir=str(synthetic_data_dir), examples=8, jacobian=False, seed=4)
    assert first["layers"] == again["layers"]
    assert first["layers"] != other["layers"]
    assert first["mean_field"]["chi1"] is not None  # a plain family: mean field has its number


@pytest.mark.parametrize("args, message", [
    (["--examples", "1", "--model", "cnn_tanh"], "examples must be an integer ≥ 2"),
    ([], "give --model NAME"),
    (["--model", "cnn_tanh", "--families", "cnn_elu"], "--families goes with --table"),
    (["--table", "--model", "cnn_tanh"], "drop --model"),
    (["--table", "--families", "nope"], "choose from"),
    (["--model", "cnn_tanh", "--depth", "5"], "multiple of 3"),
])
def test_diagnose_bad_input_is_one_line_and_exit_2(tmp_path, synthetic_data_dir, args, message) -> None:
    done = _diagnose_script(args + ["--data-dir", str(synthetic_data_dir), "--out", str(tmp_path / "o")], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "o").exists()


def test_the_table_scores_its_families_against_a_measured_table(tmp_path, synthetic_data_dir) -> None:
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"rows": [
        {"family": "cnn_tanh", "upper": 24, "searches": {"seed": {
            "max_trainable_median": 3.0, "seeds": [0], "per_seed": [{"min_untrainable": 6}]}}},
        {"family": "resnet_elu_nobn", "upper": 24, "searches": {"seed": {
            "max_trainable_median": 15.0, "seeds": [0], "per_seed": [{"min_untrainable": 18}]}}},
    ]}))
    out = tmp_path / "table"
    done = _diagnose_script(["--table", "--families", "cnn_tanh,resnet_elu_nobn", "--examples", "8", "--no-jacobian",
                             "--measured", str(measured), "--data-dir", str(synthetic_data_dir), "--out", str(out)],
                            tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((out / "table.json").read_text())
    assert [(row["family"], row["init"]) for row in data["rows"]] == [
        ("cnn_tanh", "seed"), ("cnn_tanh", "delta_orthogonal"), ("resnet_elu_nobn", "seed"),
        ("resnet_elu_nobn", "delta_orthogonal"), ("resnet_elu_nobn", "skipinit")]
    seed_rows = [row for row in data["rows"] if row["init"] == "seed"]
    assert [row["measured"] for row in seed_rows] == [3.0, 15.0]
    assert all(row["ratio"] == pytest.approx(row["predicted"] / row["measured"]) for row in seed_rows)
    assert data["rank_agreement"]["pairs"] == 1
    text = (out / "table.md").read_text()
    assert "| cnn_tanh | seed | 24 |" in text and "pairs ordered as measured" in text
    assert (out / "table.png").is_file() and (out / "cnn_tanh" / "seed" / "diagnosis.json").is_file()


def test_json_files_write_infinity_as_text_or_null_through_one_walker() -> None:
    """A diagnosis keeps an infinite depth scale as "inf"; results files make it null (deeplab.io)."""
    from deeplab.io import finite_or_null, finite_or_text

    value = {"xi": [math.inf, -math.inf, math.nan, 1.23456789], "r": torch.tensor(2.0), "n": 3, "s": "x"}
    assert finite_or_text(value) == {"xi": ["inf", "-inf", "nan", 1.23457], "r": 2.0, "n": 3, "s": "x"}
    assert finite_or_null(value) == {"xi": [None, None, None, 1.23456789], "r": 2.0, "n": 3, "s": "x"}
