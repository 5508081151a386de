"""The synthetic weight generator: exact power-law spectra, He norm, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kurtosis

from deepx_opt.zoo.weights import (
    SPECTRUM_ALPHA,
    layer_rng,
    power_law_spectrum,
    spectral_conv_weight,
    spectral_matrix,
)


def _sv(w: np.ndarray) -> np.ndarray:
    return np.linalg.svd(w.astype(np.float64), compute_uv=False)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 3), (64, 576), (300, 200), (10, 128), (513, 1000)])
@pytest.mark.parametrize("alpha", [0.0, SPECTRUM_ALPHA, 1.0])
def test_spectrum_is_the_requested_power_law_with_he_norm(shape, alpha):
    m, n = shape
    w = spectral_matrix(m, n, np.random.default_rng(3), alpha=alpha)
    assert w.shape == shape and w.dtype == np.float32 and w.flags.c_contiguous
    expected = power_law_spectrum(min(m, n), np.sqrt(2.0 * m), alpha=alpha)
    np.testing.assert_allclose(_sv(w), expected, rtol=2e-5, atol=2e-6 * expected[0])


def test_explicit_fan_in_sets_the_norm():
    w = spectral_matrix(20, 30, np.random.default_rng(0), fan_in=120)
    assert np.linalg.norm(w) == pytest.approx(np.sqrt(2.0 * 20 * 30 / 120), rel=1e-5)


def test_entries_look_like_a_haar_random_factorisation():
    # Structured transforms must not leave visible structure: no column or row carries a disproportionate
    # share, and the entries are near-Gaussian (excess kurtosis of a Haar-random U·diag(s)·Vᵀ of this shape
    # is about 0.2).
    w = spectral_matrix(256, 2304, np.random.default_rng(0)).astype(np.float64)
    cols, rows = np.linalg.norm(w, axis=0), np.linalg.norm(w, axis=1)
    assert cols.std() / cols.mean() < 0.2 and rows.std() / rows.mean() < 0.2
    assert abs(kurtosis(w.ravel())) < 0.5
    assert abs(w.mean()) < 0.05 * w.std()


def test_deterministic_per_layer_name():
    a = spectral_matrix(50, 70, layer_rng(0, "fc1"))
    b = spectral_matrix(50, 70, layer_rng(0, "fc1"))
    c = spectral_matrix(50, 70, layer_rng(0, "fc2"))
    d = spectral_matrix(50, 70, layer_rng(1, "fc1"))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_grouped_conv_weight_has_a_power_law_spectrum_per_group():
    w = spectral_conv_weight(128, 48, 5, 5, 2, np.random.default_rng(0))
    assert w.shape == (128, 48, 5, 5)
    mats = np.split(w.reshape(128, -1), 2, axis=0)
    expected = power_law_spectrum(64, np.sqrt(2.0 * 64))
    for mat in mats:
        np.testing.assert_allclose(_sv(mat), expected, rtol=2e-5)
    assert not np.allclose(mats[0], mats[1])


def test_depthwise_conv_weight_rows_have_he_norm():
    w = spectral_conv_weight(32, 1, 3, 3, 32, np.random.default_rng(0))
    assert w.shape == (32, 1, 3, 3)
    np.testing.assert_allclose(np.linalg.norm(w.reshape(32, -1), axis=1), np.sqrt(2.0), rtol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="group"):
        spectral_conv_weight(10, 1, 3, 3, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        spectral_matrix(0, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 1"):
        power_law_spectrum(0, 1.0)
