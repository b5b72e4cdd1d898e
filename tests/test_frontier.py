"""Issue 19, the frontier: the Gaussian init with chosen (σ_w², σ_b²), --lr-depth-scaling,
--activation-checkpointing, the η sweep and the peak memory in results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from deeplab.models import inits
from deeplab.theory import mean_field
from deeplab.config import FitConfig, effective_lr, parse_lr_depth_scaling
from deeplab.training.resolve import resolve_config
from deeplab.errors import DeeplabError
from deeplab.models import create_model
from deeplab.training.resumable.resume import compare_settings, read_checkpoint
from deeplab.search.ledger import probe_key, probe_settings
from deeplab.search.lr_sweep import fit_power_law, largest_trainable_lr
from deeplab.search.prediction import predict_for_model
from deeplab.training.fit import fit


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one torch thread (conftest)


# ------------------------------------------------------------------ the Gaussian init and (σ_w², σ_b²)
def test_gaussian_init_has_the_asked_variances_on_every_layer() -> None:
    torch.manual_seed(0)
    model = create_model("cnn_tanh", depth=30, init="gaussian", sigma_w2=2.5, sigma_b2=0.05)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    weights = torch.cat([(m.weight * math.sqrt(m.weight[0].numel())).flatten() for m in convs])
    biases = torch.cat([m.bias for m in convs])
    assert weights.var().item() == pytest.approx(2.5, rel=0.05)  # σ_w² = Var(w) · fan_in
    assert biases.var().item() == pytest.approx(0.05, rel=0.25)  # only 300 biases
    head = model.fully_connected
    assert (head.weight.var() * head.in_features).item() == pytest.approx(2.5, rel=0.1)


def test_unset_variances_are_critical_at_the_given_bias_variance() -> None:
    # Schoenholz et al. 2017: the tanh edge of chaos at σ_b² = 0.05 is σ_w² ≈ 1.76
    assert inits.resolve_variances("tanh", None, 0.05) == pytest.approx((1.7610, 0.05), abs=1e-3)
    assert inits.resolve_variances("tanh", None, None) == inits.critical_point("tanh")
    assert inits.resolve_variances("relu", None, 0.3) == (2.0, 0.3)
    sigma_w2, sigma_b2 = inits.resolve_variances("tanh", None, 0.05)
    assert mean_field.analyze("tanh", sigma_w2, sigma_b2).chi1 == pytest.approx(1.0, abs=1e-6)


def test_sigma_overrides_reach_delta_orthogonal() -> None:
    torch.manual_seed(0)
    model = create_model("cnn_tanh", depth=6, init="delta_orthogonal", sigma_w2=4.0)
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][1]  # 4 → 4 channels
    centre = conv.weight[:, :, 1, 1]
    assert torch.allclose(centre.T @ centre, 4.0 * torch.eye(4), atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(init="seed", sigma_w2=2.0), "init 'seed' has its own"),
    (dict(init="xavier", sigma_b2=0.1), "init 'xavier' has its own"),
    (dict(init="gaussian", sigma_w2=-1.0), "--sigma-w2 is a variance"),
    (dict(init="gaussian", sigma_b2=float("nan")), "--sigma-b2 is a variance"),
])
def test_bad_variances_are_one_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DeeplabError, match=message):
        create_model("cnn_tanh", depth=3, **kwargs)
    with pytest.raises(DeeplabError, match=message):
        resolve_config(FitConfig(model="cnn_tanh", **kwargs))


def test_cnn15_takes_the_variances_and_other_models_refuse_them() -> None:
    torch.manual_seed(0)
    model = create_model("cnn15_plain", init="gaussian", sigma_w2=3.0, sigma_b2=0.0)
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][3]
    assert (conv.weight.var() * conv.weight[0].numel()).item() == pytest.approx(3.0, rel=0.1)
    with pytest.raises(DeeplabError, match="has no --sigma-w2"):
        resolve_config(FitConfig(model="cnn5", init="gaussian", sigma_w2=1.0))


def test_mean_field_prediction_follows_the_chosen_variances() -> None:
    for sigma_w2 in (1.0, 3.0):
        prediction = predict_for_model("cnn_tanh", "gaussian", sigma_w2=sigma_w2, sigma_b2=0.05)
        expected = mean_field.analyze("tanh", sigma_w2, 0.05).predicted_max_depth
        assert prediction["predicted_max_depth"] == pytest.approx(expected)
    assert predict_for_model("cnn_tanh", "gaussian", sigma_b2=0.05)["predicted_max_depth"] > 1000  # critical


# --------------------------------------------------------------------------------- --lr-depth-scaling
@pytest.mark.parametrize("rule, depth, factor", [
    (None, 300, 1.0), ("none", 300, 1.0), ("inverse", 300, 0.1), ("inverse", 15, 2.0),
    ("inverse_sqrt", 120, 0.5), ("inverse@3", 300, 0.01), ("inverse_sqrt@75", 300, 0.5),
    ("power:2@60", 30, 4.0), ("power:0", 300, 1.0),
])
def test_effective_lr_follows_the_rule(rule: str | None, depth: int, factor: float) -> None:
    config = resolve_config(FitConfig(model="cnn_tanh", depth=depth, lr=0.02, lr_depth_scaling=rule))
    assert effective_lr(config) == pytest.approx(0.02 * factor)
    assert config.lr == 0.02  # the base rate is what the config records; the rule derives the rest


@pytest.mark.parametrize("rule, message", [
    ("linear", "give one of none, inverse_sqrt, inverse, depth_mup or power:P"), ("inverse@0", "positive integer"),
    ("inverse@", "positive integer"), ("power:x", "a number P ≥ 0"), ("power:-1", "a number P ≥ 0"),
    ("power:inf@30", "a number P ≥ 0"),
])
def test_bad_rules_are_one_clear_error(rule: str, message: str) -> None:
    with pytest.raises(DeeplabError, match=message):
        parse_lr_depth_scaling(rule)


def test_a_fixed_depth_model_refuses_depth_scaling() -> None:
    with pytest.raises(DeeplabError, match="cnn5 has a fixed depth"):
        resolve_config(FitConfig(model="cnn5", lr_depth_scaling="inverse"))


def test_old_ledger_keys_do_not_change() -> None:
    """Probes recorded before σ_w², σ_b² and the rule existed keep their keys (the committed ledgers)."""
    settings = probe_settings(resolve_config(FitConfig(model="cnn_tanh", depth=3)))
    old = {name: value for name, value in settings.items() if name not in ("sigma_w2", "sigma_b2", "lr_depth_scaling")}
    assert probe_key(settings, 3, 0) == probe_key(old, 3, 0)
    scaled = probe_settings(resolve_config(FitConfig(model="cnn_tanh", depth=3, lr_depth_scaling="inverse")))
    assert probe_key(scaled, 3, 0) != probe_key(settings, 3, 0)


def test_the_optimizer_trains_at_the_scaled_rate(synthetic_data_dir: Path, tmp_path: Path) -> None:
    config = FitConfig(model="cnn_tanh", depth=9, init="gaussian", sigma_w2=1.5, sigma_b2=0.05, lr=0.03,
                       lr_depth_scaling="inverse@3", epochs=1, batch_size=16, limit_train_batches=2,
                       data_dir=str(synthetic_data_dir), log_dir=str(tmp_path), progress_bar=False, grad_norms=False)
    seen: list[float] = []

    class RecordRate(__import__("lightning").pytorch.Callback):
        def on_train_batch_end(self, trainer, module, *args: Any) -> None:
            seen.append(module.optimizers().optimizer.param_groups[0]["lr"])

    results = fit(config, callbacks=[RecordRate()], quiet=True)
    assert seen and all(rate == pytest.approx(0.01) for rate in seen)
    assert results["lr_effective"] == pytest.approx(0.01)
    assert results["hparams"]["lr"] == 0.03 and results["hparams"]["lr_depth_scaling"] == "inverse@3"
    assert results["hparams"]["sigma_w2"] == 1.5
    memory = results["memory"]
    assert memory["peak_rss_mib"] > 50 and memory["peak_gpu_allocated_mib"] is None
    saved = json.loads((Path(results["run_dir"]) / "results.json").read_text())
    assert saved["memory"] == memory

    # a resume keeps the run's variances and rule; activation checkpointing may change (same gradients)
    checkpoint = read_checkpoint(results["checkpoint"])[0]
    ran = json.loads((Path(results["run_dir"]) / "config.json").read_text())  # engine settings filled in
    compare_settings(checkpoint, ran)
    for change, allowed in ((dict(sigma_w2=2.0), False), (dict(lr_depth_scaling="inverse"), False),
                            (dict(activation_checkpointing=True), True)):
        if allowed:
            assert compare_settings(checkpoint, {**ran, **change}) == {"activation_checkpointing": [False, True]}
        else:
            with pytest.raises(DeeplabError, match="cannot resume"):
                compare_settings(checkpoint, {**ran, **change})


# ------------------------------------------------------------------------------ activation checkpointing
def _gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes autograd stores for the backward pass (what activation checkpointing cuts)."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return total


@pytest.mark.parametrize("name, init", [("cnn_tanh", "delta_orthogonal"), ("resnet_elu_nobn", "skipinit"),
                                        ("cnn_elu", "seed")])
def test_activation_checkpointing_keeps_gradients_and_cuts_stored_activations(name: str, init: str) -> None:
    torch.manual_seed(0)
    plain = create_model(name, depth=90, init=init)
    torch.manual_seed(0)
    checkpointed = create_model(name, depth=90, init=init, activation_checkpointing=True)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28, generator=generator), torch.randint(0, 10, (8,), generator=generator)
    for a, b in zip(_gradients(plain, x, y), _gradients(checkpointed, x, y)):
        assert torch.equal(a, b)
    assert _saved_bytes(checkpointed, x, y) < 0.5 * _saved_bytes(plain, x, y)
    checkpointed.eval()  # evaluation stores nothing either way; the forward is the plain one
    with torch.no_grad():
        assert torch.equal(checkpointed(x), plain.eval()(x))


def test_activation_checkpointing_refuses_batch_norm() -> None:
    """Recomputing a batch norm's forward in the backward pass would update its running statistics twice."""
    with pytest.raises(DeeplabError, match="batch norm"):
        create_model("cnn_elu_bn", depth=9, activation_checkpointing=True)
    with pytest.raises(DeeplabError, match="batch norm"):
        resolve_config(FitConfig(model="resnet_elu", depth=9, activation_checkpointing=True))


