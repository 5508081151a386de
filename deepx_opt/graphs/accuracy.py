"""The accuracy-loss estimator of Runtime Layer Compression: ``a[v, r]`` in top-1 points.

The planner adds ``a[v, r]`` over the chosen options and keeps the sum under the user's limit, so the
estimate must be **additive** and **conservative**. How it is built:

1. **Single-layer effects.** On calibration data, each candidate (layer ``v``, rank ``r``) is run alone
   (every other layer dense) through onnxruntime, by feeding the rank-``r`` reconstruction of the layer's
   (BN-folded) matrix to a probe model. Recorded: the relative perturbation of the final outputs
   ``ρ[v,r] = ‖Z_{v,r} − Z‖_F / ‖Z‖_F``, the top-1 disagreement with the dense model, and with labels the
   top-1 accuracy drop.
2. **Target** (``target=``): ``"disagreement"`` (the default, labels or not; ``method="disagreement"``): the
   top-1 disagreement with the dense model in points, which can only over-state the accuracy drop on the same
   data (a lost correct answer is a changed answer), hence conservative; smoothed (:data:`DEFAULT_SOFT_FLIP_WIDTH`):
   a sample counts with the probability that a perturbation of ``0.25 ×`` the configuration's rms
   logit-difference change, centred on the measured one, flips it, so a sample just short of flipping counts
   part-way (less sampling noise than the count, and part of what unseen data with smaller margins shows).
   ``"loss"`` (needs labels; ``method="labels"``): the measured accuracy drop in points, tighter but noisier.
3. **Fit of the mapping.** Random multi-layer configurations (of the kind a planner picks) are measured the
   same way, all layers compressed at once. ``a[v,r] = s_v · ρ[v,r]²`` (a sensitivity ``s_v`` per layer,
   L1-pulled towards a shared one) is fitted as the ``coverage`` quantile (default 90 %) of the targets of the
   configurations whose target is well measured (at least :data:`FIT_MIN_PTS` points and
   :data:`FIT_MIN_SAMPLES` samples), censored at :data:`FIT_CAP_PTS` (a configuration above it only asks the
   sum to reach it): a linear programme (pinball loss). Below the fitted range the ρ² law extrapolates.
   Logit perturbations of different layers add up like independent errors (``ρ_total² ≈ Σ ρ_v²``), which is
   why the form is ``ρ²``. The extrapolation matters for training data used as calibration data: the model's
   margins there are large, so small perturbations change almost no answers on it while they do on unseen
   data, but ``ρ`` itself is the same on both (within 1 %).
4. **Safety margin** (DeepX's "conservative redundancy"): ``× (1 + margin)`` (default 0) and
   ``+ layer_margin_pts`` (default 0.2) per compressed layer (unseen data changes answers that training data
   does not show, the more the more layers are perturbed); a guard scales the sum up should the quantile cover
   fewer than ``coverage`` of the fitted configurations to within one sample. A layer left dense costs 0.
5. **Verification** of a chosen configuration (:meth:`Estimator.verified_pts`, used by
   ``select_ranks(..., verify=True)`` and ``deepx compress``): the whole configuration measured on the
   calibration data, with the same margins; no quantile, since it is one configuration, not a sum.
6. **Point estimates**, next to those bounds (what is reported as the prediction; never held to the limit):
   per option :meth:`Estimator.loss_point_pts` (``a_point[v, r]``: the median fit, no coverage guard, no
   margin, capped by ``a[v, r]``) and per configuration :meth:`Estimator.verified_point_pts` (the measurement
   + :data:`DEFAULT_VERIFIED_POINT_LAYER_PTS` per compressed layer, capped by the verified bound). A bound is
   biased high by design, so it is not what is reported as the prediction (benchmark: docs/rlc.md).

The settings (``coverage``, ``fit_cap_pts``, ``fit_min_pts``, ``margin``, ``layer_margin_pts``,
``soft_flip_width``, ``verify_blend``; for the point estimates ``point_coverage``, ``point_layer_pts``,
``verified_point_layer_pts``, ``point_scale``, ``point_blend``) were chosen on a development protocol inside the training split of the
digits models (benchmarks/rlc_accuracy.py ``--calib-source dev --tune``), never on the test split;
:meth:`Estimator.refit` changes them without measuring again.

Without any calibration data the estimator falls back to ``method="weight-energy"``: ``a[v,r] = 100 ×``
(fraction of the layer's spectral energy ``Σσ²`` discarded), i.e. keeping 99 % of a layer's energy costs one
point. It is not calibrated against any measurement and says so in ``notes``.

Held-out calibration data measures what the model will do; its training data (often larger, and often all
a user has) under-states the answers a *small* compression changes, because the model's margins there are
large (``ρ`` itself is the same on both). The fitted range, the ``ρ²`` extrapolation, the smoothed target and
the per-layer margin allow for it:
benchmarks/rlc_accuracy.py calibrates on 600 training images and measures the whole test split (docs/rlc.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import scipy.optimize
import scipy.special

from deepx_opt.errors import CompressionError, InputError
from deepx_opt.graphs.compression import LayerFactorizer, im2col
from deepx_opt.graphs.model_graph import ModelGraph
from deepx_opt.graphs.rlc_onnx import OrtEvaluator

__all__ = [
    "ESTIMATOR_METHODS",
    "DEFAULT_TARGET",
    "DEFAULT_MARGIN",
    "DEFAULT_COVERAGE",
    "DEFAULT_LAYER_MARGIN_PTS",
    "DEFAULT_POINT_COVERAGE",
    "DEFAULT_POINT_LAYER_PTS",
    "DEFAULT_VERIFIED_POINT_LAYER_PTS",
    "DEFAULT_POINT_SCALE",
    "check_calibration",
    "top1",
    "logits_tensor",
    "Estimator",
    "evaluate_model",
]

ESTIMATOR_METHODS = ("labels", "disagreement", "weight-energy")
#: What the estimate is fitted to by default, labels or not: "disagreement" (top-1 changes vs the dense
#: model). benchmarks/rlc_accuracy.py compared it with "loss" (measured accuracy drop, needs labels) on the
#: digits models over 10 calibration/evaluation splits: the measured loss stayed within the limit in 156 of
#: 160 rows against 143 of 160, for a slightly larger |predicted − measured| (see docs/rlc.md).
DEFAULT_TARGET = "disagreement"
#: Multiplicative safety margin on top of the quantile fit. Chosen on the development protocol of
#: benchmarks/rlc_accuracy.py (``--tune``: models trained inside the training split, evaluated on held-out folds
#: of it), never on the test split.
DEFAULT_MARGIN = 0.0
#: Quantile of the measured configurations' targets that the fitted sum is fitted to (the fraction of them it
#: covers). Chosen on the development protocol (see DEFAULT_MARGIN).
DEFAULT_COVERAGE = 0.90
#: Additive safety margin per compressed layer, in points: each layer a configuration compresses adds this to
#: ``a[v, r]`` (and to the verified loss). Unseen data changes answers that training data used for calibration
#: does not show (the offset grows with the number of perturbed layers). Chosen on the development protocol.
DEFAULT_LAYER_MARGIN_PTS = 0.2
#: Weight of the configuration's own measurement in the verified loss; the rest is the median (0.5-quantile)
#: fitted curve at the same configuration, which carries less calibration sampling noise than one count.
#: Chosen on the development protocol.
DEFAULT_VERIFY_BLEND = 1.0
#: The point estimate (no safety margin) of a configuration's top-1 loss on unseen data, next to the bound.
#: Per option: ``a_point[v, r] = point_scale · p_v · ρ² + point_layer_pts`` with ``p_v`` the ``point_coverage``
#: quantile fit (default the median) of the measured configurations, without the coverage guard and the margins.
#: Verified: ``point_scale · m + verified_point_layer_pts · (compressed layers)`` with ``m`` the configuration's
#: measured target. The offsets differ because the fitted ρ² curve extrapolates below the range the training
#: data measures (so it already carries part of what unseen data shows) while a measurement on training data
#: does not. Chosen on the development protocol (benchmarks/rlc_accuracy.py ``--tune-point``); they do not change
#: which ranks are selected.
DEFAULT_POINT_COVERAGE = 0.5
DEFAULT_POINT_LAYER_PTS = 0.0
DEFAULT_VERIFIED_POINT_LAYER_PTS = 0.15
DEFAULT_POINT_SCALE = 1.0
#: Weight of the verified point estimate (the measurement of the whole configuration plus its offset) in what is
#: reported as the configuration's predicted loss; the rest is the additive point estimate ``Σ a_point`` of the
#: same configuration. The two err differently (one count on training data against a fitted curve), so a blend
#: can beat both. Chosen on the development protocol (benchmarks/rlc_accuracy.py ``--tune-point``).
DEFAULT_POINT_BLEND = 0.0
#: Smoothed disagreement target (0: off, the plain count): a sample counts with the probability that a
#: perturbation of ``soft_flip_width ×`` the configuration's rms logit-difference change, centred on the measured
#: one, flips it. Chosen on the development protocol.
DEFAULT_SOFT_FLIP_WIDTH = 0.25
#: Number of random multi-layer configurations measured to fit the mapping.
DEFAULT_CONFIGS = 48
#: Rows of im2col patches used for a conv's data-aware SVD (a random subset above this).
MAX_CALIB_ROWS = 20000
#: The mapping is fitted on configurations whose measured target is at least this many points and this many
#: calibration samples (fewer changed answers measure the target too coarsely, and on training data not at all).
FIT_MIN_PTS = 1.0
FIT_MIN_SAMPLES = 5
#: Fewer well-measured configurations than this: fit on every configuration with a non-zero target instead.
MIN_FIT_CONFIGS = 6
#: The coverage test forgives this many calibration samples (measured losses move in whole samples).
TOLERANCE_SAMPLES = 1.0
#: The fit's range ends here: a configuration measured above this many points only asks the fitted sum to
#: reach it (censored), so configurations far outside the limits a planner is given do not bend the ρ² law
#: where the limits are (a ρ² law cannot follow the measured curves from 1 to 50 points). Chosen on the
#: development protocol.
FIT_CAP_PTS = 10.0
#: L1 pull of per-layer sensitivities towards the shared one, relative to each layer's total feature (a layer
#: seen in few informative configurations keeps a sensible sensitivity instead of 0).
PULL = 0.05
#: Settings :meth:`Estimator.refit` accepts.
_SETTINGS = ("margin", "coverage", "fit_cap_pts", "fit_min_pts", "layer_margin_pts", "verify_blend",
             "soft_flip_width", "point_coverage", "point_layer_pts", "verified_point_layer_pts", "point_scale",
             "point_blend")


# --------------------------------------------------------------------------------------------------------
# calibration data
# --------------------------------------------------------------------------------------------------------


def check_calibration(model: ModelGraph, calib, labels=None) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """Validate calibration inputs (and labels) against ``model``; return ``(feeds, labels)``.

    Parameters
    ----------
    model : ModelGraph
    calib : ndarray or dict of str to ndarray or None
        Samples stacked on a leading axis; an array when the model has one input. Each sample has the shape
        of the model input without its batch dimension (``(n,) + input.shape[1:]``).
    labels : array-like of int, optional
        One class index per sample.

    Raises
    ------
    InputError
        Wrong shape, an empty set, labels without data, labels of the wrong length or out of range.
    """
    if calib is None:
        if labels is not None:
            raise InputError("labels were given without calibration data; accepted: labels together with --calib data")
        return None, None
    if not isinstance(calib, Mapping):
        if len(model.inputs) != 1:
            raise InputError(
                f"model {model.name!r} has {len(model.inputs)} inputs {list(model.inputs)}; give calibration data "
                "as a dict input name → array"
            )
        calib = {next(iter(model.inputs)): calib}
    feeds: dict[str, np.ndarray] = {}
    n = None
    for name, info in model.inputs.items():
        if name not in calib:
            raise InputError(f"calibration data lacks model input {name!r}; inputs: {list(model.inputs)}")
        x = np.asarray(calib[name])
        want = tuple(info.shape[1:])
        if x.ndim != len(info.shape) or tuple(x.shape[1:]) != want:
            # accept unbatched flat samples that reshape exactly (e.g. digits as (n, 64) for a (1, 1, 8, 8) input)
            if x.ndim == 2 and x.shape[1] == int(np.prod(want)):
                x = x.reshape((x.shape[0],) + want)
            else:
                raise InputError(
                    f"calibration data for input {name!r} has shape {tuple(x.shape)}; accepted: (n, "
                    f"{', '.join(str(d) for d in want)}) (the model input {tuple(info.shape)} with n samples first)"
                )
        if x.shape[0] < 1:
            raise InputError(f"calibration data for input {name!r} is empty; accepted: at least 1 sample")
        if n is not None and x.shape[0] != n:
            raise InputError(f"calibration inputs have different sample counts ({n} and {x.shape[0]}); accepted: equal")
        n = x.shape[0]
        if info.shape and info.shape[0] > 1 and n % info.shape[0]:
            raise InputError(
                f"calibration data for input {name!r} has {n} samples; accepted: a multiple of the model's fixed "
                f"batch size {info.shape[0]}"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise InputError(f"calibration data for input {name!r} has dtype {x.dtype}; accepted: numeric")
        feeds[name] = np.ascontiguousarray(x.astype(info.dtype, copy=False))
    if labels is None:
        return feeds, None
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise InputError(f"labels have shape {tuple(y.shape)}; accepted: ({n},), one label per calibration sample")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise InputError(f"labels have dtype {y.dtype}; accepted: integer class indices")
    n_classes = _n_classes(model)
    if y.min() < 0 or y.max() >= n_classes:
        raise InputError(
            f"labels range over {int(y.min())}..{int(y.max())}; accepted: 0..{n_classes - 1} "
            f"(the model's first output has {n_classes} classes)"
        )
    return feeds, y.astype(np.int64)


def logits_tensor(model: ModelGraph) -> str:
    """The tensor whose perturbation the estimator measures: the input of a final (Log)Softmax if the first
    output ends with one (probabilities saturate), else the first output itself."""
    out = model.outputs[0]
    for v in model.layers():
        ops = model.dag.nodes[v]["ops"]
        if ops and ops[-1].outputs[0] == out and ops[-1].op_type in ("Softmax", "LogSoftmax"):
            src = ops[-1].inputs[0]
            if src in model.tensors and model.tensors[src].shape == model.tensors[out].shape:
                return src
    return out


def _n_classes(model: ModelGraph) -> int:
    shape = model.tensors[model.outputs[0]].shape
    return int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])


def top1(outputs: np.ndarray) -> np.ndarray:
    """Predicted class per sample: argmax of the first output flattened per sample."""
    return np.asarray(outputs).reshape(outputs.shape[0], -1).argmax(axis=1)


def evaluate_model(model: ModelGraph, calib, labels=None, *, reference: np.ndarray | None = None) -> dict:
    """Run ``model`` (dense or factorised) through onnxruntime on ``calib``.

    Returns
    -------
    dict
        ``outputs`` (first output), ``top1_pct`` (with labels), ``agreement_pct`` with ``reference``
        predictions (when given).
    """
    feeds, y = check_calibration(model, calib, labels)
    out = OrtEvaluator(model).run(feeds, outputs=[model.outputs[0]])[model.outputs[0]]
    res: dict = {"outputs": out}
    pred = top1(out)
    if y is not None:
        res["top1_pct"] = 100.0 * float(np.mean(pred == y))
    if reference is not None:
        res["agreement_pct"] = 100.0 * float(np.mean(pred == np.asarray(reference)))
    return res


# --------------------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Effect:
    rel_err: float
    disagree_pts: float
    loss_pts: float | None


@dataclass
class Estimator:
    """Measures compression effects on calibration data and turns them into additive ``a[v, r]`` points.

    Build with :meth:`build`; then :meth:`loss_pts` gives ``a[v, r]`` and :meth:`measure` measures any
    configuration on the calibration data.

    Attributes
    ----------
    method : str
        ``"labels"``, ``"disagreement"`` or ``"weight-energy"`` (see the module docstring).
    alpha_v_ : dict[str, float]
        Per-layer sensitivities ``s_v`` of the mapping ``a[v, r] = s_v · ρ[v, r]^beta_`` (margin included).
    point_v_ : dict[str, float]
        Per-layer sensitivities of the point estimate (the ``point_coverage`` quantile fit, no coverage guard,
        no margin): ``a_point[v, r] = min(point_scale · point_v_[v] · ρ² + point_layer_pts, a[v, r])``.
    alpha_, beta_ : float
        The shared sensitivity (used for a layer without one) and the exponent.
    fit_ : dict
        Fit diagnostics: configurations, residuals, coverage, margin.
    notes : list of str
        What the user should know (printed by ``deepx compress``).
    """

    model: ModelGraph
    factorizers: dict[str, LayerFactorizer]
    factor_method: str = "weight"
    method: str = "weight-energy"
    feeds: dict[str, np.ndarray] | None = None
    labels: np.ndarray | None = None
    margin: float = DEFAULT_MARGIN
    coverage: float = DEFAULT_COVERAGE
    fit_cap_pts: float = FIT_CAP_PTS
    fit_min_pts: float = FIT_MIN_PTS
    layer_margin_pts: float = DEFAULT_LAYER_MARGIN_PTS
    verify_blend: float = DEFAULT_VERIFY_BLEND
    soft_flip_width: float = DEFAULT_SOFT_FLIP_WIDTH
    point_coverage: float = DEFAULT_POINT_COVERAGE
    point_layer_pts: float = DEFAULT_POINT_LAYER_PTS
    verified_point_layer_pts: float = DEFAULT_VERIFIED_POINT_LAYER_PTS
    point_scale: float = DEFAULT_POINT_SCALE
    point_blend: float = DEFAULT_POINT_BLEND
    alpha_: float = float("nan")
    alpha_v_: dict = field(default_factory=dict)
    point_v_: dict = field(default_factory=dict)
    beta_: float = float("nan")
    fit_: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    effects_: dict = field(default_factory=dict)
    _probe: OrtEvaluator | None = field(default=None, repr=False)
    _base: dict = field(default_factory=dict, repr=False)
    _verified: dict = field(default_factory=dict, repr=False)
    _verified_point: dict = field(default_factory=dict, repr=False)
    _measured: dict = field(default_factory=dict, repr=False)
    _smooth_v: dict = field(default_factory=dict, repr=False)
    _samples: list | None = field(default=None, repr=False)

    # ---- construction ----------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        model: ModelGraph,
        factorizers: Mapping[str, LayerFactorizer],
        options: Mapping[str, Sequence[int]] | None = None,
        *,
        calib=None,
        labels=None,
        factor_method: str = "weight",
        margin: float = DEFAULT_MARGIN,
        coverage: float = DEFAULT_COVERAGE,
        n_configs: int = DEFAULT_CONFIGS,
        seed: int = 0,
        target: str | None = None,
        **settings,
    ) -> "Estimator":
        """Set up on calibration data; with ``options`` (layer → ranks) also :meth:`fit` them.

        ``factor_method="data"`` first gives every factoriser its calibration inputs (layer inputs of the
        dense model on ``calib``), so that data-aware spectra are available before ranks are chosen.
        ``settings``: ``fit_cap_pts``, ``fit_min_pts``, ``layer_margin_pts``, ``verify_blend``,
        ``soft_flip_width`` (the bound), ``point_coverage``, ``point_layer_pts``, ``verified_point_layer_pts``,
        ``point_scale``, ``point_blend`` (the point estimate); defaults: the module constants.
        """
        unknown = sorted(set(settings) - set(_SETTINGS))
        if unknown:
            raise CompressionError(f"estimator settings {unknown} are unknown; accepted: {sorted(_SETTINGS)}")
        feeds, y = check_calibration(model, calib, labels)
        est = cls(model=model, factorizers=dict(factorizers), factor_method=factor_method, feeds=feeds, labels=y,
                  margin=float(margin), coverage=float(coverage),
                  **{k: float(v) for k, v in settings.items()})
        _check_settings(est)
        if feeds is None:
            if factor_method == "data":
                raise CompressionError("factor method 'data' needs calibration data; accepted without it: 'weight'")
            est.method = "weight-energy"
            est.notes.append(
                "no calibration data: accuracy loss is the uncalibrated weight-energy proxy "
                "(100 × fraction of each layer's spectral energy discarded); it was not measured"
            )
            return est
        est._make_probe()
        if factor_method == "data":
            est._calibrate_layers()
        if target not in (None, "loss", "disagreement"):
            raise CompressionError(f"estimator target {target!r} is unknown; accepted: 'loss', 'disagreement'")
        if target == "loss" and y is None:
            raise InputError("estimator target 'loss' needs labels; accepted without labels: 'disagreement'")
        est.method = "labels" if (target or DEFAULT_TARGET) == "loss" and y is not None else "disagreement"
        if options is not None:
            est.fit(options, n_configs=n_configs, seed=seed)
        return est

    def fit(self, options: Mapping[str, Sequence[int]], *, n_configs: int = DEFAULT_CONFIGS, seed: int = 0) -> "Estimator":
        """Measure every option (layer → ranks) alone, then fit the mapping on them and on ``n_configs``
        random multi-layer configurations. A no-op for ``method="weight-energy"``. Returns self."""
        if self._probe is None:
            return self
        self._measure_singles(options)
        self._fit(options, n_configs=n_configs, seed=seed)
        return self

    def _make_probe(self) -> None:
        probe = self.model.copy()
        feedable = []
        self._wnames = {}
        for v, fz in self.factorizers.items():
            d = probe.dag.nodes[v]
            dt = np.dtype(fz.dtype) if np.dtype(fz.dtype).kind == "f" else np.dtype(np.float32)
            wn, bn = f"{v}/rlc_probe/W", f"{v}/rlc_probe/b"
            probe.weights[wn] = fz.native_weight(fz.weight).astype(dt)
            bias = fz.bias if fz.bias is not None else np.zeros(fz.out_features)
            probe.weights[bn] = bias.astype(dt)
            d["ops"] = fz.dense_ops(wn, bn) + list(d["ops"][1 + fz.folded:])
            feedable += [wn, bn]
            self._wnames[v] = (wn, bn, dt)
        layer_inputs = [fz.main_op.inputs[0] for fz in self.factorizers.values()]
        self._logits = logits_tensor(self.model)
        self._probe = OrtEvaluator(probe, weights_as_inputs=feedable, extra_outputs=[self._logits])
        self._probe_inputs = OrtEvaluator(self.model, extra_outputs=layer_inputs) if self.factor_method == "data" else None
        base = self._probe.run(self.feeds, outputs=[self._logits])[self._logits]
        self._base = {"out": base.reshape(base.shape[0], -1).astype(np.float64), "pred": top1(base)}
        if self.labels is not None:
            self._base["acc_pct"] = 100.0 * float(np.mean(self._base["pred"] == self.labels))

    def _calibrate_layers(self, seed: int = 0) -> None:
        acts = self._probe_inputs.run(self.feeds)
        rng = np.random.default_rng(seed)
        for fz in self.factorizers.values():
            x = acts[fz.main_op.inputs[0]]
            if fz.kind == "conv":
                a = fz.main_op.attrs
                # bound im2col's memory: enough whole images for a few times MAX_CALIB_ROWS patches
                per_image = int(np.prod(self.model.tensors[fz.main_output].shape[2:]))
                max_images = max(1, -(-4 * MAX_CALIB_ROWS // max(per_image, 1)))
                if x.shape[0] > max_images:
                    x = x[np.sort(rng.choice(x.shape[0], max_images, replace=False))]
                rows = im2col(x, a["kernel_shape"], a["strides"], a["pads"], a["dilations"])
            else:
                rows = x.reshape(-1, x.shape[-1])
            if rows.shape[0] > MAX_CALIB_ROWS:
                rows = rows[rng.choice(rows.shape[0], MAX_CALIB_ROWS, replace=False)]
            fz.set_calibration(rows)

    # ---- measuring -------------------------------------------------------------------------------------

    def measure(self, ranks: Mapping[str, int | None]) -> dict:
        """Measure a configuration (layer → rank, None = dense) on the calibration data.

        Returns
        -------
        dict
            ``rel_err`` (relative output perturbation), ``disagree_pts`` (top-1 changes vs dense, points)
            and, with labels, ``loss_pts`` (dense accuracy − compressed accuracy, points).
        """
        if self._probe is None:
            raise CompressionError("measure() needs calibration data; this estimator has none")
        over = {}
        for v, r in ranks.items():
            if r is None:
                continue
            if v not in self.factorizers:
                raise CompressionError(f"layer {v!r} has no factoriser; factorisable: {sorted(self.factorizers)}")
            fz = self.factorizers[v]
            wn, bn, dt = self._wnames[v]
            w, b = fz.low_rank_weight(r, self.factor_method)
            over[wn] = fz.native_weight(w).astype(dt)
            over[bn] = (b if b is not None else np.zeros(fz.out_features)).astype(dt)
        out = self._probe.run(self.feeds, overrides=over, outputs=[self._logits])[self._logits]
        z = out.reshape(out.shape[0], -1).astype(np.float64)
        base = self._base["out"]
        pred = top1(out)
        res = {
            "rel_err": float(np.linalg.norm(z - base) / max(np.linalg.norm(base), 1e-30)),
            "disagree_pts": 100.0 * float(np.mean(pred != self._base["pred"])),
        }
        if self.labels is not None:
            res["loss_pts"] = self._base["acc_pct"] - 100.0 * float(np.mean(pred == self.labels))
        # for the smoothed target: each sample's margin for the dense model's class after the perturbation,
        # and the configuration's perturbation scale (rms change of a logit difference)
        idx = np.arange(z.shape[0])
        cls = self._base["pred"]
        others = z.copy()
        others[idx, cls] = -np.inf
        res["_margins"] = (z[idx, cls] - others.max(axis=1)).astype(np.float32) if z.shape[1] > 1 else None
        res["_scale"] = float(np.sqrt(2.0 * np.mean((z - base) ** 2)))
        return res

    def _target(self, m: dict) -> float:
        if self.method == "labels":
            return m["loss_pts"]
        t = self.soft_flip_width
        if t > 0 and m.get("_margins") is not None and m.get("_scale", 0.0) > 0:
            # expected disagreement if each sample's perturbation were a fresh draw of the same size, centred on
            # the measured one: smoother than the count (a sample just short of flipping counts part-way)
            z = -np.asarray(m["_margins"], dtype=np.float64) / (t * m["_scale"])
            return 100.0 * float(np.mean(0.5 * scipy.special.erfc(-z / np.sqrt(2.0))))
        return m["disagree_pts"]

    def _measure_singles(self, options: Mapping[str, Sequence[int]]) -> None:
        for v, ranks in options.items():
            for r in ranks:
                if r is None or (v, r) in self.effects_:
                    continue
                m = self._measure_cached({v: r})
                self.effects_[(v, int(r))] = _Effect(m["rel_err"], m["disagree_pts"], m.get("loss_pts"))

    def _measure_cached(self, ranks: Mapping[str, int | None]) -> dict:
        key = tuple(sorted((v, int(r)) for v, r in ranks.items() if r is not None))
        if key not in self._measured:
            self._measured[key] = self.measure(dict(key))
        return self._measured[key]

    def _configs(self, options: Mapping[str, Sequence[int]], n: int, seed: int) -> list[dict]:
        """Random configurations resembling a planner's: each layer at its cheapest rank under a random ρ cap."""
        rng = np.random.default_rng(seed)
        layers = [v for v in options if any(r is not None for r in options[v])]
        if not layers:
            return []
        rhos = np.array([e.rel_err for e in self.effects_.values()] or [1.0])
        lo, hi = max(float(rhos[rhos > 0].min()) if np.any(rhos > 0) else 1e-6, 1e-6), max(float(rhos.max()), 1e-6)
        configs = []
        for _ in range(n):
            cap = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            p_layer = rng.uniform(0.4, 1.0)
            cfg = {}
            for v in layers:
                if rng.random() > p_layer:
                    continue
                c = cap * rng.uniform(0.3, 1.5)
                ok = [r for r in options[v] if r is not None and self.effects_[(v, int(r))].rel_err <= c]
                if ok:
                    cfg[v] = int(min(ok))
            if cfg:
                configs.append(cfg)
        return configs

    def _fit(self, options: Mapping[str, Sequence[int]], *, n_configs: int, seed: int) -> None:
        configs = [{v: r} for (v, r) in self.effects_]
        seen = {tuple(sorted(c.items())) for c in configs}
        for cfg in self._configs(options, n_configs, seed):
            key = tuple(sorted(cfg.items()))
            if key not in seen:
                seen.add(key)
                configs.append(cfg)
        self._samples = configs
        self._refit()

    def _refit(self) -> None:
        """Fit the mapping on the measured configurations (``self._samples``) with the current settings."""
        samples = [(cfg, self._target(self._measure_cached(cfg))) for cfg in self._samples]
        layers = sorted({v for v, _ in self.effects_})
        n_calib = int(next(iter(self.feeds.values())).shape[0])
        step_pts = TOLERANCE_SAMPLES * 100.0 / n_calib  # measured losses are quantised in samples
        self.notes = [n for n in self.notes if not n.startswith("accuracy loss fitted")]
        if not samples or not layers:
            self.alpha_, self.beta_, self.alpha_v_ = 0.0, 2.0, {}
            self._smooth_v, self.point_v_ = {}, {}
            return
        cap = float(self.fit_cap_pts)
        t_all = np.array([t for _, t in samples], dtype=float)
        # fit where the calibration data measures the target (enough changed answers); a model's own training
        # data (often all a user has) shows almost no changes for small perturbations while unseen data does,
        # so below that the fitted ρ² law extrapolates
        lo_pts = max(float(self.fit_min_pts), FIT_MIN_SAMPLES * 100.0 / n_calib) if self.fit_min_pts > 0 else 0.0
        keep = t_all >= lo_pts - 1e-9
        if int(keep.sum()) < MIN_FIT_CONFIGS:
            keep = t_all > 0 if int(np.sum(t_all > 0)) >= MIN_FIT_CONFIGS else np.ones(len(samples), dtype=bool)
        col = {v: i for i, v in enumerate(layers)}
        x = np.zeros((len(samples), len(layers)))
        for k, (cfg, _) in enumerate(samples):
            for v, r in cfg.items():
                x[k, col[v]] += self.effects_[(v, r)].rel_err ** 2.0
        xk, tk = x[keep], t_all[keep]
        # the planner's range: up to `fit_cap_pts`; a configuration measured above it only asks the estimate to
        # reach the cap (censored), so the far-off configurations do not bend the fit where limits are set
        alpha_v, shared = _quantile_fit(xk, tk, self.coverage, cap)
        median_v, _ = _quantile_fit(xk, tk, 0.5, cap)
        point_v = median_v if self.point_coverage == 0.5 else _quantile_fit(xk, tk, self.point_coverage, cap)[0]
        pred = x @ alpha_v
        # guard: scale up until `coverage` of the fitted configurations are covered to within one sample (the
        # quantile fit does it already up to ties and the pull towards the shared sensitivity)
        fit_pred, fit_t = pred[keep], np.minimum(t_all[keep], cap)
        scale = 1.0
        for _ in range(200):
            if np.mean(scale * fit_pred >= fit_t - step_pts - 1e-9) >= self.coverage:
                break
            scale *= 1.05
        factor = scale * (1.0 + self.margin)
        self.beta_ = 2.0
        self.alpha_v_ = {v: float(alpha_v[col[v]] * factor) for v in layers}
        self.alpha_ = float(shared * factor)
        self._smooth_v = {v: float(median_v[col[v]]) for v in layers}
        self.point_v_ = {v: float(point_v[col[v]]) for v in layers}
        final = pred * factor
        point_fit = self.point_scale * (x @ point_v)
        self.fit_ = {
            "configs": len(samples),
            "configs_fitted": int(keep.sum()),
            "fit_min_pts": float(lo_pts),
            "fit_cap_pts": cap,
            "beta": 2.0,
            "sensitivity": dict(self.alpha_v_),
            "median_sensitivity": dict(self._smooth_v),
            "point_sensitivity": dict(self.point_v_),
            "point_coverage": self.point_coverage,
            "point_layer_pts": self.point_layer_pts,
            "verified_point_layer_pts": self.verified_point_layer_pts,
            "point_scale": self.point_scale,
            "point_blend": self.point_blend,
            # the point fit against the calibration targets it was fitted to (no per-layer offset: that one is
            # for unseen data): mean signed and absolute error
            "point_bias_pts": float(np.mean(np.minimum(point_fit[keep], cap) - fit_t)),
            "point_mean_abs_err_pts": float(np.mean(np.abs(np.minimum(point_fit[keep], cap) - fit_t))),
            "coverage_scale": float(scale),
            "margin": self.margin,
            "layer_margin_pts": self.layer_margin_pts,
            "coverage": self.coverage,
            "verify_blend": self.verify_blend,
            "soft_flip_width": self.soft_flip_width,
            "covered_fraction": float(np.mean(final[keep] >= fit_t - 1e-9)),
            "covered_within_one_sample_fraction": float(np.mean(final[keep] >= fit_t - step_pts - 1e-9)),
            "mean_abs_err_pts": float(np.mean(np.abs(final[keep] - fit_t))),
            "max_under_pts": float(np.max(fit_t - final[keep])),
            "calib_samples": n_calib,
        }
        what = ("top-1 accuracy drop on the labelled calibration data" if self.method == "labels"
                else "top-1 disagreement with the dense model on the calibration data (labels, if any, not used "
                     "for the fit), a conservative proxy of accuracy loss")
        extra = f" + {self.layer_margin_pts:g} points per compressed layer" if self.layer_margin_pts else ""
        pscale = f"{self.point_scale:g} × " if self.point_scale != 1 else ""
        self.notes.append(
            f"accuracy loss fitted to the {what}: a[v,r] = s_v · ρ² (ρ: relative perturbation of the logits with "
            f"layer v alone at rank r; s_v: per-layer sensitivity), the {self.coverage:.0%} quantile of the "
            f"{int(keep.sum())} of {len(samples)} measured configurations with a target of at least {lo_pts:.2g} "
            f"points (censored at {cap:g}), scaled ×{scale:.3g}, then +{self.margin:.0%} margin{extra} (the "
            f"conservative bound the planner holds to the limit); point estimate (no margin): {pscale}the "
            f"{self.point_coverage:.0%} quantile fit + {self.point_layer_pts:g} points per compressed layer (verified: "
            f"{pscale}the measurement + {self.verified_point_layer_pts:g} points per compressed layer"
            f"{'' if self.point_blend == 1 else f', weight {self.point_blend:g} against the additive estimate'}); "
            f"{n_calib} calibration samples (one sample = {step_pts:.2g} points)"
        )

    def refit(self, **settings) -> "Estimator":
        """Fit the mapping again with other settings (``margin``, ``coverage``, ``fit_cap_pts``,
        ``fit_min_pts``, ``layer_margin_pts``, ``verify_blend``, ``soft_flip_width``, ``point_coverage``,
        ``point_layer_pts``, ``verified_point_layer_pts``, ``point_scale``, ``point_blend``) on the configurations
        already measured; no new measurement. Used to choose these settings on a development split (benchmarks/rlc_accuracy.py
        ``--tune``). Returns self."""
        for k in settings:
            if k not in _SETTINGS:
                raise CompressionError(f"estimator setting {k!r} is unknown; accepted: {sorted(_SETTINGS)}")
        old = {k: getattr(self, k) for k in settings}
        for k, v in settings.items():
            setattr(self, k, float(v))
        try:
            _check_settings(self)
        except CompressionError:
            for k, v in old.items():  # a refused setting leaves the estimator as it was
                setattr(self, k, v)
            raise
        self._verified.clear()
        self._verified_point.clear()
        if self._probe is not None and getattr(self, "_samples", None) is not None:
            self._refit()
        return self

    # ---- the estimate ----------------------------------------------------------------------------------

    def loss_pts(self, layer: str, rank: int | None) -> float:
        """``a[layer, rank]`` in top-1 percentage points (0 for a dense layer): the conservative, additive bound
        (quantile fit, coverage guard, margins) that a planner holds to the limit."""
        if rank is None:
            return 0.0
        fz = self.factorizers[layer]
        rank = fz.check_rank(rank)
        if self.method == "weight-energy":
            s2 = fz.singular_values("weight") ** 2
            total = float(s2.sum())
            return 100.0 * float(s2[rank:].sum()) / total if total > 0 else 0.0
        eff = self.effects_.get((layer, rank))
        if eff is None:
            m = self.measure({layer: rank})
            eff = self.effects_[(layer, rank)] = _Effect(m["rel_err"], m["disagree_pts"], m.get("loss_pts"))
        return float(self.alpha_v_.get(layer, self.alpha_) * eff.rel_err ** self.beta_ + self.layer_margin_pts)

    def loss_point_pts(self, layer: str, rank: int | None) -> float:
        """``a_point[layer, rank]``: the point estimate of the option's top-1 loss on unseen data, in points.

        ``point_scale · point_v_[layer] · ρ² + point_layer_pts`` (the ``point_coverage`` quantile fit, by
        default the median, without the coverage guard and the margins), never above ``a[layer, rank]``: a
        central estimate cannot exceed the bound. 0 for a dense layer; with ``method="weight-energy"`` (not
        measured) the same number as :meth:`loss_pts`.
        """
        bound = self.loss_pts(layer, rank)
        if rank is None or self.method == "weight-energy":
            return bound
        eff = self.effects_[(layer, self.factorizers[layer].check_rank(rank))]
        s = self.point_v_.get(layer, self._smooth_v.get(layer, 0.0))
        return float(min(self.point_scale * s * eff.rel_err ** self.beta_ + self.point_layer_pts, bound))

    def predict(self, ranks: Mapping[str, int | None]) -> float:
        """``Σ a[v, r_v]``: the conservative additive bound of a configuration's top-1 loss, in points."""
        return float(sum(self.loss_pts(v, r) for v, r in ranks.items()))

    def predict_point(self, ranks: Mapping[str, int | None]) -> float:
        """``Σ a_point[v, r_v]``: the additive point estimate of a configuration's top-1 loss, in points."""
        return float(sum(self.loss_point_pts(v, r) for v, r in ranks.items()))

    def verified_pts(self, ranks: Mapping[str, int | None]) -> float:
        """The verified bound: the loss of one whole configuration bounded from a measurement of it.

        ``(1 + margin) · (w · m + (1 − w) · g) + layer_margin_pts · (compressed layers)``, where ``m`` is the
        configuration's target (accuracy drop with ``method="labels"``, else top-1 disagreement with the dense
        model) measured on the calibration data with every chosen layer compressed at once, ``g`` the median
        fitted curve ``Σ_v median_v · ρ_v²`` at the same configuration (it carries less calibration sampling
        noise than one count) and ``w = verify_blend``. No coverage scaling: it is one configuration, not a
        sum that must hold for every configuration. It is what ``select_ranks(..., verify=True)`` holds to the
        limit. Measurements are cached per configuration.

        Examples
        --------
        >>> est.verified_pts({"fc1": 16, "fc2": None})   # doctest: +SKIP
        0.37
        """
        key = self._verify_key(ranks, "verified_pts")
        if key not in self._verified:
            self._verified[key] = (1.0 + self.margin) * self._verified_target(key) + self.layer_margin_pts * len(key)
        return float(self._verified[key])

    def verified_point_pts(self, ranks: Mapping[str, int | None]) -> float:
        """The verified point estimate: one whole configuration's top-1 loss on unseen data predicted from a
        measurement of it, without the safety margins.

        ``min(w · (point_scale · m + verified_point_layer_pts · (compressed layers)) + (1 − w) · Σ a_point,
        verified_pts(ranks))`` with ``m`` the same measured (and, with ``verify_blend`` < 1, blended) target as
        :meth:`verified_pts`, ``Σ a_point`` the additive point estimate of the same configuration
        (:meth:`predict_point`) and ``w = point_blend``. What ``deepx compress`` reports as
        ``predicted_loss_pts``; the selection holds the bound, not this.

        Examples
        --------
        >>> est.verified_point_pts({"fc1": 16, "fc2": None})   # doctest: +SKIP
        0.27
        """
        key = self._verify_key(ranks, "verified_point_pts")
        if key not in self._verified_point:
            point = self.point_scale * self._verified_target(key) + self.verified_point_layer_pts * len(key)
            if self.point_blend < 1.0:
                point = self.point_blend * point + (1.0 - self.point_blend) * self.predict_point(dict(key))
            self._verified_point[key] = min(point, self.verified_pts(dict(key)))
        return float(self._verified_point[key])

    def _verify_key(self, ranks: Mapping[str, int | None], what: str) -> tuple:
        if self._probe is None:
            raise CompressionError(f"{what}() needs calibration data; this estimator has none")
        return tuple(sorted((v, int(r)) for v, r in ranks.items() if r is not None))

    def _verified_target(self, key: tuple) -> float:
        """The configuration's measured target, blended with the median fitted curve when ``verify_blend`` < 1."""
        m = self._target(self._measure_cached(dict(key)))
        w = self.verify_blend
        if w < 1.0:
            g = 0.0
            for v, r in key:
                self.loss_pts(v, r)  # measures the single-layer effect if it is new
                g += self._smooth_v.get(v, 0.0) * self.effects_[(v, r)].rel_err ** 2
            m = w * m + (1.0 - w) * g
        return m

    def summary(self) -> dict:
        """JSON-ready description of the estimator (method, mapping, fit diagnostics, notes)."""
        return {
            "method": self.method,
            "factor_method": self.factor_method,
            "alpha": None if np.isnan(self.alpha_) else self.alpha_,
            "sensitivity": dict(self.alpha_v_),
            "point_sensitivity": dict(self.point_v_),
            "beta": None if np.isnan(self.beta_) else self.beta_,
            "fit": dict(self.fit_),
            "dense_calib_top1_pct": self._base.get("acc_pct"),
            "notes": list(self.notes),
        }


