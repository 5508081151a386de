"""Per-layer compression options (RLC candidates) and a small rank selector.

:func:`candidates` turns a :class:`~deepx_opt.graphs.model_graph.ModelGraph` into a :class:`CandidateGraph`:
for every layer, a list of :class:`LayerOption` — the dense layer (``rank=None``) and, for factorisable
layers, a few SVD ranks — each with its FLOPs, weight bytes, canonical ops (for cost prediction) and estimated
accuracy loss ``a[v, r]`` (:mod:`deepx_opt.graphs.accuracy`). The problem builder reads ``options``; the
factors themselves are built lazily (:meth:`LayerOption.factors`).

Default candidate ranks of a layer whose matrix is ``K × N`` (``m = min(K, N)``): ``m/2, m/4, … m/32``
(rounded, at least 1) and the smallest ranks keeping 99 %, 95 % and 90 % of the spectral energy, de-duplicated
and kept only if ``r (K + N) < K N`` (fewer FLOPs and bytes than dense). The dense layer is always an option
(it *is* the full-rank option: a full-rank factorisation would only cost more).

Example
-------
>>> from deepx_opt.graphs import load_onnx                              # doctest: +SKIP
>>> cg = candidates(load_onnx("mlp.onnx"), calib=x_val, labels=y_val)   # doctest: +SKIP
>>> choice = select_ranks(cg, max_accuracy_loss_pts=1.0)                # doctest: +SKIP
>>> small = cg.apply(choice)                                            # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from deepx_opt.errors import CompressionError, InfeasiblePlanError
from deepx_opt.graphs.accuracy import DEFAULT_CONFIGS, Estimator
from deepx_opt.graphs.compression import METHODS, LayerFactorizer, apply_ranks, factorizers, not_factorizable_reason
from deepx_opt.graphs.model_graph import ModelGraph, OpSpec, TensorInfo

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_FRACTIONS",
    "DEFAULT_ENERGIES",
    "LayerOption",
    "CandidateGraph",
    "candidate_ranks",
    "candidates",
    "select_ranks",
]

#: Factorisation used when none is named: "data" (activation-weighted SVD) when calibration data is given,
#: else "weight". The benchmark (benchmarks/rlc_accuracy.py, docs/rlc.md) compares the two.
DEFAULT_METHOD = "data"

#: Default ranks as fractions of min(K, N).
DEFAULT_FRACTIONS = (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32)
#: Default ranks by kept spectral energy.
DEFAULT_ENERGIES = (0.99, 0.95, 0.90)


def candidate_ranks(fz: LayerFactorizer, ranks=None, *, method: str = "weight") -> tuple[list[int], list[str]]:
    """Candidate ranks of one layer (ascending), and notes on ranks dropped.

    Parameters
    ----------
    fz : LayerFactorizer
    ranks : sequence, optional
        Integers are absolute ranks (``1..min(K, N)``, else :class:`CompressionError`); floats in ``(0, 1)``
        are fractions of ``min(K, N)``; strings ``"e0.95"`` are kept-energy fractions. Default: the module's
        set.
    method : {"weight", "data"}
        Spectrum used for the energy ranks.

    Examples
    --------
    >>> candidate_ranks(fz)                 # doctest: +SKIP
    ([2, 4, 8, 11, 16, 23, 32], [])
    """
    m = fz.max_rank
    spec: list[Any] = list(ranks) if ranks is not None else [*DEFAULT_FRACTIONS, *(f"e{e}" for e in DEFAULT_ENERGIES)]
    out: list[int] = []
    notes: list[str] = []
    for item in spec:
        if isinstance(item, str):
            if not item.startswith("e"):
                raise CompressionError(f"rank spec {item!r} is not understood; accepted: int rank, fraction in (0, 1), 'e0.95'")
            try:
                frac = float(item[1:])
            except ValueError:
                raise CompressionError(f"rank spec {item!r} is not understood; accepted: 'e' then an energy fraction in (0, 1]")
            r = fz.energy_rank(frac, method)
        elif isinstance(item, (float, np.floating)) and not float(item).is_integer():
            if not 0 < float(item) < 1:
                raise CompressionError(
                    f"rank fraction {item!r} of layer {fz.layer!r} is out of range; accepted: (0, 1) or an integer 1..{m}"
                )
            r = max(1, int(round(float(item) * m)))
        else:
            r = fz.check_rank(int(item) if isinstance(item, (float, np.floating)) else item)
        if r not in out:
            out.append(r)
    kept = sorted(r for r in out if fz.saves(r))
    dropped = sorted(r for r in out if not fz.saves(r))
    if dropped and ranks is not None:
        notes.append(f"layer {fz.layer!r}: ranks {dropped} dropped: they save nothing over dense (r·(K+N) ≥ K·N, "
                     f"K={fz.in_features}, N={fz.out_features})")
    return kept, notes


@dataclass
class LayerOption:
    """One way to run a layer: dense (``rank=None``) or factorised at ``rank``.

    ``ops`` are the canonical ops the layer runs with this option; ``tensors`` gives the shape and dtype of
    every tensor they read or write (activations, including the new rank-``r`` intermediates, and weights),
    so a cost model can price the option without the factorised ModelGraph. ``accuracy_loss_pts`` is
    ``a[v, r]`` in top-1 points, the conservative additive bound (with the estimator's safety margins) that a
    planner holds to its limit; ``accuracy_loss_point_pts`` is ``a_point[v, r]``, the point estimate of the
    same loss without the margins (never above ``a[v, r]``; equal to it when the estimator is not measured, and
    when not given).
    """

    layer: str
    rank: int | None
    flops: int
    params: int
    weight_bytes: int
    ops: list[OpSpec]
    accuracy_loss_pts: float
    kept_energy: float | None = None
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    _fz: LayerFactorizer | None = field(default=None, repr=False)
    _method: str = field(default="weight", repr=False)
    accuracy_loss_point_pts: float | None = None

    def __post_init__(self) -> None:
        # a central estimate above the bound would be no estimate of the same loss: the bound caps it (also when
        # an option is rebuilt with a lower bound, e.g. dataclasses.replace)
        point = self.accuracy_loss_pts if self.accuracy_loss_point_pts is None else self.accuracy_loss_point_pts
        self.accuracy_loss_point_pts = float(min(point, self.accuracy_loss_pts))

    def factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """``(U_r, V_r, b_r)`` built on demand (``None`` for the dense option)."""
        if self.rank is None or self._fz is None:
            return None
        return self._fz.factors(self.rank, self._method)

    def to_dict(self) -> dict:
        return {
            "rank": self.rank,
            "flops": int(self.flops),
            "params": int(self.params),
            "weight_bytes": int(self.weight_bytes),
            "accuracy_loss_pts": float(self.accuracy_loss_pts),
            "accuracy_loss_point_pts": float(self.accuracy_loss_point_pts),
            "kept_energy": None if self.kept_energy is None else float(self.kept_energy),
            "ops": [op.to_dict() for op in self.ops],
            "tensors": {k: v.to_dict() for k, v in self.tensors.items()},
        }


@dataclass
class CandidateGraph:
    """A model plus, per layer, its compression options.

    Attributes
    ----------
    model : ModelGraph
        The dense model.
    options : dict[str, list[LayerOption]]
        Every layer in ``model.layers()`` order; the first option of each is the dense one.
    method : str
        Factorisation method (``"weight"`` or ``"data"``).
    estimator : Estimator
        Where ``accuracy_loss_pts`` came from (its ``method`` and ``notes`` say how).
    notes : list of str
    """

    model: ModelGraph
    options: dict[str, list[LayerOption]]
    method: str
    estimator: Estimator
    notes: list[str] = field(default_factory=list)

    def layer_options(self, layer: str) -> list[LayerOption]:
        return self.options[layer]

    def option(self, layer: str, rank: int | None) -> LayerOption:
        for o in self.options[layer]:
            if o.rank == rank:
                return o
        raise CompressionError(
            f"layer {layer!r} has no option of rank {rank!r}; accepted: {[o.rank for o in self.options[layer]]}"
        )

    def apply(self, ranks: Mapping[str, int | None]) -> ModelGraph:
        """The ModelGraph with the chosen ranks (see :func:`~deepx_opt.graphs.compression.apply_ranks`)."""
        return apply_ranks(self.model, ranks, method=self.method, factorizers_=self.estimator.factorizers)

    def predicted_loss_pts(self, ranks: Mapping[str, int | None]) -> float:
        """``Σ a[v, r_v]`` over the chosen options: the planner's conservative additive bound."""
        return float(sum(self.option(v, r).accuracy_loss_pts for v, r in ranks.items()))

    def predicted_loss_point_pts(self, ranks: Mapping[str, int | None]) -> float:
        """``Σ a_point[v, r_v]`` over the chosen options: the additive point estimate (no safety margin)."""
        return float(sum(self.option(v, r).accuracy_loss_point_pts for v, r in ranks.items()))

    def verified_loss_pts(self, ranks: Mapping[str, int | None]) -> float:
        """The verified bound of this configuration: measured whole on the calibration data, plus the safety
        margins (:meth:`~deepx_opt.graphs.accuracy.Estimator.verified_pts`); what ``select_ranks(...,
        verify=True)`` holds to the limit. Needs calibration data."""
        self._need_calibration("verified_loss_pts")
        return self.estimator.verified_pts(ranks)

    def verified_loss_point_pts(self, ranks: Mapping[str, int | None]) -> float:
        """The verified point estimate of this configuration's loss: measured whole on the calibration data,
        without the safety margins (:meth:`~deepx_opt.graphs.accuracy.Estimator.verified_point_pts`); the
        prediction ``deepx compress`` reports. Needs calibration data."""
        self._need_calibration("verified_loss_point_pts")
        return self.estimator.verified_point_pts(ranks)

    def _need_calibration(self, what: str) -> None:
        if self.estimator.method not in ("labels", "disagreement"):
            raise CompressionError(
                f"{what}() needs calibration data; this CandidateGraph's estimator is {self.estimator.method!r}"
            )

    def refit(self, **settings) -> "CandidateGraph":
        """Refit the estimator with other settings (:meth:`~deepx_opt.graphs.accuracy.Estimator.refit`: no new
        measurement) and update every option's ``accuracy_loss_pts`` and ``accuracy_loss_point_pts``; returns
        self. Used to choose the
        estimator's settings on a development split (benchmarks/rlc_accuracy.py ``--tune``)."""
        est = self.estimator
        est.refit(**settings)
        for v, opts in self.options.items():
            for o in opts:
                if o.rank is not None:
                    o.accuracy_loss_pts = est.loss_pts(v, o.rank)
                    o.accuracy_loss_point_pts = est.loss_point_pts(v, o.rank)
        self.notes = [n for n in self.notes if not n.startswith("accuracy loss fitted")] + \
            [n for n in est.notes if n.startswith("accuracy loss fitted")]
        return self

    def totals(self, ranks: Mapping[str, int | None] | None = None) -> dict:
        """FLOPs, params and weight bytes of the whole model with ``ranks`` (dense when omitted)."""
        ranks = ranks or {}
        tot = {"flops": 0, "params": 0, "weight_bytes": 0}
        for v in self.options:
            o = self.option(v, ranks.get(v))
            tot["flops"] += o.flops
            tot["params"] += o.params
            tot["weight_bytes"] += o.weight_bytes
        return tot

    def summary(self) -> dict:
        """JSON-serialisable view (everything but the factors)."""
        return {
            "model": self.model.name,
            "method": self.method,
            "accuracy": self.estimator.summary(),
            "notes": list(self.notes),
            "layers": {v: [o.to_dict() for o in opts] for v, opts in self.options.items()},
            "dense": self.totals(),
        }


def candidates(
    model: ModelGraph,
    *,
    ranks=None,
    calib=None,
    labels=None,
    method: str | None = None,
    margin: float | None = None,
    coverage: float | None = None,
    target: str | None = None,
    layers: Sequence[str] | None = None,
    n_configs: int | None = None,
    seed: int = 0,
    estimator_options: Mapping[str, float] | None = None,
) -> CandidateGraph:
    """Compression options of every layer, with estimated accuracy loss.

    Parameters
    ----------
    model : ModelGraph
    ranks : sequence or mapping layer → sequence, optional
        Candidate ranks (see :func:`candidate_ranks`), for every layer or per layer.
    calib : ndarray or dict, optional
        Calibration inputs (held-out data, batch first). Without them the accuracy loss is an uncalibrated
        proxy (the estimator's ``method`` says which).
    labels : array-like of int, optional
        Labels of ``calib``: needed for ``target="loss"``; with them the estimator also records accuracy drops.
    method : {"weight", "data"}, optional
        Plain SVD of the weights or activation-weighted SVD (needs ``calib``). Default:
        :data:`DEFAULT_METHOD` when ``calib`` is given, else ``"weight"``.
    margin : float, optional
        Safety margin of the estimator (default :data:`~deepx_opt.graphs.accuracy.DEFAULT_MARGIN`).
    coverage : float, optional
        Fraction of measured configurations the estimate must cover (default
        :data:`~deepx_opt.graphs.accuracy.DEFAULT_COVERAGE`).
    target : {"loss", "disagreement"}, optional
        What the estimator is fitted to: the top-1 disagreement with the dense model (default, labels or not;
        conservative) or, with labels, the measured accuracy drop.
    layers : sequence of str, optional
        Only these layers get low-rank options (default: every factorisable layer).
    n_configs : int, optional
        Random multi-layer configurations measured to fit the estimator.
    seed : int
        Seed of those configurations.
    estimator_options : mapping, optional
        Further estimator settings (``fit_cap_pts``, ``fit_min_pts``, ``layer_margin_pts``, ``verify_blend``,
        ``soft_flip_width``, ``point_coverage``, ``point_layer_pts``, ``verified_point_layer_pts``,
        ``point_scale``, ``point_blend``; see :class:`~deepx_opt.graphs.accuracy.Estimator`), default the module's.

    Returns
    -------
    CandidateGraph
    """
    if method is None:
        method = DEFAULT_METHOD if calib is not None else "weight"
    if method not in METHODS:
        raise CompressionError(f"factorisation method {method!r} is unknown; accepted: {list(METHODS)}")
    if layers is not None:
        for v in layers:
            why = not_factorizable_reason(model, v)
            if why is not None:
                raise CompressionError(f"layer {v!r} cannot be factorised: {why}")
    fzs = factorizers(model, layers)
    notes: list[str] = []
    for v in model.layers():
        if model.dag.nodes[v].get("weighted") and v not in fzs and layers is None:
            notes.append(f"layer {v!r} left dense: {not_factorizable_reason(model, v)}")
    if isinstance(ranks, Mapping):
        unknown = sorted(set(ranks) - set(fzs))
        if unknown:
            raise CompressionError(f"ranks given for layers {unknown} that are not factorised; factorisable: {sorted(fzs)}")
    est_kwargs = {} if margin is None else {"margin": margin}
    if coverage is not None:
        est_kwargs["coverage"] = coverage
    est_kwargs.update(estimator_options or {})
    est = Estimator.build(model, fzs, calib=calib, labels=labels, factor_method=method, target=target, **est_kwargs)
    rank_sets: dict[str, list[int]] = {}
    for v, fz in fzs.items():
        spec = ranks.get(v) if isinstance(ranks, Mapping) else ranks
        rs, n = candidate_ranks(fz, spec, method=method)
        rank_sets[v] = rs
        notes += n
    est.fit(rank_sets, n_configs=DEFAULT_CONFIGS if n_configs is None else int(n_configs), seed=seed)

    options: dict[str, list[LayerOption]] = {}
    for v in model.layers():
        d = model.dag.nodes[v]
        opts = [LayerOption(v, None, int(d["flops"]), int(d["params"]), int(d["weight_bytes"]), list(d["ops"]), 0.0,
                            kept_energy=1.0 if v in fzs else None, tensors=op_tensors(model, d["ops"]))]
        fz = fzs.get(v)
        if fz is not None:
            s2 = fz.singular_values(method) ** 2
            tot = float(s2.sum()) or 1.0
            for r in rank_sets[v]:
                applied = apply_ranks(model, {v: r}, method=method, factorizers_=fzs, shape_only=True)
                one = applied.dag.nodes[v]
                opts.append(LayerOption(
                    v, r, int(one["flops"]), int(one["params"]), int(one["weight_bytes"]), list(one["ops"]),
                    est.loss_pts(v, r), kept_energy=float(s2[:r].sum()) / tot,
                    tensors=op_tensors(applied, one["ops"]), _fz=fz, _method=method,
                    accuracy_loss_point_pts=est.loss_point_pts(v, r),
                ))
        options[v] = opts
    return CandidateGraph(model=model, options=options, method=method, estimator=est, notes=notes + list(est.notes))


def op_tensors(model: ModelGraph, ops: Sequence[OpSpec]) -> dict[str, TensorInfo]:
    """Shape and dtype of every tensor ``ops`` read or write (activations and weights of ``model``)."""
    out: dict[str, TensorInfo] = {}
    for op in ops:
        for t in [*op.inputs, *op.outputs]:
            if not t or t in out:
                continue
            if t in model.tensors:
                out[t] = model.tensors[t]
            elif t in model.weights:
                a = model.weights[t]
                out[t] = TensorInfo(tuple(int(x) for x in a.shape), str(a.dtype))
    return out


def select_ranks(
    cg: CandidateGraph,
    max_accuracy_loss_pts: float,
    *,
    objective: str = "flops",
    resolution_pts: float = 0.01,
    verify: bool = False,
) -> dict[str, int | None]:
    """Ranks with the least total ``objective`` whose loss bound ``Σ a`` stays within the limit.

    An exact multiple-choice knapsack by dynamic programming over the loss budget, discretised in
    ``resolution_pts`` steps; each option's loss is rounded *up*, so the chosen set always satisfies the
    limit with the unrounded losses too. Ties on the objective are broken by weight bytes, then by lower
    predicted loss.

    Parameters
    ----------
    cg : CandidateGraph
    max_accuracy_loss_pts : float
        The limit, in top-1 percentage points (``>= 0``).
    objective : {"flops", "weight_bytes"}
    resolution_pts : float
    verify : bool
        Close the loop on the calibration data: measure the chosen configuration (all layers at once) and,
        while its verified bound (:meth:`CandidateGraph.verified_loss_pts`: the estimator's target measured on
        the calibration data, plus the estimator's margins; not the point estimate) exceeds the limit, select again under a budget lowered by
        the excess. Needs an estimator with calibration data. The MILP planner uses the plain ``Σ a`` form;
        this is for ``deepx compress``.

    Returns
    -------
    dict
        layer → rank (``None`` = dense) for every layer with low-rank options.
    """
    if not (isinstance(max_accuracy_loss_pts, (int, float)) and math.isfinite(max_accuracy_loss_pts)
            and max_accuracy_loss_pts >= 0):
        raise CompressionError(f"accuracy-loss limit {max_accuracy_loss_pts!r} is out of range; accepted: a number >= 0 (points)")
    if objective not in ("flops", "weight_bytes"):
        raise CompressionError(f"objective {objective!r} is unknown; accepted: ['flops', 'weight_bytes']")
    if not resolution_pts > 0:
        raise CompressionError(f"resolution {resolution_pts!r} is out of range; accepted: > 0")
    if verify:
        est = cg.estimator
        if est.method not in ("labels", "disagreement"):
            raise CompressionError(
                f"verify=True needs calibration data; this CandidateGraph's estimator is {est.method!r}"
            )
        budget = float(max_accuracy_loss_pts)
        for _ in range(50):
            choice = select_ranks(cg, budget, objective=objective, resolution_pts=resolution_pts)
            measured = est.verified_pts(choice)
            if measured <= max_accuracy_loss_pts + 1e-9 or budget <= 0:
                return choice
            budget = max(0.0, min(budget - (measured - max_accuracy_loss_pts), cg.predicted_loss_pts(choice) - resolution_pts))
        return select_ranks(cg, 0.0, objective=objective, resolution_pts=resolution_pts)
    layers = [v for v, opts in cg.options.items() if len(opts) > 1]
    cap = int(math.floor(max_accuracy_loss_pts / resolution_pts + 1e-9))
    inf = (float("inf"), float("inf"), float("inf"))
    # best[b] = (objective, bytes, loss) with total discretised loss exactly <= b, over layers so far
    best = [(0.0, 0.0, 0.0)] * (cap + 1)
    choice: list[list[int | None]] = []
    for v in layers:
        opts = cg.options[v]
        new = [inf] * (cap + 1)
        arg: list[int | None] = [None] * (cap + 1)
        for i, o in enumerate(opts):
            cost = int(math.ceil(o.accuracy_loss_pts / resolution_pts - 1e-9)) if o.rank is not None else 0
            if cost > cap:
                continue
            key = (float(getattr(o, objective)), float(o.weight_bytes), float(o.accuracy_loss_pts))
            for b in range(cost, cap + 1):
                prev = best[b - cost]
                if prev[0] == float("inf"):
                    continue
                cand = (prev[0] + key[0], prev[1] + key[1], prev[2] + key[2])
                if cand < new[b]:
                    new[b] = cand
                    arg[b] = i
        choice.append(arg)
        best = new
    if best[cap][0] == float("inf"):  # pragma: no cover - the dense option always fits
        raise InfeasiblePlanError(f"no rank choice meets the accuracy-loss limit {max_accuracy_loss_pts} points")
    # walk back
    out: dict[str, int | None] = {}
    b = cap
    for v, arg in zip(reversed(layers), reversed(choice)):
        i = arg[b]
        o = cg.options[v][i]
        out[v] = o.rank
        if o.rank is not None:
            b -= int(math.ceil(o.accuracy_loss_pts / resolution_pts - 1e-9))
    return dict(reversed(list(out.items())))