# ------------------------------------------------------------------------------------- the η sweep
def test_power_law_fit_recovers_its_exponent() -> None:
    depths = [30, 99, 300]
    c, p = fit_power_law(depths, [0.3 * k ** -0.75 for k in depths])
    assert (c, p) == (pytest.approx(0.3), pytest.approx(0.75))
    c, p = fit_power_law(depths + [1000], [0.3 * k ** -0.75 for k in depths] + [None])  # no η at k=1000
    assert p == pytest.approx(0.75)
    with pytest.raises(DeeplabError, match="two or more depths"):
        fit_power_law([30, 99], [0.1, None])


def test_sweep_stops_at_the_first_trainable_rate_and_reads_its_ledger_back(synthetic_data_dir: Path,
                                                                            tmp_path: Path) -> None:
    training = FitConfig(model="cnn_tanh", epochs=1, batch_size=16, limit_train_batches=4,
                         data_dir=str(synthetic_data_dir), val_split="none")
    lines: list[str] = []
    # 1e6 turns the loss NaN; with threshold 0.95 (chance is 0.9) any finite probe counts as trainable
    first = largest_trainable_lr(training, model="cnn_elu", init="seed", depth=3, out=tmp_path,
                                 lrs=[1e-9, 1e6, 0.05], threshold=0.95, echo=lines.append)
    assert [p["lr"] for p in first["probes"]] == [1e6, 0.05]  # descending, stopped at the first that trains
    assert first["probes"][0]["diverged"] and not first["probes"][0]["trainable"]
    assert first["largest_lr"] == 0.05 and "trainable" in lines[-1]
    again = largest_trainable_lr(training, model="cnn_elu", init="seed", depth=3, out=tmp_path,
                                 lrs=[1e-9, 1e6, 0.05], threshold=0.95, echo=lines.append)
    assert again == first and lines[-1].endswith("(ledger)")
    refined = largest_trainable_lr(training, model="cnn_elu", init="seed", depth=3, out=tmp_path,
                                   lrs=[1e6, 0.05], threshold=0.95, refinements=2, echo=lines.append)
    assert [p["lr"] for p in refined["probes"][:2]] == [1e6, 0.05] and len(refined["probes"]) == 4
    outcome = {p["lr"]: p["trainable"] for p in refined["probes"]}
    good, bad = refined["largest_lr"], refined["smallest_failing_lr"]
    assert outcome[good] and not outcome[bad] and good < bad
    assert bad / good <= 1.1 * (1e6 / 0.05) ** 0.25  # two bisections: a quarter of the log-width
    nothing = largest_trainable_lr(training, model="cnn_elu", init="seed", depth=3, out=tmp_path,
                                   lrs=[1e6], threshold=0.95, echo=lines.append)
    assert nothing["largest_lr"] is None


