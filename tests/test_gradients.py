"""Gradient-norm instrumentation (issue 4): hand-set gradients give exactly the logged norms;
results.json, TensorBoard and grad_norms.png agree on real runs; --no-grad-norms turns it off."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from deeplab.callbacks.gradients import GradientNorms, gradient_norm_vector
from deeplab.models.layers import parameterized_layers

pytestmark = pytest.mark.usefixtures("single_thread")


class Scale(nn.Module):
    """A module whose only parameter is not called ``weight`` (a Fixup-style scalar)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def tiny_model() -> nn.Module:
    #  first: Linear(2, 2) (weight 2×2, bias 2) → ReLU → scale: Scale (gain 1) → last: Linear(2, 1, bias=False)
    return nn.Sequential(nn.Linear(2, 2), nn.ReLU(), Scale(), nn.Linear(2, 1, bias=False))


def set_gradients(model: nn.Module, scale: float = 1.0) -> dict[str, float]:
    """Gradients chosen so every norm is a round number; returns the norms computed by hand.

    first.weight [[3, 4], [0, 0]]  L2 5,  L1 7
    first.bias   [0, -12]          L2 12, L1 12
    scale.gain   [-2]              L2 2,  L1 2
    last.weight  [[6, 8]]          L2 10, L1 14
    total L2 = √(25 + 144 + 4 + 100) = √273, total L1 = 7 + 12 + 2 + 14 = 35
    """
    first, _, gain, last = model
    first.weight.grad = torch.tensor([[3.0, 4.0], [0.0, 0.0]]) * scale
    first.bias.grad = torch.tensor([0.0, -12.0]) * scale
    gain.gain.grad = torch.tensor([-2.0]) * scale
    last.weight.grad = torch.tensor([[6.0, 8.0]]) * scale
    return {"l2_total": math.sqrt(273) * abs(scale), "l1_total": 35.0 * abs(scale),
            "layers": [5.0 * abs(scale), 2.0 * abs(scale), 10.0 * abs(scale)]}


def test_parameterized_layers_in_network_order():
    model = tiny_model()
    layers = parameterized_layers(model)
    assert [name for name, _, _ in layers] == ["01_0", "02_2", "03_3"]
    assert layers[0][2] is model[0].weight  # the weight, not the bias
    assert layers[1][2] is model[2].gain  # no weight: its first own parameter
    assert layers[2][2] is model[3].weight


def test_gradient_norm_vector_is_exact_on_hand_set_gradients():
    model = tiny_model()
    expected = set_gradients(model)
    weights = [weight for _, _, weight in parameterized_layers(model)]
    vector = gradient_norm_vector(list(model.parameters()), weights)
    assert vector.tolist() == pytest.approx([expected["l2_total"], expected["l1_total"], *expected["layers"]],
                                            rel=1e-7)
    assert vector[1].item() == 35.0 and vector[2:].tolist() == [5.0, 2.0, 10.0]  # exact in float32
    # a missing gradient counts 0 for its layer and adds nothing to the totals
    model[3].weight.grad = None
    vector = gradient_norm_vector(list(model.parameters()), weights)
    assert vector.tolist() == pytest.approx([math.sqrt(173), 21.0, 5.0, 2.0, 0.0], rel=1e-7)
    # no gradients at all
    model.zero_grad(set_to_none=True)
    assert gradient_norm_vector(list(model.parameters()), weights).tolist() == [0.0] * 5