def _check_settings(est: "Estimator") -> None:
    if not est.margin >= 0:
        raise CompressionError(f"safety margin {est.margin!r} is out of range; accepted: >= 0")
    if not 0 < est.coverage <= 1:
        raise CompressionError(f"coverage {est.coverage!r} is out of range; accepted: (0, 1]")
    if not est.fit_cap_pts > 0:
        raise CompressionError(f"fit_cap_pts {est.fit_cap_pts!r} is out of range; accepted: > 0 (points)")
    if not est.fit_min_pts >= 0:
        raise CompressionError(f"fit_min_pts {est.fit_min_pts!r} is out of range; accepted: >= 0 (points)")
    if not est.layer_margin_pts >= 0:
        raise CompressionError(f"layer_margin_pts {est.layer_margin_pts!r} is out of range; accepted: >= 0 (points)")
    if not est.soft_flip_width >= 0:
        raise CompressionError(f"soft_flip_width {est.soft_flip_width!r} is out of range; accepted: >= 0")
    if not 0 <= est.verify_blend <= 1:
        raise CompressionError(f"verify_blend {est.verify_blend!r} is out of range; accepted: [0, 1]")
    if not 0 < est.point_coverage < 1:
        raise CompressionError(f"point_coverage {est.point_coverage!r} is out of range; accepted: (0, 1)")
    for k in ("point_layer_pts", "verified_point_layer_pts"):
        if not getattr(est, k) >= 0:
            raise CompressionError(f"{k} {getattr(est, k)!r} is out of range; accepted: >= 0 (points)")
    if not est.point_scale > 0:
        raise CompressionError(f"point_scale {est.point_scale!r} is out of range; accepted: > 0")
    if not 0 <= est.point_blend <= 1:
        raise CompressionError(f"point_blend {est.point_blend!r} is out of range; accepted: [0, 1]")


