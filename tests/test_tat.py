"""--init tat (deeplab.models.tat, through DeepMind's dks): the kernel TAT shapes, measured on the network; the
families it applies to; and that it resumes and searches like every other init."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

pytest.importorskip("dks")  # an optional dependency (".[frontier]"); CI installs it with ".[dev]"

from deeplab.errors import DeeplabError
from deeplab.models import create_model
from deeplab.models.inits import apply_init
from deeplab.models.tat import TransformedActivation, tat_init_

from conftest import SCRIPTS_DIR, fit_environment, run_fit_script

torch.set_num_threads(1)

#: dks's default TAT curvature target for smooth activations: C_f''(1) = τ
TAU = 0.3


def _mlp(width: int, depth: int, activation: nn.Module | None) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), activation if activation is not None else TransformedActivation("tanh", depth)]
    return nn.Sequential(*layers)


def _pairs(width: int, count: int, c_in: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` pairs of inputs with q = 1 per unit and correlation ``c_in`` within each pair."""
    a = torch.randn(count, width)
    b = torch.randn(count, width)
    b = c_in * a + math.sqrt(1 - c_in ** 2) * b
    return (a / a.norm(dim=1, keepdim=True) * math.sqrt(width), b / b.norm(dim=1, keepdim=True) * math.sqrt(width))


