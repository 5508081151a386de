"""The log-error fit falls back to the non-negative least-squares solution when scipy's solver fails."""

import numpy as np
import scipy.optimize

from deepx_opt.cost_models import latency


def test_fit_log_falls_back_to_nnls_when_every_start_fails(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.uniform(1e3, 1e6, size=(40, 2))
    y = 5.0 + 2e-3 * X[:, 0] + 1e-4 * X[:, 1]

    def broken(*args, **kwargs):
        raise ValueError("`x` is not within the trust region.")

    monkeypatch.setattr(scipy.optimize, "least_squares", broken)
    coef = latency._fit_log("linear", X, y)
    np.testing.assert_allclose(coef, latency._fit_nnls(X, y))
    np.testing.assert_allclose(coef, [5.0, 2e-3, 1e-4], rtol=1e-3)  # the fallback still recovers the truth