# ------------------------------------------------------------------------------ scripts/frontier.sh
def test_frontier_script_runs_each_network_at_the_scaled_rate(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """The k = 999 (CPU) / 9,999 (GPU) script, at k = 6 on the synthetic digits: the runs it names, each
    at η(300)·(300/k)^p, with the activation-checkpointing switch passed through."""
    import os
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATA_DIR": str(synthetic_data_dir), "OUT": str(tmp_path), "BATCHES": "2",
           "RUNS": "tanh_delta_orthogonal resnet_seed", "ACTIVATION_CHECKPOINTING": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(root / "scripts" / "frontier.sh"), "6", "cpu"], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    script = (root / "scripts" / "frontier.sh").read_text()
    constants = dict(re.findall(r"^(\w+_(?:LR_300|POWER))=([\d.]+)$", script, re.MULTILINE))
    paths = [Path(line[len("results: "):]) for line in done.stdout.splitlines() if line.startswith("results: ")]
    assert len(paths) == 2 and "== tanh_delta_orthogonal" in done.stdout and "tanh_seed" not in done.stdout
    for path, prefix in zip(paths, ("TANH", "RESNET")):
        results = json.loads(path.read_text())
        lr, power = float(constants[f"{prefix}_LR_300"]), float(constants[f"{prefix}_POWER"])
        assert results["depth"] == 6 and results["global_step"] == 2
        assert results["lr_effective"] == pytest.approx(lr * (300 / 6) ** power)
        assert results["hparams"]["activation_checkpointing"] is True
