"""Power models of the calibrated processors, fitted from measured energy where the hardware has a counter.

Most machines have no energy counter that deepx_opt can read (no RAPL in these VMs): their powers are
modelled (:data:`deepx_opt.cost_models.calibrate.DEFAULT_POWER_W` or ``deepx calibrate --power``) and a
block costs ``active_power_w × latency``. On an NVIDIA GPU with ``pynvml`` (nvidia-ml-py),
:func:`calibrate_power` measures the board's energy with NVML's total-energy counter over back-to-back runs
of work of different intensities — a few grid ops in a loop (a large convolution, a large GEMM, a GEMV that
streams a large weight, a tiny launch-bound op) and the zoo models run whole by the runtime executor, dense
and factorised — and fits a :class:`PowerModel` to them:

``energy_uj(block) = Σ_i coef_[i] · feature_i(block)``  (every coefficient ≥ 0)

with features drawn from

============  ======================================================  ============================
feature       value for a block of latency ``t`` µs and works ``w``   coefficient's unit
============  ======================================================  ============================
``time_us``   ``t`` (the block's latency: kernels *and* host waits)    W (the "waiting" power)
``busy_us``   ``min(t, Σ flops / flops_per_us + Σ bytes / bytes_per_us)``  W (extra power while busy)
``flops``     ``Σ w.flops``                                            µJ per FLOP
``bytes``     ``Σ w.bytes`` (inputs + weights + outputs)               µJ per byte
``steps``     executed ops (kernel launches)                           µJ per launch
``runs``      0 for a block; 1 per whole inference                     µJ per run
============  ======================================================  ============================

Candidate forms (:data:`CANDIDATES`): ``constant`` (one power × time, as before), ``linear``
(waiting power × time + energy per FLOP, per byte[, per launch]) and ``utilisation`` (``P_wait·t + ΔP·busy``,
i.e. ``P = P_wait + ΔP·u`` with ``u = min(1, roofline kernel time / t)``), each with or without a per-run
energy. Each is fitted by non-negative least squares on the *relative* error (energies span 0.01–300 mJ);
the form used is the one with the lowest leave-one-model-out error on the whole-model runs (every zoo
model's runs predicted by a fit without them), the simpler one when two are within
:data:`SELECT_TOLERANCE_PCT` points. The ``runs`` term is the energy the board spends per inference outside
the blocks (the executor's per-run set-up, input upload, output read-back: the GPU draws near idle power
then); it is a constant per processor used, so the planner's per-option energies leave it out and
:func:`~deepx_opt.cost_models.energy.plan_energy_uj` adds it once per processor that runs blocks.

Example
-------
>>> from deepx_opt.cost_models.latency import OpWork
>>> m = PowerModel(["time_us", "flops", "runs"], coef_=[100.0, 2e-5, 10.0])
>>> w = OpWork("gemm", flops=1e6, bytes=4e6)
>>> m.predict_block_uj([w], 50.0)            # 100 W × 50 µs + 2e-5 µJ/FLOP × 1e6 FLOP
5020.0
>>> m.predict_run_uj([(50.0, [w])])          # one inference of that one block, + 10 µJ per run
5030.0
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from deepx_opt.errors import CostModelError, ProfileError

__all__ = ["PowerModel", "PowerSample", "POWER_FEATURES", "CANDIDATES", "SELECT_TOLERANCE_PCT", "LOOP_FIT_TOLERANCE_PCT",
           "fit_power_model", "calibrate_power", "measure_op_loop", "measure_model_run", "primed_block_us",
           "refit_power_model", "sample_to_list",
           "sample_from_list"]

#: Features a power model may use (see the module docstring).
POWER_FEATURES = ("time_us", "busy_us", "flops", "bytes", "steps", "runs")

#: Candidate forms fitted by :func:`fit_power_model`: name → (family, features).
CANDIDATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "constant": ("constant", ("time_us",)),
    "constant+run": ("constant", ("time_us", "runs")),
    "linear": ("linear", ("time_us", "flops", "bytes")),
    "linear+run": ("linear", ("time_us", "flops", "bytes", "runs")),
    "linear+steps+run": ("linear", ("time_us", "steps", "flops", "bytes", "runs")),
    "utilisation": ("utilisation", ("time_us", "busy_us")),
    "utilisation+run": ("utilisation", ("time_us", "busy_us", "runs")),
}

#: Candidates whose leave-one-model-out error is within this many percentage points of the best one count as
#: equally good; the one with fewest features is used.
SELECT_TOLERANCE_PCT = 1.0

#: A candidate must fit the op loops it is trained on within this mean |error| (%) to be eligible (see
#: :func:`fit_power_model`).
LOOP_FIT_TOLERANCE_PCT = 15.0

#: Multipliers of the highest throughputs seen in the samples tried as the roofline's FLOP and byte rates of
#: the ``busy_us`` feature (the rates are picked by training error, with the coefficients).
_RATE_MULTIPLIERS = tuple(float(x) for x in np.geomspace(0.25, 4.0, 9))


# ------------------------------------------------------------------------------------------ samples

@dataclass(frozen=True)
class PowerSample:
    """One energy measurement: ``energy_uj`` per run (NVML, averaged over back-to-back runs), and the blocks
    of one run, each ``(latency_us, works)``.

    ``runs`` is 1 for a whole inference run by the executor (its energy includes the per-run set-up between
    the blocks) and 0 for an op run in a loop (one "block" per call, nothing else). ``group`` is what
    leave-one-out holds out together (the zoo model; ``"grid"`` for op loops). ``wall_us`` is the measured
    wall time per run (blocks and everything between them)."""

    label: str
    group: str
    energy_uj: float
    blocks: tuple
    runs: float = 1.0
    wall_us: float = 0.0

    @property
    def time_us(self) -> float:
        """Sum of the blocks' latencies (what the latency model predicts for one run)."""
        return float(sum(t for t, _ in self.blocks))


