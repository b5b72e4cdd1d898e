"""deeplab.theory.mean_field: known values of the mean-field theory of signal propagation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deeplab.theory import mean_field as mf
from deeplab.errors import DeeplabError
from deeplab.search.prediction import predict_for_model


def _dense_mean(f, scale):
    # brute force E_z[f(scale z)]: trapezoid on a fine grid
    z = np.linspace(-12, 12, 400_000)  # even: no node on the kink at 0
    density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return float(np.trapezoid(f(scale * z) * density, z))


@pytest.mark.parametrize("activation", ["tanh", "elu", "relu", "sigmoid"])
@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0, 30.0])
def test_quadrature_matches_brute_force(activation, scale):
    phi, dphi, _ = mf._functions(activation)
    for f in (lambda x: phi(x) ** 2, lambda x: dphi(x) ** 2):
        assert mf._gauss_mean(f, scale) == pytest.approx(_dense_mean(f, scale), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("sigma_w2", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_tanh_without_bias_collapses_and_chi1_is_sigma_w2(sigma_w2):
    result = mf.analyze("tanh", sigma_w2, 0.0)
    assert result.q_star == 0.0
    assert result.chi1 == pytest.approx(sigma_w2, rel=1e-9)
    assert result.c_star == 1.0 and result.chi_c == result.chi1
    if sigma_w2 < 1:
        assert result.depth_scale == pytest.approx(-1 / math.log(sigma_w2))
        assert result.predicted_max_depth == pytest.approx(6 * result.depth_scale)
    else:
        assert math.isinf(result.depth_scale) and math.isinf(result.predicted_max_depth)


@pytest.mark.parametrize(
    "activation, sigma_b2, expected, tolerance",
    [("tanh", 0.0, 1.0, 1e-4), ("relu", 0.0, 2.0, 1e-6), ("linear", 0.0, 1.0, 1e-6), ("elu", 0.0, 1.0, 1e-3)],
)
def test_known_critical_points(activation, sigma_b2, expected, tolerance):
    assert mf.critical_sigma_w2(activation, sigma_b2) == pytest.approx(expected, abs=tolerance)


def test_tanh_critical_line_with_bias():
    sigma_w2 = mf.critical_sigma_w2("tanh", 1e-4)
    result = mf.analyze("tanh", sigma_w2, 1e-4)
    assert 1.0 < sigma_w2 < 1.2
    assert result.q_star > 0
    assert result.chi1 == pytest.approx(1.0, abs=1e-8)
    assert math.isinf(result.depth_scale)
    # off the line on either side: ordered below, chaotic above
    assert mf.analyze("tanh", sigma_w2 * 0.9, 1e-4).chi1 < 1 < mf.analyze("tanh", sigma_w2 * 1.1, 1e-4).chi1


def test_relu_length_map():
    assert mf.q_star("relu", 2.0, 0.0, q0=3.7) == 3.7  # the map is the identity: every q is fixed
    assert mf.q_star("relu", 1.0, 0.0) == 0.0
    assert mf.q_star("relu", 3.0, 0.0) == math.inf
    assert mf.q_star("relu", 1.0, 0.5) == pytest.approx(1.0)  # q = q/2 + 1/2
    for sigma_w2 in (1.0, 2.0, 3.0):
        assert mf.chi1("relu", sigma_w2, 1.0) == pytest.approx(sigma_w2 / 2, rel=1e-12)


def test_linear_fixed_point():
    assert mf.q_star("linear", 0.5, 0.3) == pytest.approx(0.3 / (1 - 0.5))
    assert mf.chi1("linear", 0.5, 0.6) == pytest.approx(0.5)


def test_q_star_is_where_iteration_converges():
    for activation, sigma_w2, sigma_b2 in [("tanh", 1.5, 0.05), ("elu", 1.3, 0.1), ("sigmoid", 4.0, 0.0)]:
        q = 1.0
        for _ in range(3000):
            q = mf._length_map(activation, sigma_w2, sigma_b2, q)
        assert mf.q_star(activation, sigma_w2, sigma_b2) == pytest.approx(q, rel=1e-6)


def test_chaotic_tanh_correlation_depth_scale():
    result = mf.analyze("tanh", 2.0, 0.0)
    assert result.chi1 > 1  # chaotic
    assert abs(result.c_star) < 1e-6  # odd φ and no bias: uncorrelated fixed point
    assert 0 < result.chi_c < 1  # stable fixed point of the correlation map
    assert result.depth_scale == pytest.approx(-1 / math.log(result.chi_c))


def test_depth_scale():
    assert math.isinf(mf.depth_scale(1.0))
    assert mf.depth_scale(math.exp(-1)) == pytest.approx(1.0)
    assert mf.depth_scale(0.0) == 0.0


def test_bad_arguments():
    with pytest.raises(DeeplabError, match="unknown activation"):
        mf.analyze("swish", 1.0, 0.0)
    with pytest.raises(DeeplabError, match="variances"):
        mf.analyze("tanh", -1.0, 0.0)


# --- predictions for seed 002's families ------------------------------------------------


def test_cnn_tanh_seed_init_prediction():
    # N(0, std 0.05): σ_w² = 0.0225·C_in; geometric mean over C_in = 4, 8, 16 is 0.18
    result = predict_for_model("cnn_tanh")
    assert result["sigma_w2"] == pytest.approx(0.18)
    assert result["sigma_b2"] == 0.0
    assert result["q_star"] == 0.0
    assert result["chi1"] == pytest.approx(0.18)
    assert result["depth_scale"] == pytest.approx(-1 / math.log(0.18))
    assert result["predicted_max_depth"] == pytest.approx(6 / -math.log(0.18))  # ≈ 3.5; the seed found 3
    assert result["seed_max_depth"] == 3 and result["reason"] is None
    exact = predict_for_model("cnn_tanh", depth=6)
    assert exact["sigma_w2_by_layer"][(1, 4)] == pytest.approx(0.0225)
    assert exact["sigma_w2_by_layer"][(16, 16)] == pytest.approx(0.36)


@pytest.mark.parametrize("family", ["cnn_tanh_newinit", "cnn_elu"])
def test_fan_in_init_is_critical(family):
    result = predict_for_model(family)
    assert result["sigma_w2"] == pytest.approx(1.0)
    assert result["q_star"] == 0.0
    assert result["chi1"] == pytest.approx(1.0, abs=1e-9)
    assert math.isinf(result["predicted_max_depth"])


@pytest.mark.parametrize("family", ["cnn_elu_bn", "resnet_elu", "cnn_tanh_bn_oldinit", "resnet_elu_nobn"])
def test_batch_norm_and_residual_families_decline(family):
    result = predict_for_model(family)
    assert result["predicted_max_depth"] is None and result["chi1"] is None
    assert result["reason"]


def test_prediction_for_other_inits():
    assert predict_for_model("cnn_tanh", "kaiming")["chi1"] > 1  # σ_w² = 2: chaotic for tanh
    delta = predict_for_model("cnn_elu", "delta_orthogonal")
    assert delta["sigma_b2"] == 1e-4 and delta["chi1"] == pytest.approx(1.0, abs=1e-8)


def test_prediction_errors():
    with pytest.raises(DeeplabError, match="not a seed 002 family"):
        predict_for_model("cnn15_plain")
    with pytest.raises(DeeplabError, match="residual"):
        predict_for_model("cnn_tanh", "fixup")
    with pytest.raises(DeeplabError, match="multiple of 3"):
        predict_for_model("cnn_tanh", depth=4)