def _quantile_fit(x: np.ndarray, t: np.ndarray, tau: float, cap_pts: float) -> tuple[np.ndarray, float]:
    """Non-negative coefficients ``s`` with ``x @ s`` the ``tau``-quantile of ``t`` (pinball loss, a linear
    programme solved by HiGHS), targets at or above ``cap_pts`` censored (only falling short of the cap
    costs), each coefficient pulled (L1, weight :data:`PULL` × its column's sum) towards the shared one.

    Returns ``(s, shared)``.
    """
    n, p = x.shape
    cen = t >= cap_pts
    tc = np.minimum(t, cap_pts)
    tau = min(max(float(tau), 1e-3), 1.0 - 1e-3) if tau < 1 else 1.0 - 1e-4
    # a tiny cost on the coefficients picks the smallest among equally good fits (all censored: any large one)
    eps = 1e-6 * max(float(np.mean(tc)), 1e-3)

    def solve(xm: np.ndarray, pull: np.ndarray | None, s0: float) -> np.ndarray:
        q = xm.shape[1]
        c = [eps * xm.sum(axis=0) / max(n, 1), np.where(cen, 0.0, 1.0 - tau), np.full(n, tau)]
        a_eq = [np.hstack([xm, -np.eye(n), np.eye(n)])]
        b_eq = [tc]
        if pull is not None:
            c += [pull, pull]
            a_eq = [np.hstack([a_eq[0], np.zeros((n, 2 * q))]),
                    np.hstack([np.eye(q), np.zeros((q, 2 * n)), -np.eye(q), np.eye(q)])]
            b_eq = [tc, np.full(q, s0)]
        res = scipy.optimize.linprog(np.concatenate(c), A_eq=np.vstack(a_eq), b_eq=np.concatenate(b_eq),
                                     bounds=(0, None), method="highs")
        if res.status != 0:  # pragma: no cover - the programme is always feasible and bounded
            raise CompressionError(f"accuracy-estimator fit failed: {res.message}")
        return np.maximum(res.x[:q], 0.0)

    if n == 0 or p == 0:
        return np.zeros(p), 0.0
    shared = float(solve(x.sum(axis=1, keepdims=True), None, 0.0)[0])
    s = solve(x, PULL * x.sum(axis=0), shared)
    return s, shared