def _work_to_list(w) -> list:
    return [w.kind, w.op_type, float(w.flops), float(w.bytes), w.variant, float(w.im2col_bytes),
            float(w.context_bytes), [int(v) for v in w.dims]]


def _work_from_list(x: Sequence) -> Any:
    """Inverse of :func:`_work_to_list` (also reads the earlier formats, without im2col and context bytes or
    without dims)."""
    from deepx_opt.cost_models.latency import OpWork

    kind, op_type, flops, nbytes, variant = x[:5]
    im2col, ctx = (float(x[5]), float(x[6])) if len(x) >= 7 else (0.0, 0.0)
    dims = tuple(int(v) for v in x[7]) if len(x) >= 8 else ()
    return OpWork(kind=str(kind), flops=float(flops), bytes=float(nbytes), op_type=str(op_type),
                  variant=str(variant), im2col_bytes=im2col, context_bytes=ctx, dims=dims)


def sample_to_list(s: PowerSample) -> list:
    """A JSON-able form of a sample (kept in the profile so that a fit can be re-made or checked)."""
    return [s.label, s.group, float(s.energy_uj), float(s.runs), float(s.wall_us),
            [[float(t), [_work_to_list(w) for w in ws]] for t, ws in s.blocks]]


def sample_from_list(x: Sequence) -> PowerSample:
    """Inverse of :func:`sample_to_list`."""
    label, group, e, runs, wall, blocks = x
    return PowerSample(str(label), str(group), float(e), tuple((float(t), tuple(_work_from_list(w) for w in ws))
                                                                 for t, ws in blocks), float(runs), float(wall))


# ------------------------------------------------------------------------------------------ the model

def _steps(works: Sequence[Any]) -> float:
    """Ops that launch work (views such as Reshape move no data and launch nothing)."""
    return float(sum(1 for w in works if w.bytes > 0 or w.flops > 0))