class FakeWriter:
    """The part of TensorBoard's SummaryWriter the callback uses."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}
        self.figures: list[str] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.setdefault(tag, []).append((step, value))

    def add_figure(self, tag: str, figure, step: int) -> None:
        self.figures.append(tag)

    def add_histogram(self, tag: str, values, step: int) -> None:  # pragma: no cover - histograms off here
        pass


def test_callback_records_exactly_the_hand_computed_norms(tmp_path):
    """every_n_steps=2 over two epochs of 3 steps: records at steps 0, 2, 4; the first epoch's
    mean L1 covers every step of epoch 1 (0, 1, 2), recorded or not."""
    model = tiny_model()
    writer = FakeWriter()
    trainer = SimpleNamespace(global_step=0, current_epoch=0, is_global_zero=True,
                              logger=SimpleNamespace(experiment=writer))
    callback = GradientNorms(every_n_steps=2, run_dir=tmp_path)
    callback.on_fit_start(trainer, SimpleNamespace(model=model))
    assert callback.layer_names == ["01_0", "02_2", "03_3"]

    scales = {0: 1.0, 1: 5.0, 2: -3.0, 3: 4.0, 4: 0.5, 5: 6.0}  # step → gradient scale
    expected = {}
    for step, scale in scales.items():
        trainer.global_step, trainer.current_epoch = step, step // 3
        if step % 3 == 0:
            callback.on_train_epoch_start(trainer, module_at(step // 3))
        expected[step] = set_gradients(model, scale)
        callback.on_before_optimizer_step(trainer, None, optimizer=None)
        if step % 3 == 2:
            close_epoch(callback, trainer, step // 3)
    callback.on_fit_end(trainer, module_at(1))

    recorded = [0, 2, 4]
    assert [record["step"] for record in callback.records] == recorded
    for record in callback.records:
        hand = expected[record["step"]]
        assert record["l2_total"] == pytest.approx(hand["l2_total"], rel=1e-6)
        assert record["l1_total"] == pytest.approx(hand["l1_total"], rel=1e-6)
        assert record["layers_l2"] == pytest.approx(hand["layers"], rel=1e-6)
    # seed 000's number: mean Σ|g| over *every* step of the first epoch = 35·(1 + 5 + 3)/3
    # (over the recorded steps only it would be 35·(1 + 3)/2 = 70)
    assert callback.first_epoch_mean_l1 == pytest.approx(105.0, rel=1e-6)
    # per epoch, each layer's mean L2 over the recorded steps: epoch 1 {0, 2}, epoch 2 {4}
    assert callback.per_epoch_layer_l2 == [pytest.approx([10.0, 4.0, 20.0], rel=1e-6),
                                           pytest.approx([2.5, 1.0, 5.0], rel=1e-6)]

    # TensorBoard: the same values under grad/..., by step
    assert writer.scalars["grad/l1_total"] == [(s, pytest.approx(expected[s]["l1_total"])) for s in recorded]
    assert writer.scalars["grad/l2_total"] == [(s, pytest.approx(expected[s]["l2_total"])) for s in recorded]
    assert writer.scalars["grad/first_layer"] == [(s, pytest.approx(expected[s]["layers"][0])) for s in recorded]
    for index, name in enumerate(callback.layer_names):
        assert writer.scalars[f"grad/l2/{name}"] == [(s, pytest.approx(expected[s]["layers"][index]))
                                                     for s in recorded]
    assert writer.figures == ["grad/layer_profile"]

    results = {}
    callback.contribute_results(results)
    assert results["grad"]["layers"] == callback.layer_names and results["grad"]["first_layer"] == "01_0"
    assert results["grad"]["first_epoch_mean_l1"] == callback.first_epoch_mean_l1
    assert (tmp_path / "grad_norms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["grad"]["figure"] == str(tmp_path / "grad_norms.png")


def module_at(epoch: int, continuing: bool = False) -> SimpleNamespace:
    """What the callback reads of the Classifier: the epoch in progress, and whether a resume
    picked it up part-way."""
    return SimpleNamespace(epoch_in_progress=epoch, continuing_epoch=continuing)


def close_epoch(callback: GradientNorms, trainer: SimpleNamespace, epoch: int) -> None:
    """What the Classifier does when an epoch's evaluation is done (``_close_epoch``)."""
    callback.on_train_epoch_end(trainer, module_at(epoch))
    callback.on_epoch_closed(trainer, module_at(epoch), {"epoch": epoch + 1})


def run_callback(callback: GradientNorms, model: nn.Module, steps: range, steps_per_epoch: int = 4,
                 scales=(1.0, 5.0, -3.0, 4.0, 0.5, 6.0, 2.0, 7.0)) -> None:
    trainer = SimpleNamespace(global_step=0, current_epoch=0, is_global_zero=True, logger=None)
    callback.on_fit_start(trainer, SimpleNamespace(model=model))
    for step in steps:
        trainer.global_step, trainer.current_epoch = step, step // steps_per_epoch
        epoch_start = step % steps_per_epoch == 0 or step == steps.start
        if epoch_start:  # a resume part-way through an epoch continues its sums
            callback.on_train_epoch_start(trainer, module_at(trainer.current_epoch,
                                                             continuing=step % steps_per_epoch != 0))
        set_gradients(model, scales[step])
        callback.on_before_optimizer_step(trainer, None, optimizer=None)
        if step % steps_per_epoch == steps_per_epoch - 1:
            close_epoch(callback, trainer, trainer.current_epoch)
    callback.on_fit_end(trainer, module_at(trainer.current_epoch))


