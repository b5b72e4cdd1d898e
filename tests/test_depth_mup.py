"""--branch-scale sqrt_depth (depth-µP, Yang, Yu, Zhu & Hayou 2023, "Tensor Programs VI"): every residual branch ×
1/√L with L residual blocks, and its SGD step rule (--lr-depth-scaling depth_mup: η independent of depth)."""

from __future__ import annotations

import math

import pytest
import torch

from deeplab.config import FitConfig, effective_lr, key_settings
from deeplab.errors import DeeplabError
from deeplab.models import create_model

torch.set_num_threads(1)


@pytest.mark.parametrize("family", ["resnet_elu", "resnet_elu_nobn"])
@pytest.mark.parametrize("depth", [6, 30, 300])
def test_every_branch_is_scaled_by_one_over_root_the_number_of_blocks(family: str, depth: int) -> None:
    torch.manual_seed(0)
    scaled = create_model(family, depth=depth, branch_scale="sqrt_depth")
    blocks = scaled.residual_blocks()
    assert len(blocks) == depth - 3  # each stage's first layer is plain
    assert all(block.multiplier == pytest.approx(1 / math.sqrt(depth - 3)) for block in blocks)
    torch.manual_seed(0)
    plain = create_model(family, depth=depth)
    assert all(block.multiplier == 1.0 for block in plain.residual_blocks())
    # same weights, and each block's output is x + f(x)/√L where the seed's is x + f(x)
    assert all(torch.equal(a, b) for a, b in zip(scaled.state_dict().values(), plain.state_dict().values()))
    block, reference = blocks[0], plain.residual_blocks()[0]
    x = torch.randn(2, block.conv.in_channels, 7, 7)
    scaled.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(block(x) - x, (reference(x) - x) / math.sqrt(depth - 3), atol=1e-6)


def test_the_step_rule_keeps_eta_at_every_depth() -> None:
    for depth in (30, 99, 300, 999):
        config = FitConfig(model="resnet_elu_nobn", depth=depth, lr=0.02, lr_depth_scaling="depth_mup")
        assert effective_lr(config) == 0.02


def test_branch_scale_defines_the_run_and_keys_the_ledger() -> None:
    assert "branch_scale" in key_settings()


@pytest.mark.parametrize("family", ["cnn_tanh", "cnn_elu_bn"])
def test_a_family_without_branches_refuses_a_branch_scale(family: str) -> None:
    with pytest.raises(DeeplabError, match="residual branches"):
        create_model(family, depth=6, branch_scale="sqrt_depth")


def test_a_depth_mup_run_resumes_exactly_and_refuses_a_changed_branch_scale(tmp_path, synthetic_data_dir) -> None:
    from conftest import run_fit_script

    common = ["--model", "resnet_elu_nobn", "--depth", "9", "--branch-scale", "sqrt_depth", "--lr-depth-scaling",
              "depth_mup", "--epochs", "1", "--batch-size", "16", "--limit-train-batches", "6",
              "--data-dir", str(synthetic_data_dir)]
    straight = run_fit_script(common, tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    stopped = run_fit_script(common + ["--max-steps", "3", "--run-name", "stopped"], tmp_path)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    changed = run_fit_script(["--ckpt-path", str(stopped.run_dir), "--max-steps", "-1", "--branch-scale", "none"],
                             tmp_path)
    assert changed.returncode == 2 and "branch" in changed.stderr, changed.stderr
    resumed = run_fit_script(["--ckpt-path", str(stopped.run_dir), "--max-steps", "-1"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.results["history"] == straight.results["history"]
    assert resumed.results["test_acc"] == straight.results["test_acc"]