class PowerModel:
    """Energy of a block on one processor from its works and its latency (estimator contract: :meth:`fit`
    returns self, fitted attributes end in ``_``).

    Parameters
    ----------
    features : sequence of str
        From :data:`POWER_FEATURES`; must include ``time_us``.
    family : str, optional
        A label: ``constant``, ``linear`` or ``utilisation`` (default: inferred from the features).
    flops_per_us, bytes_per_us : float, optional
        Roofline rates of the ``busy_us`` feature (fitted when not given).
    coef_ : sequence of float, optional
        Fitted coefficients (≥ 0), one per feature, in the units of the module docstring's table.
    """

    def __init__(self, features: Sequence[str] = ("time_us",), *, family: str | None = None,
                 flops_per_us: float | None = None, bytes_per_us: float | None = None,
                 coef_: Sequence[float] | None = None, fit_: Mapping[str, Any] | None = None) -> None:
        features = tuple(str(f) for f in features)
        bad = [f for f in features if f not in POWER_FEATURES]
        if bad:
            raise CostModelError(f"power model features {bad} unknown; accepted: {', '.join(POWER_FEATURES)}")
        if "time_us" not in features or len(set(features)) != len(features):
            raise CostModelError(f"power model features {list(features)}: need time_us, each feature once")
        self.features = features
        self.family = family or ("utilisation" if "busy_us" in features else
                                 "constant" if set(features) <= {"time_us", "runs"} else "linear")
        self.flops_per_us = None if flops_per_us is None else float(flops_per_us)
        self.bytes_per_us = None if bytes_per_us is None else float(bytes_per_us)
        self.coef_ = None if coef_ is None else np.asarray(coef_, dtype=float)
        self.loop_power_w_: float | None = None
        self.fit_ = dict(fit_ or {})

    # ---------------------------------------------------------------- features and predictions
    def block_features(self, works: Sequence[Any], latency_us: float, *, flops_per_us: float | None = None,
                       bytes_per_us: float | None = None) -> np.ndarray:
        """Feature vector of one block (``runs`` is 0 for a block)."""
        t = float(latency_us)
        fl = float(sum(w.flops for w in works))
        by = float(sum(w.bytes for w in works))
        out = []
        for f in self.features:
            if f == "time_us":
                out.append(t)
            elif f == "flops":
                out.append(fl)
            elif f == "bytes":
                out.append(by)
            elif f == "steps":
                out.append(_steps(works))
            elif f == "runs":
                out.append(0.0)
            else:  # busy_us
                fr = flops_per_us if flops_per_us is not None else self.flops_per_us
                br = bytes_per_us if bytes_per_us is not None else self.bytes_per_us
                if not fr or not br:
                    raise CostModelError("power model feature busy_us needs flops_per_us and bytes_per_us > 0")
                out.append(min(t, fl / fr + by / br))
        return np.array(out, dtype=float)

    def sample_features(self, sample: PowerSample, **rates) -> np.ndarray:
        """Feature vector of one measured run: the sum over its blocks, plus ``runs``."""
        x = np.zeros(len(self.features))
        for t, ws in sample.blocks:
            x += self.block_features(ws, t, **rates)
        if "runs" in self.features:
            x[self.features.index("runs")] = float(sample.runs)
        return x

    def _coef(self) -> np.ndarray:
        if self.coef_ is None:
            raise CostModelError(f"power model ({self.family}: {', '.join(self.features)}) is not fitted")
        return self.coef_

    def predict_block_uj(self, works: Sequence[Any], latency_us: float) -> float:
        """Energy (µJ) of one block of predicted latency ``latency_us`` µs doing ``works``."""
        if not latency_us >= 0:
            raise CostModelError(f"block latency {latency_us!r} µs; expected a number >= 0")
        return float(self._coef() @ self.block_features(works, latency_us))

    @property
    def run_energy_uj(self) -> float:
        """Energy (µJ) per inference outside the blocks (0 unless the model has the ``runs`` feature)."""
        return float(self._coef()[self.features.index("runs")]) if "runs" in self.features else 0.0

    def predict_run_uj(self, blocks: Iterable[tuple[float, Sequence[Any]]], runs: float = 1.0) -> float:
        """Energy (µJ) of ``runs`` inferences whose blocks are ``(latency_us, works)``, plus the per-run
        energy once per run."""
        return float(sum(self.predict_block_uj(ws, t) for t, ws in blocks) + self.run_energy_uj * runs)

    def power_w(self, works: Sequence[Any], latency_us: float) -> float:
        """Mean power (W) of a block: its energy over its latency."""
        return self.predict_block_uj(works, latency_us) / latency_us if latency_us > 0 else 0.0

    @property
    def waiting_power_w(self) -> float:
        """Power (W) of the processor while it waits inside a block (the ``time_us`` coefficient)."""
        return float(self._coef()[self.features.index("time_us")])

    # ---------------------------------------------------------------- fit
    def _design(self, samples: Sequence[PowerSample], split: bool, **rates) -> np.ndarray:
        """Feature matrix of measured samples; with ``split``, the op loops' time goes to a column of its
        own (see :meth:`fit`)."""
        X = np.array([self.sample_features(s, **rates) for s in samples])
        if split:
            i = self.features.index("time_us")
            loop = np.array([s.runs == 0 for s in samples])
            extra = np.where(loop, X[:, i], 0.0)
            X[loop, i] = 0.0
            X = np.column_stack([X, extra])
        return X

    def fit(self, samples: Sequence[PowerSample]) -> "PowerModel":
        """Fit the coefficients (and, for ``busy_us`` without given rates, the roofline rates) by
        non-negative least squares on the relative error of each sample's energy. Returns self.

        When both whole-model runs and op loops are given, the loops' time has a coefficient of its own
        (``loop_power_w_``, not used for predictions): a loop's time is the op's real time back to back,
        while a run's block latencies are on the latency model's footing (the primed minimum, or its
        predictions), which back-to-back inference exceeds (host waits, clocks); the ``time_us``
        coefficient is then the power *per predicted µs*, learnt from the runs, while the loops pin the
        work's own energy (FLOPs, bytes, busy time)."""
        samples = [s for s in samples if s.energy_uj > 0]
        split = any(s.runs > 0 for s in samples) and any(s.runs == 0 for s in samples)
        if len(samples) < len(self.features) + split:
            raise CostModelError(f"power model with {len(self.features)} features needs at least that many "
                                 f"samples with energy > 0 (one more with op loops); got {len(samples)}")
        y = np.array([s.energy_uj for s in samples])
        if "busy_us" in self.features and (self.flops_per_us is None or self.bytes_per_us is None):
            f0, b0 = _peak_rates(samples)
            best = None
            for mf in _RATE_MULTIPLIERS:
                for mb in _RATE_MULTIPLIERS:
                    rates = {"flops_per_us": f0 * mf, "bytes_per_us": b0 * mb}
                    c, r = _nnls_rel(self._design(samples, split, **rates), y)
                    if best is None or r < best[0] - 1e-12:
                        best = (r, c, rates)
            _, c, rates = best
            self.flops_per_us, self.bytes_per_us = rates["flops_per_us"], rates["bytes_per_us"]
        else:
            c, _ = _nnls_rel(self._design(samples, split), y)
        self.coef_ = c[:len(self.features)]
        self.loop_power_w_ = float(c[-1]) if split else None
        return self

    def predict_samples_uj(self, samples: Sequence[PowerSample]) -> np.ndarray:
        """Predicted energy (µJ) of each measured sample from its block latencies (op loops at the loops'
        own power when the fit had one)."""
        c = self._coef()
        lp = getattr(self, "loop_power_w_", None)
        if lp is not None:
            return self._design(samples, True) @ np.append(c, lp)
        return np.array([float(c @ self.sample_features(s)) for s in samples])

    # ---------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        d: dict[str, Any] = {"family": self.family, "features": list(self.features),
                             "coef_": None if self.coef_ is None else [float(c) for c in self.coef_]}
        if "busy_us" in self.features:
            d["flops_per_us"] = self.flops_per_us
            d["bytes_per_us"] = self.bytes_per_us
        if self.fit_:
            d["fit"] = self.fit_
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "PowerModel":
        """Validate and build a fitted model from :meth:`to_dict`'s form.

        Raises
        ------
        ProfileError
            naming the field (``features``, ``coef_``, ``flops_per_us``, ...), the bad value and what is
            accepted.
        """
        if not isinstance(d, Mapping):
            raise ProfileError(f"{type(d).__name__} given; expected an object with family, features, coef_")
        feats = d.get("features")
        if not isinstance(feats, list) or not feats or not all(isinstance(f, str) for f in feats):
            raise ProfileError(f"field features: {feats!r}; expected a non-empty list of names from "
                               f"{', '.join(POWER_FEATURES)}")
        bad = [f for f in feats if f not in POWER_FEATURES]
        if bad:
            raise ProfileError(f"field features: unknown {bad}; accepted: {', '.join(POWER_FEATURES)}")
        if "time_us" not in feats or len(set(feats)) != len(feats):
            raise ProfileError(f"field features: {feats!r}; must include time_us, each feature once")
        fam = d.get("family")
        if fam not in ("constant", "linear", "utilisation"):
            raise ProfileError(f"field family: {fam!r}; accepted: constant, linear, utilisation")
        coef = d.get("coef_")
        if (not isinstance(coef, list) or len(coef) != len(feats)
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coef)):
            raise ProfileError(f"field coef_: {coef!r}; expected {len(feats)} numbers, one per feature {feats}")
        if not all(math.isfinite(c) and c >= 0 for c in coef):
            raise ProfileError(f"field coef_: {coef!r}; every coefficient must be finite and >= 0")
        rates = {}
        if "busy_us" in feats:
            for k in ("flops_per_us", "bytes_per_us"):
                v = d.get(k)
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                    raise ProfileError(f"field {k}: {v!r}; feature busy_us needs a finite number > 0")
                rates[k] = float(v)
        fit = d.get("fit") or {}
        if not isinstance(fit, Mapping):
            raise ProfileError(f"field fit: {type(fit).__name__} given; expected an object (fit report)")
        return cls(feats, family=fam, coef_=coef, fit_=fit, **rates)

    def __repr__(self) -> str:
        c = "unfitted" if self.coef_ is None else ", ".join(f"{f}={v:.4g}" for f, v in zip(self.features, self.coef_))
        return f"PowerModel({self.family}: {c})"


