"""Every figure the project draws (issue "figures that show the result"): its text fits inside the canvas
(measured: the figure's tight bounding box against the canvas), one run's figure names its model, dataset
and run, depth/epoch axes have integer ticks, short series have markers and series that coincide stay
distinguishable. Small synthetic inputs shaped like the recipes' (15 layers "01_conv1"…"15_fc2", one-epoch
series, depths 3..24, long titles)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from deeplab.experiments import plots  # noqa: E402
from deeplab.experiments.runner import Training  # noqa: E402
from deeplab.experiments.seed004 import _channel_bars  # noqa: E402
from deeplab.reporting.figures import fit_text, run_title, series_style, text_overflow  # noqa: E402
from deeplab.callbacks.gradients import plot_layer_profile  # noqa: E402
from deeplab.search.report import search_figure  # noqa: E402

LONG_TITLE = ("A deliberately long title that no six-inch figure can hold on one line: gradient norm per layer "
              "of cnn15_skip2 on fashion_mnist, version_3, every epoch, vanishing toward the input")
RUN = "cnn15_skip2 · mnist · version_3"
LAYERS = ["01_conv1", *[f"{i:02d}_block{i - 1}.conv" for i in range(2, 14)], "14_fc1", "15_fc2"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------ checks
def visible_ticks(axis, which: str = "x") -> list[float]:
    ticks = axis.get_xticks() if which == "x" else axis.get_yticks()
    low, high = sorted(axis.get_xlim() if which == "x" else axis.get_ylim())
    return [t for t in ticks if low - 1e-9 <= t <= high + 1e-9]


def assert_integer_ticks(axis, which: str = "x") -> None:
    ticks = visible_ticks(axis, which)
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    labels = [label.get_text() for label in (axis.get_xticklabels() if which == "x" else axis.get_yticklabels())]
    assert not any("." in text for text in labels if text), labels


def data_lines(axis) -> list:
    return [line for line in axis.get_lines() if not line.get_label().startswith("_")]


def assert_markers_on_short_series(axis, limit: int = 20) -> None:
    lines = [line for line in data_lines(axis) if len(line.get_xdata()) <= limit]
    assert lines
    for line in lines:
        assert line.get_marker() not in (None, "None", "", " "), line.get_label()


def assert_distinct_styles(axis) -> None:
    styles = [(line.get_marker(), line.get_linestyle(), line.get_markersize()) for line in data_lines(axis)]
    assert len(set(styles)) == len(styles), styles


def assert_fits(figure) -> None:
    assert text_overflow(figure) == 0, text_overflow(figure)


# ------------------------------------------------------------------------------------ the helper
def test_text_overflow_measures_a_clipped_title_and_fit_text_removes_it() -> None:
    figure, axis = plt.subplots(figsize=(6, 4.2))
    axis.plot([1], [1.0], marker="o")
    axis.set_title(LONG_TITLE)
    figure.tight_layout()
    assert text_overflow(figure) > 50  # the measurement sees the clipped title (so these tests can fail)
    fit_text(figure)
    assert_fits(figure)
    assert "\n" in axis.title.get_text()  # wrapped, not dropped
    assert axis.title.get_text().replace("\n", " ") == LONG_TITLE
    assert tuple(figure.get_size_inches()) == (6, 4.2)  # wrapping was enough: the canvas kept its size


def test_fit_text_grows_the_canvas_when_tick_labels_cannot_fit() -> None:
    figure, axis = plt.subplots(figsize=(2, 1.5))
    axis.bar(range(3), [1, 2, 3])
    axis.set_xticks(range(3))
    axis.set_xticklabels(["a very long category name indeed"] * 3, rotation=80)
    fit_text(figure)
    assert_fits(figure)


def test_run_title_and_series_style() -> None:
    assert run_title("cnn15_skip2", "mnist", "/runs/cnn15_skip2/version_3") == RUN
    assert run_title("cnn15_skip2", None, "") == "cnn15_skip2"
    assert series_style(0, 1)["marker"] and "marker" not in series_style(0, 500)
    assert len({tuple(sorted(series_style(i, 5).items())) for i in range(8)}) == 8


# -------------------------------------------------------------------------- callbacks/gradients.py
@pytest.mark.parametrize("epochs", [1, 3])
def test_layer_profile_fits_and_names_the_run(tmp_path: Path, epochs: int) -> None:
    per_epoch = [[10.0 ** (-i / 2) * (e + 1) for i in range(len(LAYERS))] for e in range(epochs)]
    figure = plot_layer_profile(LAYERS, per_epoch, tmp_path / "grad_norms.png", title_prefix=RUN)
    assert (tmp_path / "grad_norms.png").stat().st_size > 1000
    assert_fits(figure)
    axis = figure.axes[0]
    assert axis.get_title().startswith(RUN)
    assert [t.get_text() for t in axis.get_xticklabels()][:2] == ["conv1", "block1.conv"]
    assert_markers_on_short_series(axis)
    assert_distinct_styles(axis)


def test_layer_profile_without_prefix_and_many_layers_has_integer_depth_ticks(tmp_path: Path) -> None:
    names = [f"{i:02d}_layer{i}" for i in range(1, 61)]
    figure = plot_layer_profile(names, [[1.0 / i for i in range(1, 61)]], tmp_path / "grad_norms.png")
    assert_fits(figure)
    assert "Gradient" in figure.axes[0].get_title()
    assert_integer_ticks(figure.axes[0])


# ------------------------------------------------------------------------------------ plots.py
def training(label: str, epochs: int, model: str = "cnn15_skip2", dataset: str = "mnist", seeds: int = 1,
             version: int = 3) -> Training:
    results = []
    for seed in range(seeds):
        history = [{"epoch": e, "train_loss": 1.0 / e + 0.01 * seed, "val_loss": 1.1 / e, "train_acc": 0.5 + 0.04 * e,
                    "val_acc": 0.45 + 0.04 * e} for e in range(1, epochs + 1)]
        results.append({"history": history, "eval_split": "test", "run_dir": f"/runs/{model}/version_{version + seed}"})
    return Training(label=label, model=model, configs=[SimpleNamespace(dataset=dataset, seed=s) for s in range(seeds)],
                    results=results)


def test_learning_curves_of_one_one_epoch_run_name_it_and_show_dots(tmp_path: Path) -> None:
    figure = plots.learning_curves_plot([training("cnn15_skip2", 1)], "Training and validation curves")
    assert RUN in figure._suptitle.get_text()
    assert_fits(figure)
    for axis in figure.axes:
        assert_integer_ticks(axis)
        assert_markers_on_short_series(axis)
    path = plots.plot_learning_curves([training("cnn15_skip2", 1)], tmp_path / "curves.png", "Curves")
    assert path == tmp_path / "curves.png" and path.stat().st_size > 1000


def test_learning_curves_of_many_identical_runs_stay_distinguishable() -> None:
    runs = [training(f"a rather long label for training number {i} (batch {2 ** i})", 4, seeds=2) for i in range(9)]
    figure = plots.learning_curves_plot(runs, LONG_TITLE)
    assert RUN not in figure._suptitle.get_text()  # several runs: the recipe's title is enough
    assert_fits(figure)
    legend = figure.legends[0]
    assert legend.get_window_extent(figure.canvas.get_renderer()).y1 <= min(
        a.get_tightbbox(figure.canvas.get_renderer()).y0 for a in figure.axes) + 1  # below the panels
    for axis in figure.axes:
        assert_integer_ticks(axis)
        assert_markers_on_short_series(axis)
        assert_distinct_styles(axis)


@pytest.mark.parametrize("title", ["Plain networks: deeper is worse", LONG_TITLE])
def test_series_depths_and_one_epoch_curves(title: str) -> None:
    depths = list(range(3, 25))
    same = [[0.9 - 0.01 * d for d in depths]]
    panels = [
        {"series": {"seed": ([depths], same), "deeplab": ([depths], same)},  # identical series
         "xlabel": "depth k", "ylabel": "error"},
        {"series": {"plain_deep-2": ([[1]], [[2.3]]), "plain_deep-5": ([[1]], [[2.3]])},
         "xlabel": "epoch", "ylabel": "training loss", "log": True, "marks": [(1, "lr→0.001")]},
        {"series": {f"series {i}": ([list(range(1, 4))] * 2, [[1.0, 0.5, 0.25], [1.1, 0.6, 0.2]]) for i in range(5)},
         "xlabel": "epoch", "ylabel": "test accuracy (%)", "scale": 100.0, "title": LONG_TITLE},
    ]
    figure = plots.series_figure(panels, title=title)
    assert_fits(figure)
    for axis in figure.axes:
        assert_integer_ticks(axis)
        assert_markers_on_short_series(axis, limit=25)
        assert_distinct_styles(axis)


def test_series_long_steps_have_no_markers_and_plot_series_saves(tmp_path: Path) -> None:
    steps = list(range(0, 5000, 10))
    figure = plots.series_figure([{"series": {"relu": ([steps], [[1.0 / (1 + s) for s in steps]])},
                                   "xlabel": "step", "ylabel": "loss"}], title="cnn_5: learning rates")
    assert_fits(figure)
    assert data_lines(figure.axes[0])[0].get_marker() in (None, "None", "")
    path = plots.plot_series(tmp_path / "s.png", [{"series": {}, "xlabel": "epoch"}], title=LONG_TITLE)
    assert path.stat().st_size > 1000


@pytest.mark.parametrize("title", ["Final test accuracy by depth", LONG_TITLE])
def test_bars_fit(tmp_path: Path, title: str) -> None:
    categories = ["cnn15_plain", "cnn15_skip1", "cnn15_skip2 with a long name", "resnet152", "vgg16_bn"]
    series = {"final test accuracy (%)": [91.2, None, 88.0, 87.5, 90.1], "seed 004 expected (%)": [85, 86, 87, 88, 89]}
    figure = plots.bars_figure(categories, series, ylabel="test accuracy (%)", title=title,
                               errors={"final test accuracy (%)": [0.5, None, 1.0, 0.2, 0.3]})
    assert_fits(figure)
    path = plots.plot_bars(tmp_path / "b.png", categories[:2], {"x": [1e-3, 2e-5]}, ylabel="y", title=title, log=True,
                           value_format="{:.1e}")
    assert path.stat().st_size > 1000


def test_layer_bars_fit_and_have_integer_ticks_beyond_40_layers(tmp_path: Path) -> None:
    names = [n.split("_", 1)[1] for n in LAYERS]
    panels = [("ResNet-18 (fresh batch after training)", names, [10.0 ** -i for i in range(15)]),
              ("PlainNet-18 with a long panel title that must wrap to its own column", names, [1.0] * 15)]
    figure = plots.layer_bars_figure(panels, ylabel="gradient L2 norm (log)", title=LONG_TITLE, log=True)
    assert_fits(figure)
    many = [f"layer{i}" for i in range(60)]
    figure = plots.layer_bars_figure([("deep", many, list(np.linspace(1, 2, 60)))], ylabel="norm", title="deep")
    assert_fits(figure)
    assert_integer_ticks(figure.axes[0])
    assert plots.plot_layer_bars(tmp_path / "l.png", panels, ylabel="g", title="t", log=True).stat().st_size > 1000


@pytest.mark.parametrize("filters,title", [(1, LONG_TITLE), (64, f"{RUN}: first-layer weights (64 units)")])
def test_weight_grid_fits(tmp_path: Path, filters: int, title: str) -> None:
    weights = np.random.default_rng(0).normal(size=(filters, 3, 5, 5))
    figure = plots.weight_grid_figure(weights, title)
    assert_fits(figure)
    assert figure._suptitle.get_text().replace("\n", " ") == title
    assert plots.plot_weight_grid(weights, tmp_path / "w.png", title).stat().st_size > 500


# ------------------------------------------------------------------------------------ search/report.py
def search_summary(model: str = "cnn_tanh", seeds=(0, 1, 2), predicted: float | None = 11.6) -> dict:
    probes = []
    for seed in seeds:
        for depth in range(3, 25, 3):
            error = 0.1 if depth <= 12 else 0.9  # identical for every seed
            probes.append({"seed": seed, "depth": depth, "error": None if depth == 24 else error,
                           "diverged": depth == 24})
    return {"seeds": list(seeds), "probes": probes, "threshold": 0.5, "max_trainable": 12, "lower": 3, "upper": 24,
            "seed_reported_max": 9, "mean_field_predicted_max": predicted, "epochs": 1, "metric": "test_error",
            "init": "seed", "model": model, "dataset": "fashion_mnist"}


@pytest.mark.parametrize("model,predicted", [("cnn_tanh", 11.6), (LONG_TITLE.replace(" ", "_")[:90], float("inf"))])
def test_search_figure_fits_names_the_search_and_has_integer_depths(model: str, predicted: float) -> None:
    figure = search_figure(search_summary(model, predicted=predicted))
    assert_fits(figure)
    axis = figure.axes[0]
    assert "fashion_mnist" in axis.get_title()
    assert_integer_ticks(axis)
    seeds = [line for line in data_lines(axis) if line.get_label() in ("seed 0", "seed 1", "seed 2")]
    assert len(seeds) == 3 and all(line.get_marker() not in (None, "None", "") for line in seeds)
    assert len({(line.get_marker(), line.get_markersize()) for line in seeds}) == 3  # identical seeds stay visible


# ------------------------------------------------------------------------------------ seed004.py
@pytest.mark.parametrize("blocks", [1, 3, 16])
def test_channel_bars_fit_and_have_integer_channel_ticks(tmp_path: Path, blocks: int) -> None:
    stats = [{"block": b, "channel_abs_mean": list(np.linspace(0.01, 0.5, 16))} for b in range(blocks)]
    figure = _channel_bars(stats, None, "after training (eval mode)", title="resnet_deep · cifar10 · version_0")
    assert_fits(figure)
    assert figure._suptitle.get_text().startswith("resnet_deep · cifar10")
    for axis in figure.axes[:blocks]:
        assert_integer_ticks(axis)
    path = _channel_bars(stats, tmp_path / "channels.png", "at init")
    assert path == tmp_path / "channels.png" and path.stat().st_size > 1000