def _correlations(network: nn.Module, a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        out_a, out_b = network(a), network(b)
    cosine = nn.functional.cosine_similarity(out_a, out_b, dim=1).mean()
    q = torch.cat([out_a, out_b]).pow(2).mean()
    return float(cosine), float(q)


@pytest.mark.parametrize("c_in", [0.8, 0.9, 0.95])
def test_tat_shapes_the_whole_networks_correlation_map_as_dks_targets(c_in: float) -> None:
    """TAT (smooth activations) makes the network's c map C_f have C_f(1) = 1, C_f'(1) = 1 and C_f''(1) = τ, so
    near c = 1 two inputs' correlation leaves 30 tanh layers as C_f(c) ≈ c + τ/2·(1 − c)² and each input's
    q stays 1. Measured on a width-1000 MLP (32 pairs): within 0.01 of that and q within 5 %; the same
    network with untransformed tanh decorrelates far more."""
    torch.manual_seed(0)
    width, depth = 1000, 30
    network = tat_init_(_mlp(width, depth, None))
    a, b = _pairs(width, 32, c_in)
    target = c_in + TAU / 2 * (1 - c_in) ** 2
    cosine, q = _correlations(network, a, b)
    assert cosine == pytest.approx(target, abs=0.01)
    assert q == pytest.approx(1.0, rel=0.05)
    plain = tat_init_(_mlp(width, depth, nn.Tanh()))  # the same weights' law, tanh untransformed
    plain_cosine, _ = _correlations(plain, a, b)
    assert abs(plain_cosine - target) > max(0.01, 5 * abs(cosine - target))


def test_a_tat_family_has_transformed_activations_and_delta_orthogonal_weights() -> None:
    torch.manual_seed(0)
    network = create_model("cnn_tanh", depth=12, init="tat")
    activations = [m for m in network.modules() if isinstance(m, TransformedActivation)]
    assert len(activations) == 12 and all(m.nonlinear_layers == 12 and m.name == "tanh" for m in activations)
    assert not any(isinstance(m, nn.Tanh) for m in network.modules())
    for conv in (m for m in network.modules() if isinstance(m, nn.Conv2d)):
        kernel = conv.weight.detach()
        centre = kernel[:, :, 1, 1].reshape(kernel.shape[0], -1)
        assert torch.count_nonzero(kernel) == torch.count_nonzero(centre)  # Delta: only the centre tap
        gram = centre.T @ centre  # orthonormal columns, scaled by max(√(C_out/C_in), 1) (dks's SUO)
        assert torch.allclose(gram, gram[0, 0] * torch.eye(gram.shape[0]), atol=1e-5)
        assert torch.count_nonzero(conv.bias) == 0
    # the transform is the depth's: the same family at another depth has another activation
    other = create_model("cnn_tanh", depth=24, init="tat")
    x = torch.linspace(-3, 3, 7)
    assert not torch.allclose(activations[0](x), next(m for m in other.modules()
                                                          if isinstance(m, TransformedActivation))(x))


@pytest.mark.parametrize("family, message", [
    ("cnn_elu_bn", "batch norm"), ("cnn_tanh_bn_oldinit", "batch norm"),
    ("resnet_elu_nobn", "without skip connections"), ("resnet_elu", "without skip connections"),
])
def test_tat_refuses_networks_with_normalization_or_skips(family: str, message: str) -> None:
    with pytest.raises(DeeplabError, match=message):
        create_model(family, depth=6, init="tat")


def test_tat_cannot_be_applied_to_a_model_built_without_it() -> None:
    with pytest.raises(DeeplabError, match="create the model with init='tat'"):
        apply_init(create_model("cnn_tanh", depth=6), "tat")


def test_a_tat_run_resumes_exactly(tmp_path, synthetic_data_dir) -> None:
    common = ["--model", "cnn_elu", "--depth", "6", "--init", "tat", "--epochs", "1", "--batch-size", "16",
              "--limit-train-batches", "6", "--data-dir", str(synthetic_data_dir)]
    straight = run_fit_script(common, tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    stopped = run_fit_script(common + ["--max-steps", "3", "--run-name", "stopped"], tmp_path)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    resumed = run_fit_script(["--ckpt-path", str(stopped.run_dir), "--max-steps", "-1"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.results["test_acc"] == straight.results["test_acc"]
    assert resumed.results["history"] == straight.results["history"]
    assert json.loads((straight.run_dir / "config.json").read_text())["init"] == "tat"


def test_a_tat_search_keys_its_probes_by_the_init(tmp_path, synthetic_data_dir) -> None:
    out = tmp_path / "search"
    done = subprocess.run([sys.executable, str(SCRIPTS_DIR / "search.py"), "--model", "cnn_tanh", "--init", "tat",
                           "--lower", "3", "--upper", "6", "--epochs", "1", "--batch-size", "32",
                           "--limit-train-batches", "4", "--data-dir", str(synthetic_data_dir), "--out", str(out)],
                          cwd=tmp_path, env=fit_environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "probes.jsonl").read_text().splitlines() if line.strip()]
    assert records and all(record["settings"]["init"] == "tat" for record in records)
    assert "mean-field prediction: none (TAT transforms the activation" in done.stdout


def test_tats_leaky_relu_variant_maps_orthogonal_inputs_to_its_target_correlation() -> None:
    """TAT's main case (Zhang et al. 2022): a leaky ReLU whose negative slope dks chooses so the whole network maps
    orthogonal inputs to correlation η = 0.9 (dks's default c_val_0_target). Measured on a width-1000, 30-layer MLP
    (32 pairs): within 0.02; and the family option builds it (model_kwargs activation=leaky_relu, init tat)."""
    torch.manual_seed(0)
    width, depth = 1000, 30
    network = tat_init_(_mlp(width, depth, TransformedActivation("leaky_relu", depth)))
    a, b = _pairs(width, 32, 0.0)
    cosine, _ = _correlations(network, a, b)
    assert cosine == pytest.approx(0.9, abs=0.02)
    family = create_model("cnn_elu", depth=30, init="tat", activation="leaky_relu")
    assert {m.name for m in family.modules() if isinstance(m, TransformedActivation)} == {"leaky_relu"}
    with pytest.raises(DeeplabError, match="only as TAT's variant"):
        create_model("cnn_elu", depth=30, activation="leaky_relu")
    with pytest.raises(DeeplabError, match="needs about 24 layers"):
        create_model("cnn_elu", depth=12, init="tat", activation="leaky_relu")