def _peak_rates(samples: Sequence[PowerSample]) -> tuple[float, float]:
    """Highest FLOP and byte rates (per µs) of any block of the samples (the base of the roofline rates)."""
    f0 = b0 = 0.0
    for s in samples:
        for t, ws in s.blocks:
            if t > 0:
                f0 = max(f0, sum(w.flops for w in ws) / t)
                b0 = max(b0, sum(w.bytes for w in ws) / t)
    return max(f0, 1.0), max(b0, 1.0)


def _nnls_rel(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """min Σ ((X c − y) / y)² over c ≥ 0; columns scaled for conditioning. Returns (c, residual)."""
    from scipy.optimize import nnls

    A = X / y[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    c, r = nnls(A / scale, np.ones(len(y)))
    return c / scale, float(r)


# ------------------------------------------------------------------------------------------ selection

def fit_power_model(samples: Sequence[PowerSample], candidates: Sequence[str] | None = None
                    ) -> tuple[PowerModel, dict]:
    """Fit every candidate form and keep the one that predicts held-out whole-model runs best.

    Each candidate (:data:`CANDIDATES`) is scored by its leave-one-model-out mean |relative error| on the
    whole-model runs (``runs > 0``): every zoo model's runs predicted by a fit on all the other samples (op
    loops always included; with fewer than three models, each run is held out alone). Only forms that fit
    the op loops themselves within :data:`LOOP_FIT_TOLERANCE_PCT` (in-sample) are eligible — a form that
    cannot tell a memory-streaming kernel from a waiting GPU (``constant``: the GEMV loop draws ~400 W, a
    launch-bound loop ~idle) would misprice heavy blocks for the planner, which whole small models do not
    show (all eligible when none is, or without loops). The used form is the best eligible one, or the one
    with fewest features among those within :data:`SELECT_TOLERANCE_PCT` points of it; it is then refitted
    on every sample.

    Returns
    -------
    (PowerModel, dict)
        The fitted model (its ``fit_`` holds the report too) and the report: per candidate its features,
        training MAPE (%) on the runs and on the loops, leave-one-out MAPE (%) and largest error on the
        runs, eligibility; the chosen name; the number of samples.

    Raises
    ------
    CostModelError
        with fewer than 3 samples of positive energy, or an unknown candidate name.
    """
    samples = [s for s in samples if s.energy_uj > 0]
    if len(samples) < 3:
        raise CostModelError(f"a power model needs at least 3 energy samples; got {len(samples)}")
    names = list(candidates or CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise CostModelError(f"unknown power-model candidates {unknown}; accepted: {', '.join(CANDIDATES)}")
    groups = sorted({s.group for s in samples if s.runs > 0})
    by_model = len(groups) >= 3
    folds = [[i for i, s in enumerate(samples) if s.runs > 0 and s.group == g] for g in groups] if by_model else \
        [[i] for i, s in enumerate(samples) if s.runs > 0]
    y = np.array([s.energy_uj for s in samples])
    is_run = np.array([s.runs > 0 for s in samples])
    rows = []

    def mean(a):
        a = a[~np.isnan(a)]
        return float(np.mean(a)) if len(a) else float("inf")

    for name in names:
        fam, feats = CANDIDATES[name]
        if len(samples) < len(feats) + 2:
            continue
        m = PowerModel(feats, family=fam).fit(samples)
        rel = np.abs(m.predict_samples_uj(samples) - y) / y * 100
        held = np.full(len(samples), np.nan)
        for idx in folds:
            train = [s for i, s in enumerate(samples) if i not in idx]
            if len(train) < len(feats) + 1:
                continue
            mi = PowerModel(feats, family=fam).fit(train)
            held[idx] = np.abs(mi.predict_samples_uj([samples[i] for i in idx]) - y[idx]) / y[idx] * 100
        loops_fit = mean(rel[~is_run]) if (~is_run).any() else 0.0
        rows.append({"name": name, "family": fam, "features": list(feats),
                     "train_mape_pct": mean(rel[is_run]) if is_run.any() else mean(rel),
                     "train_loops_mape_pct": loops_fit,
                     "loo_mape_pct": mean(held),
                     "loo_max_pct": float(np.nanmax(held)) if not np.isnan(held).all() else float("inf"),
                     "eligible": bool(loops_fit <= LOOP_FIT_TOLERANCE_PCT)})
    if not rows:
        raise CostModelError(f"no power-model candidate can be fitted on {len(samples)} samples")
    pool = [r for r in rows if r["eligible"]] or rows
    best = min(r["loo_mape_pct"] for r in pool)
    ok = [r for r in pool if r["loo_mape_pct"] <= best + SELECT_TOLERANCE_PCT]
    chosen = min(ok, key=lambda r: (len(r["features"]), r["loo_mape_pct"]))
    fam, feats = CANDIDATES[chosen["name"]]
    model = PowerModel(feats, family=fam).fit(samples)
    report = {"chosen": chosen["name"], "samples": len(samples), "groups": groups,
              "held_out": "model" if by_model else "sample", "candidates": rows,
              "loo_mape_pct": chosen["loo_mape_pct"], "train_mape_pct": chosen["train_mape_pct"]}
    model.fit_ = dict(report)
    return model, report


# ------------------------------------------------------------------------------------------ measuring

def _nvml_meter(backend: Any):
    """The executor's NVML energy meter for an NVIDIA OpenCL backend, or None."""
    from deepx_opt.runtime.executor import _NvmlEnergy

    m = _NvmlEnergy([backend])
    return m if m.handles else None


def measure_op_loop(backend: Any, case: Any, meter: Any, *, window_s: float = 0.5, batch: int = 5,
                    label: str | None = None) -> PowerSample:
    """Energy per call of one grid op (``case``: calibration's ``_OpCase``) run back to back on ``backend``:
    ``batch`` calls per synchronisation (the queue stays busy), for at least ``window_s`` between two updates
    of ``meter``'s counter (the executor's ``_NvmlEnergy``, or a simulated one)."""
    from deepx_opt.cost_models.calibrate import _case_work

    rng = np.random.default_rng(0)
    hs = [None if s is None else backend.upload(rng.standard_normal(s).astype(np.float32)) for s in case.inputs]
    for _ in range(3):
        backend.run(case.op_type, hs, case.attrs)
    backend.synchronize()

    def one() -> None:
        for _ in range(batch):
            backend.run(case.op_type, hs, case.attrs)
        backend.synchronize()

    res = meter.measure(one, 3, float(window_s))
    calls = res["runs"] * batch
    t_us = res["seconds"] / calls * 1e6
    w = _case_work(case)
    name = label or f"{case.op_type}{'x'.join(str(d) for s in case.inputs[:2] if s for d in s)}"
    return PowerSample(name, "grid", res["energy_uj"] / calls, ((t_us, (w,)),), runs=0.0, wall_us=t_us)


def measure_model_run(processor: str, graph: Any, *, window_s: float = 0.5, reps: int = 10,
                      label: str | None = None, group: str | None = None,
                      predict_block_us: Callable[[Sequence[Any]], float] | None = None) -> PowerSample | None:
    """Whole-model energy per inference of ``graph`` run by the runtime executor on one processor
    (:func:`deepx_opt.runtime.executor.execute_graph` with NVML over ≥ ``window_s`` of back-to-back runs),
    None when its energy was not measured.

    The sample's block latencies are on the footing of the latency model's predictions, so that the fitted
    power model turns *predicted* latencies into the energy of back-to-back runs: ``predict_block_us(works)``
    per block when a predictor is given (block overhead included), else the blocks' latencies measured the way
    calibration measures them for the latency fit (:func:`~deepx_opt.cost_models.calibrate.
    measure_model_blocks`: after priming the processor, ``TIMING_STAT`` of the runs). (The runs inside the NVML
    window are slower than that on a GPU that light work leaves at low clocks; the fit absorbs the
    difference.)"""
    from deepx_opt.cost_models.calibrate import model_block_works
    from deepx_opt.runtime.executor import execute_graph

    works = model_block_works(graph)
    if predict_block_us is not None:
        times = {v: float(predict_block_us(ws)) for v, ws in works.items()}
    else:
        times = primed_block_us(processor, graph)
    rng = np.random.default_rng(0)
    x = {n: rng.standard_normal(i.shape).astype(i.dtype) for n, i in graph.inputs.items()}
    _, rep = execute_graph(graph, {v: processor for v in graph.layers()}, x, repeat=reps, warmup=3,
                           energy_window_s=window_s)
    if rep.energy_uj is None:
        return None
    blocks = tuple((float(times[v]), tuple(works[v])) for v in graph.layers())
    wall = rep.energy_window_s / rep.energy_runs * 1e6 if rep.energy_runs else 0.0
    return PowerSample(label or graph.name, group or graph.name, float(rep.energy_uj), blocks, 1.0, float(wall))


def primed_block_us(processor: str, graph: Any, *, warmup: int = 2, reps: int = 5) -> dict[str, float]:
    """Every block's latency (µs) measured as calibration measures the latency model's in-model samples
    (:func:`~deepx_opt.cost_models.calibrate.measure_model_blocks`: after :func:`~deepx_opt.cost_models.
    calibrate.prime`, host-synchronised blocks, :data:`~deepx_opt.cost_models.calibrate.TIMING_STAT` of ``reps``
    runs, no NVML reading)."""
    from deepx_opt.cost_models.calibrate import measure_model_blocks

    return measure_model_blocks(processor, graph, warmup=warmup, reps=reps)


def refit_power_model(profile: Any, processor: str) -> dict:
    """The processor's power model refitted with its zoo samples' block times re-based on the profile's own
    latency predictions (``block_overhead_us`` + the latency models of each block's works), i.e. what
    :func:`calibrate_power` fits when given the fitted ``latency_models``. Returns the new ``power_model``
    dict (the profile is not changed).

    Raises
    ------
    CostModelError
        when the processor has no power model with stored samples, or a work has no latency model.
    """
    from dataclasses import replace

    proc = profile.processor(processor)
    pm = proc.power_model or {}
    data = (pm.get("fit") or {}).get("samples_data")
    if not data:
        raise CostModelError(f"processor {processor!r} of profile {profile.name!r} has no power model with stored "
                             "samples (fit.samples_data) to refit")
    from deepx_opt.cost_models.latency import predict_works_us

    rebased = []
    for s in map(sample_from_list, data):
        if s.runs > 0:
            s = replace(s, blocks=tuple((predict_works_us(profile, processor, ws), ws) for _, ws in s.blocks))
        rebased.append(s)
    model, _ = fit_power_model(rebased)
    keep = {k: v for k, v in pm["fit"].items() if k in ("seconds", "idle_power_w", "loop_power_w")}
    model.fit_.update(keep, time_basis="predicted (refit from the stored samples)",
                      samples_data=[sample_to_list(s) for s in rebased])
    return model.to_dict()


def _block_predictor(latency_models: Mapping[str, dict], block_overhead_us: float = 0.0,
                     lowrank_table: Mapping[str, Any] | None = None) -> Callable[[Sequence[Any]], float]:
    """``works of a block → µs`` from a processor's serialised latency models (most specific key first), its
    block overhead and low-rank table, as :func:`~deepx_opt.cost_models.latency.predict_works_us` predicts."""
    from deepx_opt.cost_models.latency import LowRankTable, block_latency_us, work_predictor

    predict = work_predictor(latency_models)
    table = LowRankTable.from_dict(lowrank_table) if lowrank_table else None
    return lambda works: block_latency_us(works, predict, table, block_overhead_us)


def _loop_cases(cases: Sequence[Any]) -> list[tuple[str, Any]]:
    """Op loops of different intensities from the grid: the largest im2col conv (compute-bound), the GEMM
    of most FLOPs with rows > 1, the batch-1 GEMM/MatMul of most bytes (streams its weight) and the smallest
    element-wise op (launch-bound)."""
    from deepx_opt.cost_models.calibrate import _case_work

    works = [(c, _case_work(c)) for c in cases if c.op_type != "BatchNormalization"]
    picks = []

    def pick(label, pred, key):
        cs = [(c, w) for c, w in works if pred(w)]
        if cs:
            picks.append((label, max(cs, key=lambda cw: key(cw[1]))[0]))

    pick("loop:conv", lambda w: w.kind == "conv" and w.variant == "im2col", lambda w: w.flops)
    pick("loop:gemm", lambda w: w.kind == "gemm" and w.variant == "gemm", lambda w: w.flops)
    pick("loop:gemv", lambda w: w.kind == "gemm" and w.variant == "gemv", lambda w: w.bytes)
    pick("loop:elementwise", lambda w: w.kind == "elementwise", lambda w: -w.bytes)
    return picks


def calibrate_power(processor: str, backend: Any, description: str, cases: Sequence[Any],
                    zoo_graphs: Sequence[Any] = (), *, meter: Any = None,
                    run_model: Callable[..., PowerSample | None] | None = None,
                    latency_models: Mapping[str, dict] | None = None, block_overhead_us: float = 0.0,
                    lowrank_table: Mapping[str, Any] | None = None, window_s: float = 0.5,
                    fractions: Sequence[float | None] = (None, 0.35),
                    progress: Callable | None = None) -> dict | None:
    """Measured power fields of a :class:`~deepx_opt.cost_models.profile.Processor`, or None.

    Only an OpenCL device whose description names NVIDIA, with NVML readable, is measured (or any backend
    when a ``meter`` is given: tests pass a simulated counter). Measured: the idle power (over ``window_s``
    with nothing submitted), op loops of different intensities from ``cases`` (calibration's grid; see
    :func:`_loop_cases`), and each of ``zoo_graphs`` run whole, dense and at each rank fraction of
    ``fractions`` (``run_model(processor, graph, label=, group=, predict_block_us=)`` →
    :class:`PowerSample`; default :func:`measure_model_run`). With the processor's fitted
    ``latency_models`` (and ``block_overhead_us``, ``lowrank_table``), the zoo samples' block latencies are
    the latency model's predictions; without, they are measured as for the latency fit. A :class:`PowerModel` is
    fitted by :func:`fit_power_model`.

    Returns
    -------
    dict or None
        ``active_power_w`` (mean power of the grid's largest conv and GEMM run back to back: a kernel
        loop), ``idle_power_w``, ``power_source="measured"``, and ``power_model``
        (:meth:`PowerModel.to_dict`; its ``fit`` report holds ``seconds``, ``loop_power_w`` and
        ``samples_data``: every sample, see :func:`sample_to_list`).
    """
    if meter is None:
        if not processor.startswith("opencl") or "nvidia" not in description.lower():
            return None
        try:
            meter = _nvml_meter(backend)
        except Exception:  # NVML present but unusable: keep modelled powers
            meter = None
        if meter is None:
            return None
    from deepx_opt.cost_models.calibrate import timing_variant

    t0 = time.perf_counter()
    run_model = run_model or measure_model_run
    predict_block = _block_predictor(latency_models, block_overhead_us, lowrank_table) if latency_models else None
    idle_w = float(meter.idle_power_w(window_s))
    samples: list[PowerSample] = []
    loops = _loop_cases(cases)
    jobs = [(g, f) for g in zoo_graphs for f in fractions]
    n = len(loops) + len(jobs)
    for i, (label, case) in enumerate(loops):
        samples.append(measure_op_loop(backend, case, meter, window_s=window_s, label=label))
        if progress:
            progress(f"{processor} power", i + 1, n, label)
    rng = np.random.default_rng(2)
    for j, (g, frac) in enumerate(jobs):
        vg = timing_variant(g, frac, rng)
        if vg is not None:
            label = f"{g.name}:{'dense' if frac is None else f'rank={frac:g}'}"
            s = run_model(processor, vg, label=label, group=g.name, predict_block_us=predict_block)
            if s is not None and s.energy_uj > 0:
                samples.append(s)
        if progress:
            progress(f"{processor} power", len(loops) + j + 1, n, g.name)
    loop_w = {s.label: s.energy_uj / s.time_us for s in samples if s.runs == 0 and s.time_us > 0}
    kernel = [s for s in samples if s.label in ("loop:conv", "loop:gemm")]
    out: dict[str, Any] = {"idle_power_w": idle_w, "power_source": "measured"}
    if kernel:
        out["active_power_w"] = float(sum(s.energy_uj for s in kernel) / sum(s.time_us for s in kernel))
    else:
        out["active_power_w"] = float(max(loop_w.values())) if loop_w else idle_w
    try:
        model, _ = fit_power_model(samples)
    except CostModelError:
        model = None
    if model is not None:
        model.fit_["seconds"] = round(time.perf_counter() - t0, 1)
        model.fit_["idle_power_w"] = idle_w
        model.fit_["loop_power_w"] = loop_w
        model.fit_["time_basis"] = "predicted" if predict_block is not None else "measured (primed, min)"
        model.fit_["samples_data"] = [sample_to_list(s) for s in samples]
        out["power_model"] = model.to_dict()
    return out