@pytest.mark.parametrize("stop_at", [2, 4, 6], ids=["mid-first-epoch", "epoch-boundary", "mid-second-epoch"])
def test_callback_state_resumes_mid_epoch_exactly(stop_at):
    """A checkpoint's callback state, restored in a new process, gives the uninterrupted run's numbers."""
    model = tiny_model()
    straight = GradientNorms(every_n_steps=1)
    run_callback(straight, model, range(8))

    first_half = GradientNorms(every_n_steps=1)
    trainer = SimpleNamespace(global_step=0, current_epoch=0, is_global_zero=True, logger=None)
    first_half.on_fit_start(trainer, SimpleNamespace(model=model))
    for step in range(stop_at):  # the process dies after step stop_at − 1's checkpoint
        trainer.global_step, trainer.current_epoch = step, step // 4
        if step % 4 == 0:
            first_half.on_train_epoch_start(trainer, module_at(step // 4))
        set_gradients(model, (1.0, 5.0, -3.0, 4.0, 0.5, 6.0, 2.0, 7.0)[step])
        first_half.on_before_optimizer_step(trainer, None, optimizer=None)
        if step % 4 == 3:
            close_epoch(first_half, trainer, step // 4)
    state = first_half.state_dict()

    resumed = GradientNorms(every_n_steps=1)
    resumed.load_state_dict(state)
    run_callback(resumed, model, range(stop_at, 8))
    assert resumed.first_epoch_mean_l1 == pytest.approx(straight.first_epoch_mean_l1, rel=1e-6)
    assert len(resumed.per_epoch_layer_l2) == 2
    for got, expected in zip(resumed.per_epoch_layer_l2, straight.per_epoch_layer_l2):
        assert got == pytest.approx(expected, rel=1e-6)


def test_callback_state_round_trip():
    callback = GradientNorms()
    callback.first_epoch_mean_l1, callback.per_epoch_layer_l2 = 12.5, [[1.0, 2.0]]
    restored = GradientNorms()
    restored.load_state_dict(callback.state_dict())
    assert restored.first_epoch_mean_l1 == 12.5 and restored.per_epoch_layer_l2 == [[1.0, 2.0]]
    restored.load_state_dict({"first_epoch_mean_l1": 3.0, "per_epoch_layer_l2": []})  # older checkpoints
    assert restored.first_epoch_mean_l1 == 3.0
    with pytest.raises(ValueError):
        GradientNorms(every_n_steps=0)


# ------------------------------------------------------------ real runs
CNN5_LAYERS = ["01_conv1", "02_conv2", "03_conv3", "04_fc1", "05_fc2"]
CNN15_LAYERS = [f"{i + 1:02d}_convs.{i}" for i in range(12)] + ["13_fc1", "14_fc2", "15_fc3"]
#: shared run → (steps per epoch, --grad-every, layer names)
RUNS = {"mnist": (16, 1, CNN5_LAYERS), "fashion_mnist": (12, 1, CNN5_LAYERS), "cifar10": (16, 3, CNN15_LAYERS)}


def epoch_mean(events: list[tuple[int, float]], epoch: int, steps_per_epoch: int) -> float:
    values = [value for step, value in events if epoch * steps_per_epoch <= step < (epoch + 1) * steps_per_epoch]
    assert values
    return sum(values) / len(values)


@pytest.mark.parametrize("name", list(RUNS))
def test_results_and_tensorboard_agree(name, fit_runs):
    """With every optimizer (mnist: momentum_sgd + manual loss, fashion: sgd, cifar10: adam)."""
    run = fit_runs(name)
    steps_per_epoch, every, layers = RUNS[name]
    grad = run.results["grad"]
    assert grad["layers"] == layers and grad["first_layer"] == layers[0] and grad["every_n_steps"] == every
    per_epoch = grad["per_epoch_layer_l2"]
    assert len(per_epoch) == 2 and all(len(epoch) == len(layers) for epoch in per_epoch)
    assert all(math.isfinite(v) and v > 0 for epoch in per_epoch for v in epoch)
    assert math.isfinite(grad["first_epoch_mean_l1"]) and grad["first_epoch_mean_l1"] > 0

    scalars = run.scalars()
    l1 = scalars["grad/l1_total"]
    assert [step for step, _ in l1] == list(range(0, 2 * steps_per_epoch, every))
    for epoch in range(2):
        for index, layer in enumerate(layers):
            assert per_epoch[epoch][index] == pytest.approx(
                epoch_mean(scalars[f"grad/l2/{layer}"], epoch, steps_per_epoch), rel=1e-5)
    assert [v for _, v in scalars["grad/first_layer"]] == [v for _, v in scalars[f"grad/l2/{layers[0]}"]]
    if every == 1:  # every step recorded: the first epoch's mean L1 is the mean of its logged values
        assert grad["first_epoch_mean_l1"] == pytest.approx(epoch_mean(l1, 0, steps_per_epoch), rel=1e-6)
    # norm inequalities, step by step: L1 ≥ L2 total ≥ each layer's L2
    for (step, total_l1), (_, total_l2) in zip(l1, scalars["grad/l2_total"]):
        assert total_l1 >= total_l2 > 0
        for layer in layers:
            layer_l2 = dict(scalars[f"grad/l2/{layer}"])[step]
            assert layer_l2 <= total_l2 * (1 + 1e-6)

    figure = run.run_dir / "grad_norms.png"
    assert grad["figure"] == str(figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 1000


def test_no_grad_norms_removes_everything(fit_runs):
    run = fit_runs("no_grad_norms")
    assert "grad" not in run.results
    tags = set(run.scalars())
    assert "train/loss" in tags
    assert not [tag for tag in tags if tag.startswith("grad")]
    assert not (run.run_dir / "grad_norms.png").exists()
