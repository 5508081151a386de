"""Latency models: work features of canonical ops, small fitted regressions, block predictions.

Every canonical op (docs/ir.md) is reduced to an :class:`OpWork`: its kind of work (``gemm``, ``conv``, ...),
its FLOPs (the IR's convention: 2×MAC for conv/gemm, one per output element for element-wise ops, the window
size per output for pooling and LRN) and the bytes it moves (inputs + weights + outputs). A
:class:`LatencyModel` per (processor, work kind) maps those features to microseconds; a block's latency is the
sum over its ops, so a low-rank block (two GEMMs or convs) costs its two factors.

Two model families, chosen per kind by cross-validated relative error:

``linear``
    ``latency_us = c0 + c1·flops + c2·bytes`` (non-negative least squares on relative error).
``roofline``
    ``latency_us = c0 + max(c1·flops, c2·bytes)`` (roofline with a fixed overhead; ``least_squares``).

Models follow the estimator contract: ``fit`` returns ``self``, fitted attributes end in ``_``,
``predict``, ``to_dict``/``from_dict``. Work without a model raises :class:`~deepx_opt.errors.CostModelError`;
nothing is ever silently costed zero.

Example
-------
>>> import numpy as np
>>> from deepx_opt.cost_models.latency import LatencyModel
>>> flops = np.array([1e6, 4e6, 1.6e7, 6.4e7]); nbytes = np.array([4e4, 1e5, 3e5, 9e5])
>>> y_us = 5 + 1e-4 * flops + 1e-3 * nbytes
>>> m = LatencyModel("linear").fit(np.c_[flops, nbytes], y_us)
>>> [round(c, 6) for c in m.coef_]
[5.0, 0.0001, 0.001]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from deepx_opt.errors import CostModelError, ProfileError

__all__ = [
    "FEATURES",
    "FAMILIES",
    "OpWork",
    "LatencyModel",
    "op_kind",
    "op_work",
    "work_variant",
    "model_keys",
    "lowrank_pairs",
    "LowRankTable",
    "predict_works_us",
    "block_latency_us",
    "work_predictor",
    "context_bytes_of",
    "block_works",
    "model_shapes",
    "layer_works",
    "predict_work_us",
    "predict_block_us",
]

#: Feature names a latency model may use (see :class:`LatencyModel`).
FEATURES = ("flops", "bytes", "bytes_over_cache", "im2col_bytes", "im2col", "cold_bytes", "cold", "serial_bytes",
            "parallel")
#: Features that compare something with the model's ``cache_bytes`` threshold.
_CACHE_FEATURES = ("bytes_over_cache", "cold_bytes", "cold")
#: Features on the op's context (the working set of the model it runs in).
_CONTEXT_FEATURES = ("cold_bytes", "cold")
#: Features that compare FLOPs with the model's ``parallel_flops`` threshold: where a multi-threaded BLAS
#: starts to split an op between its threads (below it the op runs on one core).
_PARALLEL_FEATURES = ("serial_bytes", "parallel")
#: Model families; ``auto`` picks one of these per kind by cross-validated relative error.
FAMILIES = ("linear", "roofline")

_MAIN_FUSABLE = {"Conv", "Gemm", "MatMul"}
_VIEWS = {"Reshape", "Identity"}  # no data moves


@dataclass(frozen=True)
class OpWork:
    """The cost-relevant facts of one op: kind of work, FLOPs and bytes moved."""

    kind: str
    flops: float
    bytes: float
    op_type: str = ""
    name: str = ""
    im2col_bytes: float = 0.0  # column buffer of a k×k (or strided/padded) dense conv; 0 otherwise
    variant: str = ""  # finer class of work within the kind (see work_variant); "" = none
    context_bytes: float = 0.0  # working set of the model the op runs in (0: unknown / the op alone)
    #: shape of the op's matrix product (see :func:`lowrank_pairs`): GEMM ``(rows, inputs, outputs)``, dense 2-D conv
    #: ``(batch, in channels, out channels, kh, kw, in h, in w, out h, out w)``; ``()`` for other ops
    dims: tuple = ()


def work_variant(kind: str, op_type: str, *, rows: int = 0, pointwise: bool = False,
                 trans_b: bool = False, activation: bool = False) -> str:
    """Variant of a kind of work that gets its own latency model when calibrated (profile key
    ``"kind/variant"``): ``gemm`` → ``gemv`` (one output row: batch-1 FC layers, bound by reading the weight,
    stored inputs × outputs: ``MatMul``, ``Gemm`` with ``transB=0``, as RLC's factors are), ``gemv_t`` (the
    same with the weight stored outputs × inputs, ``transB=1``, as exporters write FC layers — another code
    path on backends that run the weight as stored; the numpy backend re-lays every GEMM weight out to outputs ×
    inputs at load, ``Backend.gemm_weight_layout``, so there both variants take that path) or ``gemm``; ``conv`` → ``pointwise``
    (1×1, stride 1, no padding: one GEMM) or ``im2col``; other kinds → the op type (``MaxPool`` and
    ``GlobalAveragePool`` differ, as do ``Reshape`` and ``Transpose``). An element-wise op carrying a fused
    Relu/Clip (``activation``: a residual ``Add`` before its ``Relu``) is ``op_type+act``: the numpy backend
    makes a second pass over the result, an OpenCL kernel clamps in the same pass, and neither costs what the
    plain op does.

    >>> work_variant("gemm", "Gemm", rows=1), work_variant("gemm", "Gemm", rows=1, trans_b=True)
    ('gemv', 'gemv_t')
    >>> work_variant("pool", "MaxPool"), work_variant("elementwise", "Add", activation=True)
    ('MaxPool', 'Add+act')
    """
    if kind == "gemm":
        return ("gemv_t" if trans_b else "gemv") if rows == 1 else "gemm"
    if kind == "conv":
        return "pointwise" if pointwise else "im2col"
    if kind == "elementwise" and activation:
        return f"{op_type}+act"
    return op_type


def model_keys(work: "OpWork") -> tuple[str, ...]:
    """Profile keys of the latency models that may cost ``work``, most specific first."""
    return (f"{work.kind}/{work.variant}", work.kind) if work.variant else (work.kind,)


# ------------------------------------------------------------------------------------ op → work

def _info(x: Any, dtype: str = "float32"):
    from deepx_opt.graphs.model_graph import TensorInfo

    if isinstance(x, TensorInfo):
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # a numpy array (a weight)
        return TensorInfo(tuple(int(d) for d in x.shape), str(np.dtype(x.dtype)))
    return TensorInfo(tuple(int(d) for d in x), dtype)


def op_kind(op: Any, in_shapes: Sequence[Any]) -> str:
    """Kind of work of a canonical op (the keys of a processor's latency models), as the importer assigns it
    (:func:`deepx_opt.graphs.ops.op_kind`: depthwise convs are ``dwconv``).

    >>> from deepx_opt.graphs import OpSpec
    >>> op_kind(OpSpec("Conv", ["x", "w"], ["y"], {"group": 32}), [(1, 32, 8, 8), (32, 1, 3, 3)])
    'dwconv'
    """
    from deepx_opt.graphs import ops as gops

    if op.op_type not in gops.CANONICAL:
        raise CostModelError(f"no kind of work known for op {op.op_type!r}; canonical ops: {', '.join(gops.CANONICAL)}")
    return gops.op_kind(op, [_info(s) for s in in_shapes])


def op_work(op: Any, shapes: Mapping[str, Any]) -> OpWork:
    """The :class:`OpWork` of one canonical op (an ``OpSpec``), given the shape (a tuple, ``TensorInfo`` or
    array) of every tensor it reads; outputs not in ``shapes`` are inferred. FLOPs follow the importer
    (:func:`deepx_opt.graphs.ops.op_flops`); bytes are inputs + weights + outputs, 0 for views
    (``Reshape``, ``Identity``).

    >>> from deepx_opt.graphs import OpSpec
    >>> w = op_work(OpSpec("Gemm", ["x", "W", "b"], ["y"], {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}),
    ...             {"x": (1, 64), "W": (64, 10), "b": (10,)})
    >>> (w.kind, w.flops, w.bytes)
    ('gemm', 1280.0, 2896.0)
    """
    from deepx_opt.graphs import ops as gops

    if op.op_type not in gops.CANONICAL:
        raise CostModelError(f"no kind of work known for op {op.op_type!r}; canonical ops: {', '.join(gops.CANONICAL)}")
    try:
        ins = [_info(shapes[n]) for n in op.inputs if n]
    except KeyError as exc:
        raise CostModelError(f"op {op.name or op.op_type!r}: no shape known for tensor {exc.args[0]!r}") from None
    if all(n in shapes for n in op.outputs):
        outs = [_info(shapes[n]) for n in op.outputs]
    else:
        outs = gops.infer_op(op, ins)
    kind = gops.op_kind(op, ins)
    flops = float(gops.op_flops(op, ins, outs))
    nbytes = 0.0 if op.op_type in _VIEWS else float(sum(t.nbytes for t in ins) + sum(t.nbytes for t in outs))
    im2col = 0.0
    pointwise = False
    rows = 0
    if kind == "conv":
        a = op.attrs
        pointwise = (tuple(ins[1].shape[2:]) == (1, 1) and tuple(a.get("strides", (1, 1))) == (1, 1)
                     and not any(a.get("pads", (0, 0, 0, 0))))
        if not pointwise:
            n, _, ho, wo = outs[0].shape
            cin_g, kh, kw = ins[1].shape[1:]
            im2col = float(n * int(a.get("group", 1)) * cin_g * kh * kw * ho * wo * 4)
    elif kind == "gemm":
        rows = int(np.prod(outs[0].shape[:-1], dtype=np.int64)) if len(outs[0].shape) > 1 else 1
    trans_b = op.op_type == "Gemm" and bool(op.attrs.get("transB", 0))
    return OpWork(kind=kind, flops=flops, bytes=nbytes, op_type=op.op_type, name=op.name or "", im2col_bytes=im2col,
                  variant=work_variant(kind, op.op_type, rows=rows, pointwise=pointwise, trans_b=trans_b,
                                       activation=bool(op.attrs.get("fused_activation"))),
                  dims=_op_dims(kind, op, ins, outs, rows))


def _op_dims(kind: str, op: Any, ins: Sequence[Any], outs: Sequence[Any], rows: int) -> tuple:
    """:attr:`OpWork.dims` of an op: the matrix shape of a GEMM and of a dense (``group = 1``) 2-D conv."""
    if kind == "gemm" and len(ins) >= 2 and ins[0].shape and outs[0].shape:
        trans_a = op.op_type == "Gemm" and bool(op.attrs.get("transA", 0))
        k = ins[0].shape[-2] if trans_a and len(ins[0].shape) >= 2 else ins[0].shape[-1]
        return (int(max(rows, 1)), int(k), int(outs[0].shape[-1]))
    if (kind == "conv" and int(op.attrs.get("group", 1)) == 1 and len(ins[0].shape) == 4
            and len(ins[1].shape) == 4 and len(outs[0].shape) == 4):
        n, cin, hi, wi = ins[0].shape
        cout, _, kh, kw = ins[1].shape
        return tuple(int(v) for v in (n, cin, cout, kh, kw, hi, wi, outs[0].shape[2], outs[0].shape[3]))
    return ()


def lowrank_pairs(works: Sequence[OpWork]) -> list[tuple[int, tuple, int]]:
    """The factor pairs of Runtime Layer Compression among a block's works, in order: ``(index of the first
    factor, signature of the dense layer, rank)``. A pair is a GEMM ``(m, k, r)`` followed by a GEMM
    ``(m, r, n)``, or a conv with ``r`` filters followed by a 1×1 conv reading its ``r`` channels, with ``r``
    below both sides of the dense layer; the signature is the dense layer's shape (``("gemm", m, k, n)``,
    ``("conv", batch, cin, cout, kh, kw, hi, wi, ho, wo)``), so layers of one shape share it whatever model
    they are in.

    >>> a = OpWork("gemm", 2 * 64 * 8, 0, dims=(1, 64, 8)); b = OpWork("gemm", 2 * 8 * 32, 0, dims=(1, 8, 32))
    >>> lowrank_pairs([a, b])
    [(0, ('gemm', 1, 64, 32), 8)]
    """
    out = []
    i = 0
    while i + 1 < len(works):
        a, b = works[i], works[i + 1]
        sig = None
        if a.kind == b.kind == "gemm" and len(a.dims) == 3 and len(b.dims) == 3:
            (m, k, r), (m2, r2, n) = a.dims, b.dims
            if m == m2 and r == r2 and r < min(k, n):
                sig = ("gemm", m, k, n)
        elif a.kind == b.kind == "conv" and len(a.dims) == 9 and len(b.dims) == 9:
            nb, cin, r, kh, kw, hi, wi, ho, wo = a.dims
            nb2, r2, cout, kh2, kw2, hi2, wi2, ho2, wo2 = b.dims
            if ((nb2, r2, kh2, kw2, hi2, wi2, ho2, wo2) == (nb, r, 1, 1, ho, wo, ho, wo)
                    and r < min(cin * kh * kw, cout)):
                sig = ("conv", nb, cin, cout, kh, kw, hi, wi, ho, wo)
        if sig is None:
            i += 1
            continue
        out.append((i, sig, int(a.dims[2])))
        i += 2
    return out


#: Ops the executor fuses a following Relu/Clip into (``deepx_opt.runtime.executor``).
_ACT_FUSABLE = {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum"}


def executed_ops(ops: Sequence[Any], outputs: Sequence[str] | None = None,
                 constants: Iterable[str] | None = None) -> list[Any]:
    """The ops the runtime executor runs for a block, from the shapes' point of view (mirrors
    ``deepx_opt.runtime.executor.block_steps``): ``Conv → BatchNormalization`` with constant parameters
    becomes the Conv (writing the BN's output), and ``Relu``/``Clip`` after ``Conv/Gemm/MatMul/Add/Sub/Mul/
    Div/Sum`` is fused into it. A pair merges only when the second op reads the first one's only output and
    nothing else (no later op, no block output in ``outputs``) reads it. ``constants``: tensor names that are
    weights (default: every input no op of the block produces).
    """
    from deepx_opt.graphs import OpSpec

    ops = list(ops)
    outputs = set(outputs or ())
    produced = {t for op in ops for t in op.outputs}
    const = set(constants) if constants is not None else None

    def is_const(t: str) -> bool:
        return bool(t) and (t in const if const is not None else t not in produced)

    def sole_reader(i: int) -> bool:
        first, nxt = ops[i], ops[i + 1]
        if len(first.outputs) != 1:
            return False
        t = first.outputs[0]
        return (list(nxt.inputs[:1]) == [t] and t not in nxt.inputs[1:] and t not in outputs
                and not any(t in later.inputs for later in ops[i + 2:]))

    i = 0
    while i + 1 < len(ops):
        a, b = ops[i], ops[i + 1]
        if (a.op_type == "Conv" and b.op_type == "BatchNormalization" and sole_reader(i)
                and all(is_const(t) for t in a.inputs[1:3] if t) and all(is_const(t) for t in b.inputs[1:5])):
            ops[i:i + 2] = [OpSpec("Conv", list(a.inputs), list(b.outputs), dict(a.attrs), a.name)]
            continue
        i += 1
    i = 0
    while i + 1 < len(ops):
        a, b = ops[i], ops[i + 1]
        if (a.op_type in _ACT_FUSABLE and b.op_type in ("Relu", "Clip") and sole_reader(i)
                and not a.attrs.get("fused_activation")):
            ops[i:i + 2] = [OpSpec(a.op_type, list(a.inputs), list(b.outputs),
                                   dict(a.attrs, fused_activation=b.op_type), a.name)]
        i += 1
    return ops


def block_works(ops: Iterable[Any], shapes: Mapping[str, Any], *, fused_relu: bool = True,
                outputs: Sequence[str] | None = None, context_bytes: float = 0.0) -> list[OpWork]:
    """Works of a block's ops as the executor runs them, in order, inferring the shapes of tensors internal to
    the block.

    With ``fused_relu`` (default) the executor's rewrites apply (:func:`executed_ops`): Conv+BatchNormalization
    folding and Relu/Clip fusion into the op producing their input add no separate work. ``outputs``: the
    block's output tensors (an intermediate that is also an output is not fused away). ``context_bytes``:
    working set of the model the block runs in (:func:`context_bytes_of`), set on every work.
    """
    from deepx_opt.graphs import ops as gops

    ops = list(ops)
    known = dict(shapes)
    for op in ops:  # shapes of every tensor, before the rewrites drop intermediates
        missing = [n for n in op.inputs if n and n not in known]
        if missing:
            raise CostModelError(f"op {op.name or op.op_type!r}: no shape known for tensor(s) {missing}")
        if any(n not in known for n in op.outputs):
            if op.op_type not in gops.CANONICAL:
                raise CostModelError(f"no kind of work known for op {op.op_type!r}")
            for n, info in zip(op.outputs, gops.infer_op(op, [_info(known[n]) for n in op.inputs if n])):
                known.setdefault(n, info)
    run = executed_ops(ops, outputs) if fused_relu else ops
    works = [op_work(op, known) for op in run]
    if context_bytes:
        works = [replace(w, context_bytes=float(context_bytes)) for w in works]
    return works


def context_bytes_of(shapes: Mapping[str, Any]) -> float:
    """Working set of a model from the shapes of all its tensors (weights and activations): the sum of their
    bytes. An op inside a model whose working set exceeds a cache finds its weights colder than alone."""
    return float(sum(_info(s).nbytes for s in shapes.values()))


def model_shapes(model: Any) -> dict[str, Any]:
    """``TensorInfo`` of every tensor of a ModelGraph: activations (``model.tensors``) and weights."""
    out: dict[str, Any] = dict(model.tensors)
    out.update({n: _info(w) for n, w in model.weights.items()})
    return out


def layer_works(model: Any, layer: str, *, ops: Sequence[Any] | None = None,
                extra_shapes: Mapping[str, Sequence[int]] | None = None, fused_relu: bool = True,
                context_bytes: float = 0.0) -> list[OpWork]:
    """Works of one layer of a ModelGraph, from its own ops or from replacement ``ops`` (a low-rank variant,
    whose factor weights' shapes come in ``extra_shapes``)."""
    shapes = model_shapes(model)
    if extra_shapes:
        shapes.update({k: _info(v) for k, v in extra_shapes.items()})
    outs = model.dag.nodes[layer]["outputs"] if layer in model.dag.nodes else None
    return block_works(ops if ops is not None else model.dag.nodes[layer]["ops"], shapes, fused_relu=fused_relu,
                       outputs=outs, context_bytes=context_bytes)


# ------------------------------------------------------------------------------------ the estimator

def _feature_value(w: OpWork, name: str, cache_bytes: float, parallel_flops: float = 0.0) -> float:
    if name in _PARALLEL_FEATURES:
        par = parallel_flops > 0 and float(w.flops) >= parallel_flops
        return (0.0 if par else float(w.bytes)) if name == "serial_bytes" else float(par)
    if name == "bytes_over_cache":
        return max(0.0, float(w.bytes) - cache_bytes)
    if name == "im2col":
        return 1.0 if w.im2col_bytes > 0 else 0.0
    if name in _CONTEXT_FEATURES:
        cold = max(float(w.context_bytes), float(w.bytes)) > cache_bytes
        return (float(w.bytes) if name == "cold_bytes" else 1.0) if cold else 0.0
    return float(getattr(w, name))


def _as_matrix(X: Any, features: Sequence[str], cache_bytes: float = 0.0, parallel_flops: float = 0.0) -> np.ndarray:
    if isinstance(X, OpWork):
        X = [X]
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], OpWork):
        return np.array([[_feature_value(w, f, cache_bytes, parallel_flops) for f in features] for w in X],
                        dtype=float)
    A = np.asarray(X, dtype=float)
    if A.ndim == 1:
        A = A[None, :]
    if A.shape[1] != len(features):
        raise CostModelError(f"expected {len(features)} feature columns ({', '.join(features)}); got {A.shape[1]}")
    return A


def _context_of(X: Any, n: int) -> np.ndarray | None:
    """``context_bytes`` of each sample when ``X`` holds :class:`OpWork` items (None for a feature matrix)."""
    if isinstance(X, OpWork):
        return np.array([float(X.context_bytes)])
    if isinstance(X, (list, tuple)) and len(X) == n and X and isinstance(X[0], OpWork):
        return np.array([float(w.context_bytes) for w in X])
    return None


def _eval(family: str, coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``linear``: c0 + Σ cj·xj; ``roofline``: c0 + max(c1·x1, c2·x2) + Σ_{j>2} cj·xj."""
    coef = np.asarray(coef, dtype=float)
    if family == "linear" or X.shape[1] < 2:
        return coef[0] + X @ coef[1:]
    return coef[0] + np.maximum(X[:, 0] * coef[1], X[:, 1] * coef[2]) + X[:, 2:] @ coef[3:]


def _fit_nnls(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Linear model, non-negative least squares on relative error (a good start for the log fit)."""
    from scipy.optimize import nnls

    sw = np.ones(len(y)) if w is None else np.sqrt(w)
    A = np.c_[np.ones(len(y)), X] / y[:, None] * sw[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    sol, _ = nnls(A / scale, sw, maxiter=50 * A.shape[1])
    return sol / scale


def _fit_log(family: str, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Non-negative coefficients minimising Σ (ln pred − ln y)²: symmetric in over/under-prediction, unlike
    least squares on relative error, which favours predicting low."""
    from scipy.optimize import least_squares

    # a feature that is 0 on every sample gets coefficient 0 (it carries no information)
    unit = np.r_[np.median(y), [np.median(y) / np.max(X[:, j]) if np.max(X[:, j]) > 0 else 0.0
                                for j in range(X.shape[1])]]
    floor = 1e-6 * float(np.min(y))

    sw = np.ones(len(y)) if w is None else np.sqrt(np.asarray(w, dtype=float))

    def resid(p):
        return sw * (np.log(np.maximum(_eval(family, p * unit, X), floor)) - np.log(y))

    ones = np.ones(len(y))

    def jac(p):  # analytic: d ln(pred) / dp = (d pred / dp) / pred
        c = p * unit
        pred = _eval(family, c, X)
        if family == "linear" or X.shape[1] < 2:
            D = np.c_[ones, X]
        else:
            first = X[:, 0] * c[1] >= X[:, 1] * c[2]
            D = np.c_[ones, np.where(first, X[:, 0], 0.0), np.where(first, 0.0, X[:, 1]), X[:, 2:]]
        J = D * unit[None, :] / np.maximum(pred, floor)[:, None]
        J[pred < floor] = 0.0
        return J * sw[:, None]

    lin = _fit_nnls(X, y, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        starts = [np.where(unit > 0, lin / np.where(unit > 0, unit, 1.0), 0.0)]
    ratios = [np.median(y / np.maximum(X[:, j], 1e-30)) if np.any(X[:, j] > 0) else 0.0 for j in range(X.shape[1])]
    with np.errstate(divide="ignore", invalid="ignore"):
        starts.append(np.where(unit > 0, np.r_[0.5 * y.min(), 0.5 * np.array(ratios)] / np.where(unit > 0, unit, 1.0),
                               0.0))
    best = None
    for p0 in starts:
        p0 = np.maximum(p0, 1e-9)
        if not np.all(np.isfinite(p0)):
            continue
        try:
            r = least_squares(resid, p0, jac=jac, bounds=(0.0, np.inf), method="trf", max_nfev=100 * (len(p0) + 1))
        except ValueError:  # scipy's trf can fail on ill-scaled samples ("x is not within the trust region")
            continue
        if best is None or r.cost < best.cost:
            best = r
    if best is None:  # every start failed: keep the non-negative least-squares solution
        return lin
    return best.x * unit


def _mape(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y) / y) * 100.0)


#: Features whose logarithms place a sample for the local correction (LatencyModel.set_local_correction).
_SHAPE_FEATURES = ("flops", "bytes", "im2col_bytes", "cold", "parallel")

#: Candidate cache sizes for the ``bytes_over_cache`` feature (chosen per model by cross-validation).
CACHE_CANDIDATES = (256 * 1024, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20)


class LatencyModel:
    """Latency of one kind of work on one processor, from FLOPs, bytes and shape features.

    Parameters
    ----------
    family : {"auto", "linear", "roofline"}
        ``linear``: ``c0 + Σ c_j·x_j``; ``roofline``: ``c0 + max(c1·flops, c2·bytes) + Σ_{j>2} c_j·x_j``
        (the first two features must then be ``flops`` and ``bytes``); ``auto`` picks by ``cv_folds``-fold
        cross-validated MAPE (ties go to ``linear``).
    features : sequence of str
        Feature columns drawn from :data:`FEATURES`: ``flops``, ``bytes``, ``bytes_over_cache``
        (``max(0, bytes − cache_bytes)``: working sets that spill the cache run at memory speed),
        ``im2col_bytes`` (the column buffer of a k×k conv) and ``im2col`` (1 when there is one),
        ``serial_bytes`` (the bytes of an op below ``parallel_flops``, which a multi-threaded BLAS leaves on one
        core) and ``parallel`` (1 for an op at or above it: what waking the other threads costs).
    cache_bytes : float or None
        Threshold of ``bytes_over_cache``; None picks one of :data:`CACHE_CANDIDATES` by cross-validation.
    parallel_flops : float or None
        Threshold of ``serial_bytes`` / ``parallel`` (measured by calibration: where the BLAS starts using its
        threads; required with those features).
    cv_folds : int
        Folds for the ``auto`` and cache choices (fewer samples than ``2·cv_folds`` use training error).

    Attributes
    ----------
    family_ : str
    coef_ : list[float]
        ``[c0 (µs), c_feature1 (µs per unit), ...]``, all non-negative.
    cache_bytes_ : float
    train_mape_ : float
        Mean absolute percentage error on the training samples.
    cv_mape_ : dict[str, float]
        Cross-validated MAPE of each family tried.
    n_samples_ : int

    Fitting minimises the squared log error with non-negative coefficients (``scipy.optimize.least_squares``
    started from a non-negative least-squares solution), so predictions are monotone in every feature — and so
    in FLOPs and bytes, except across ``parallel_flops``, where a BLAS that starts using all its threads makes
    a larger op faster (on the 16-core H200 host a 1.4 MB weight takes 5× longer than a 2 MB one).
    """

    def __init__(self, family: str = "auto", *, features: Sequence[str] = FEATURES[:2],
                 cache_bytes: float | None = None, cv_folds: int = 4, parallel_flops: float | None = None):
        if family not in ("auto",) + FAMILIES:
            raise CostModelError(f"unknown latency model family {family!r}; accepted: auto, {', '.join(FAMILIES)}")
        bad = [f for f in features if f not in FEATURES]
        if bad or not features:
            raise CostModelError(f"unknown features {bad}; accepted: {', '.join(FEATURES)}")
        if any(f in _PARALLEL_FEATURES for f in features) and not (parallel_flops and parallel_flops > 0):
            raise CostModelError(f"features {', '.join(f for f in features if f in _PARALLEL_FEATURES)} need "
                                 f"parallel_flops > 0; got {parallel_flops!r}")
        self.family = family
        self.features = tuple(features)
        self.cache_bytes = cache_bytes
        self.cv_folds = int(cv_folds)
        self.parallel_flops = float(parallel_flops or 0.0)

    def _families(self) -> tuple[str, ...]:
        if self.family != "auto":
            return (self.family,)
        if self.features[:2] == ("flops", "bytes"):
            return FAMILIES
        return ("linear",)

    def fit(self, X: Any, y_us: Any, sample_weight: Any = None) -> "LatencyModel":
        """Fit on samples ``X`` (a list of :class:`OpWork`, or a feature matrix) and latencies ``y_us``
        (``sample_weight``: optional weight of each sample's squared log error).

        Returns
        -------
        LatencyModel
            ``self``.
        """
        y = np.asarray(y_us, dtype=float).ravel()
        works = X if isinstance(X, (list, tuple)) and X and isinstance(X[0], OpWork) else None
        needs_cache = any(f in _CACHE_FEATURES for f in self.features)
        if works is None and needs_cache and self.cache_bytes is None:
            raise CostModelError(f"{', '.join(f for f in self.features if f in _CACHE_FEATURES)} from a feature "
                                 f"matrix needs cache_bytes")
        if self.cache_bytes is not None or not needs_cache:
            caches = [self.cache_bytes]
        else:  # thresholds with at least 3 samples on each side (else the spill slope is not determined)
            if "bytes_over_cache" in self.features:
                nb = np.array([w.bytes for w in works])
            else:
                nb = np.array([max(w.context_bytes, w.bytes) for w in works])
            caches = [c for c in CACHE_CANDIDATES if (nb > c).sum() >= 3 and (nb <= c).sum() >= 3] or [0.0]
        mats = {c: _as_matrix(X, self.features, c or 0.0, self.parallel_flops) for c in caches}
        n = len(next(iter(mats.values())))
        if len(y) != n:
            raise CostModelError(f"{n} feature rows but {len(y)} latencies")
        if len(y) < 2:
            raise CostModelError(f"a latency model needs at least 2 samples; got {len(y)}")
        if np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise CostModelError("latencies must be finite and > 0 µs")
        wt = None if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        if wt is not None and (len(wt) != len(y) or np.any(~np.isfinite(wt)) or np.any(wt <= 0)):
            raise CostModelError(f"sample_weight: expected {len(y)} finite weights > 0")
        k = self.cv_folds
        use_cv = len(y) >= 2 * k
        idx = np.random.default_rng(0).permutation(len(y))
        folds = np.array_split(idx, k) if use_cv else []
        scores: dict[tuple[str, Any], float] = {}
        for c, A in mats.items():
            for fam in self._families():
                if use_cv and (len(mats) > 1 or len(self._families()) > 1):
                    errs = []
                    for f in folds:
                        tr = np.setdiff1d(idx, f)
                        coef = _fit_log(fam, A[tr], y[tr], None if wt is None else wt[tr])
                        errs.append((np.abs(_eval(fam, coef, A[f]) - y[f]) / y[f]) * (1.0 if wt is None else wt[f]))
                    norm = 1.0 if wt is None else float(np.mean(wt))
                    scores[(fam, c)] = float(np.mean(np.concatenate(errs)) / norm * 100.0)
                else:
                    scores[(fam, c)] = _mape(_eval(fam, _fit_log(fam, A, y, wt), A), y)
        fam, c = min(scores, key=lambda key: (scores[key] - (0.5 if key[0] == "linear" else 0.0), key[0]))
        A = mats[c]
        coef = _fit_log(fam, A, y, wt)
        self.family_ = fam
        self.cache_bytes_ = float(c or 0.0)
        self.coef_ = [float(v) for v in coef]
        self.train_mape_ = _mape(_eval(fam, coef, A), y)
        self.cv_mape_ = {f: min(v for (ff, _), v in scores.items() if ff == f) for f in {k[0] for k in scores}} \
            if use_cv else {}
        self.n_samples_ = int(len(y))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise CostModelError("this LatencyModel is not fitted; call fit() or build it with from_dict()")

    def predict(self, X: Any, *, point_mask: np.ndarray | None = None, local: bool = True) -> np.ndarray:
        """Predicted latency in µs of each sample (:class:`OpWork` items or feature-matrix rows): the
        regression, times the local correction of :meth:`set_local_correction` when there is one (and
        ``local``; ``local=False`` gives the regression alone).

        ``point_mask`` (samples × correction points, 0/1) leaves points out of each sample's correction, e.g.
        a sample's own model run when the correction is cross-validated."""
        self._check_fitted()
        A = _as_matrix(X, self.features, self.cache_bytes_, self.parallel_flops)
        base = _eval(self.family_, np.asarray(self.coef_), A)
        pts = getattr(self, "local_points_", None)
        if not local or pts is None or len(pts) == 0:
            return base
        return base * np.exp(self._correction(A, _context_of(X, len(A)), point_mask))

    def _shape_coords(self, A: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        cols = [j for j, f in enumerate(self.features) if f in _SHAPE_FEATURES]
        Z = np.log1p(np.maximum(A[:, cols], 0.0))
        scale = getattr(self, "local_context_scale_", 0.0)
        if scale:
            ctx = np.zeros(len(A)) if context is None else np.asarray(context, dtype=float)
            Z = np.c_[Z, scale * np.log1p(np.maximum(ctx, 0.0))]
        return Z

    def _correction(self, A: np.ndarray, context: np.ndarray | None = None,
                    point_mask: np.ndarray | None = None) -> np.ndarray:
        P = np.asarray(self.local_points_, dtype=float)
        Z = self._shape_coords(A, context)
        d2 = ((Z[:, None, :] - P[None, :, :-1]) ** 2).sum(axis=2)
        mask = 1.0 if point_mask is None else np.asarray(point_mask, dtype=float)
        k = np.exp(-0.5 * d2 / self.local_bandwidth_ ** 2) * mask
        out = (k @ P[:, -1]) / (k.sum(axis=1) + self.local_shrink_)
        rec = getattr(self, "local_recall_", None)
        if rec:
            k2 = np.exp(-0.5 * d2 / rec["bandwidth"] ** 2) * mask
            out = out + (k2 @ np.asarray(rec["values"])) / (k2.sum(axis=1) + self.local_shrink_)
        return out

    def set_local_correction(self, X: Any, y_us: Any, *, bandwidth: float = 0.1,
                             shrink: float = 0.05, context_scale: float = 0.0,
                             recall_bandwidth: float | None = None) -> "LatencyModel":
        """Correct the regression locally with measured samples ``X``, ``y_us`` (ops timed inside models):
        a prediction is multiplied by ``exp(Σ k_i r_i / (Σ k_i + shrink))`` where ``r_i`` is sample i's log
        ratio measured / regression and ``k_i = exp(−d_i² / 2·bandwidth²)`` a Gaussian kernel of the distance
        between log-shapes (``ln(1 + x)`` of flops, bytes, im2col bytes and, with ``context_scale`` > 0,
        ``context_scale · ln(1 + context bytes)``: the working set of the model the op ran in). Near a
        measured shape the prediction approaches the measurement; far from every one (or with ``shrink``
        large) it is the regression. ``recall_bandwidth`` (e.g. 0.05) adds a second, narrow kernel on what
        the first leaves of each sample's log ratio, so that a broad correction (which carries to unseen
        shapes) still reproduces the shapes it was given. Returns ``self``.
        """
        self._check_fitted()
        A = _as_matrix(X, self.features, self.cache_bytes_, self.parallel_flops)
        y = np.asarray(y_us, dtype=float).ravel()
        if len(y) != len(A) or np.any(~np.isfinite(y)) or np.any(y <= 0):
            raise CostModelError(f"local correction: {len(A)} samples need as many finite latencies > 0 µs")
        if not bandwidth > 0 or not shrink > 0:
            raise CostModelError(f"local correction: bandwidth {bandwidth!r} and shrink {shrink!r} must be > 0")
        if not context_scale >= 0:
            raise CostModelError(f"local correction: context_scale {context_scale!r} must be >= 0")
        self.local_points_ = None
        self.local_context_scale_ = float(context_scale)
        r = np.log(y) - np.log(np.maximum(_eval(self.family_, np.asarray(self.coef_), A), 1e-9))
        self.local_points_ = np.c_[self._shape_coords(A, _context_of(X, len(A))), r].tolist()
        self.local_bandwidth_ = float(bandwidth)
        self.local_shrink_ = float(shrink)
        self.local_recall_ = None
        if recall_bandwidth is not None:
            if not recall_bandwidth > 0:
                raise CostModelError(f"local correction: recall_bandwidth {recall_bandwidth!r} must be > 0")
            left = r - self._correction(A, _context_of(X, len(A)))
            self.local_recall_ = {"bandwidth": float(recall_bandwidth), "values": [float(v) for v in left]}
        return self

    # -------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        self._check_fitted()
        d = {"family": self.family_, "features": list(self.features), "coef_": list(self.coef_),
             "n_samples_": self.n_samples_, "train_mape_": round(self.train_mape_, 3)}
        if any(f in _CACHE_FEATURES for f in self.features):
            d["cache_bytes"] = self.cache_bytes_
        if any(f in _PARALLEL_FEATURES for f in self.features):
            d["parallel_flops"] = self.parallel_flops
        if self.cv_mape_:
            d["cv_mape_"] = {k: round(v, 3) for k, v in self.cv_mape_.items()}
        if getattr(self, "local_points_", None):
            d["local_correction"] = {"bandwidth": self.local_bandwidth_, "shrink": self.local_shrink_,
                                     "context_scale": getattr(self, "local_context_scale_", 0.0),
                                     **({"recall": {"bandwidth": self.local_recall_["bandwidth"],
                                                    "values": [round(v, 6) for v in self.local_recall_["values"]]}}
                                        if getattr(self, "local_recall_", None) else {}),
                                     "points": [[round(v, 6) for v in pt] for pt in self.local_points_]}
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "LatencyModel":
        """Rebuild a fitted model; raises :class:`ProfileError` naming the bad field."""
        if not isinstance(d, dict):
            raise ProfileError(f"a latency model is an object; got {type(d).__name__}")
        fam = d.get("family")
        if fam not in FAMILIES:
            raise ProfileError(f"family {fam!r} is not one of {', '.join(FAMILIES)}")
        feats = d.get("features", list(FEATURES[:2]))
        if not isinstance(feats, list) or not feats or any(f not in FEATURES for f in feats):
            raise ProfileError(f"features {feats!r}; accepted: a non-empty list drawn from {', '.join(FEATURES)}")
        if fam == "roofline" and feats[:2] != ["flops", "bytes"]:
            raise ProfileError(f"a roofline model's first features are flops, bytes; got {feats!r}")
        coef = d.get("coef_")
        if not isinstance(coef, list) or len(coef) != 1 + len(feats):
            raise ProfileError(f"coef_ {coef!r}; expected a list of {1 + len(feats)} numbers (c0 then one per feature)")
        for c in coef:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c < 0:
                raise ProfileError(f"coef_ value {c!r}; expected finite numbers >= 0")
        cache = d.get("cache_bytes", 0.0)
        if any(f in _CACHE_FEATURES for f in feats) and (not isinstance(cache, (int, float)) or cache < 0):
            raise ProfileError(f"cache_bytes {cache!r}; expected a number of bytes >= 0")
        par = d.get("parallel_flops", 0.0)
        if any(f in _PARALLEL_FEATURES for f in feats) and (isinstance(par, bool) or not isinstance(par, (int, float))
                                                             or not par > 0):
            raise ProfileError(f"parallel_flops {par!r}; expected a number of FLOPs > 0 with features "
                               f"{', '.join(_PARALLEL_FEATURES)}")
        m = cls(fam, features=feats, cache_bytes=float(cache or 0.0), parallel_flops=float(par or 0.0) or None)
        m.family_ = fam
        m.cache_bytes_ = float(cache or 0.0)
        m.coef_ = [float(c) for c in coef]
        m.train_mape_ = float(d.get("train_mape_", float("nan")))
        m.cv_mape_ = dict(d.get("cv_mape_", {}))
        m.n_samples_ = int(d.get("n_samples_", 0))
        lc = d.get("local_correction")
        if lc is not None:
            try:
                pts = np.asarray(lc["points"], dtype=float)
                bw, sh = float(lc["bandwidth"]), float(lc["shrink"])
                cs = float(lc.get("context_scale", 0.0))
            except (KeyError, TypeError, ValueError):
                raise ProfileError("local_correction: expected {bandwidth, shrink, points: [[coords..., "
                                   "log ratio], ...]}") from None
            ncoord = sum(f in _SHAPE_FEATURES for f in feats) + (1 if cs else 0)
            if pts.ndim != 2 or pts.shape[1] != ncoord + 1 or not np.all(np.isfinite(pts)) or not (bw > 0 and sh > 0) \
                    or cs < 0:
                raise ProfileError(f"local_correction: points must be rows of {ncoord + 1} finite numbers and "
                                   f"bandwidth, shrink > 0; got shape {pts.shape}, {bw!r}, {sh!r}")
            m.local_points_ = pts.tolist()
            m.local_bandwidth_, m.local_shrink_, m.local_context_scale_ = bw, sh, cs
            m.local_recall_ = None
            rec = lc.get("recall")
            if rec is not None:
                try:
                    rbw, vals = float(rec["bandwidth"]), [float(v) for v in rec["values"]]
                except (KeyError, TypeError, ValueError):
                    raise ProfileError("local_correction.recall: expected {bandwidth, values: [...]}") from None
                if not rbw > 0 or len(vals) != len(pts) or not all(math.isfinite(v) for v in vals):
                    raise ProfileError(f"local_correction.recall: bandwidth > 0 and {len(pts)} finite values "
                                       f"expected; got {rbw!r} and {len(vals)} values")
                m.local_recall_ = {"bandwidth": rbw, "values": vals}
        return m

    def __repr__(self) -> str:
        if hasattr(self, "coef_"):
            return f"LatencyModel({self.family_!r}, coef_={[float(f'{c:.4g}') for c in self.coef_]})"
        return f"LatencyModel({self.family!r}, unfitted)"


# ------------------------------------------------------------------------------------ predictions

def _finite_number(v: Any) -> bool:
    """A finite int or float (not a bool), as the profile's numeric fields must be."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class LowRankTable:
    """In-model corrections of Runtime Layer Compression's factor pairs, per dense layer shape and rank.

    Calibration times the zoo's factorisable layers inside whole-model runs at a few ranks each. A factor
    pair's latency is far from the sum of its two factors timed apart (small pairs pay for two dispatches
    and a hand-over, large ones find the second factor's input in cache), and the kernel of the local
    correction (:meth:`LatencyModel.set_local_correction`), which must carry across layers, is too narrow to
    carry from one calibrated rank to the next. The table keeps, per dense layer shape (the signature of
    :func:`lowrank_pairs`), the log ratio of the pair's in-model time to the regression of its two factors
    at each calibrated rank; a pair at rank ``r`` is then predicted as that regression times the ratio
    interpolated linearly in ``ln r`` between the calibrated ranks around it. Beyond the calibrated ranks
    the nearest ratio's weight decays as ``exp(−d² / 2 scale²)`` with ``d`` the distance in ``ln r``, and the
    rest of the prediction is the plain one (:func:`predict_work_us` of both factors).

    Layers of one shape in different models share an entry, but not always a ratio: a pair's in-model time
    also depends on the model around it (svhn's fc2 and digits_mlp's fc3, both 128 → 10, take 7.6 and 5.5 µs
    at rank 7 on this 2-core VM; their mean missed both by 15 %). An entry may therefore keep, for each model
    the shape was timed in, that model's curve (``contexts``: its working set and ratio at each calibrated
    rank). A pair at rank ``r`` in a model of working set ``c`` then takes the curves' ratios at ``r`` (each
    interpolated in ``ln r`` like the mean) weighted by ``exp(−(ln c − ln c_i(r))² / 2 context_scale²)``, with
    ``c_i(r)`` the curve's working set interpolated alike, shrunk towards the entry's mean by a prior weight
    :data:`CONTEXT_PRIOR`: the ratio of its own model when that was timed, the mean of all when its model is
    far from every one timed.

    Parameters
    ----------
    entries : list of dict
        ``{"signature": [...], "ranks": [r1 < r2 < ...], "log_ratio": [...]}``, optionally with
        ``"contexts": [{"context_bytes": [...], "log_ratio": [...]}, ...]`` (one curve per model, one value
        per rank).
    scale : float
        Decay length beyond the calibrated ranks, in ``ln r`` (default ``ln 2``: one halving of the rank).
    context_scale : float
        Width of the context kernel in ``ln`` working-set bytes (default ``ln 2``).

    >>> t = LowRankTable([{"signature": ["gemm", 1, 64, 32], "ranks": [4, 16], "log_ratio": [0.0, 0.2]}])
    >>> round(t.correction(("gemm", 1, 64, 32), 8)[0], 3), t.correction(("gemm", 1, 64, 32), 8)[1]
    (0.1, 1.0)
    >>> t.correction(("gemm", 1, 64, 64), 8) is None
    True
    """

    #: Weight of an entry's mean ratio against its per-context ratios (whose weights are at most 1).
    CONTEXT_PRIOR = 0.1

    def __init__(self, entries: Sequence[Mapping[str, Any]] = (), *, scale: float = math.log(2.0),
                 context_scale: float = math.log(2.0)):
        for name, v in (("scale", scale), ("context_scale", context_scale)):
            if not (_finite_number(v) and v > 0):
                raise ProfileError(f"lowrank_table.{name} {v!r}; expected a number > 0 (ln units)")
        self.scale = float(scale)
        self.context_scale = float(context_scale)
        self._by_sig: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._contexts: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # sig → (ln context, ratios per rank)
        for i, e in enumerate(entries):
            where = f"lowrank_table.entries[{i}]"
            if not isinstance(e, Mapping):
                raise ProfileError(f"{where}: {type(e).__name__} given; expected an object")
            sig, ranks, lr = e.get("signature"), e.get("ranks"), e.get("log_ratio")
            if not isinstance(sig, (list, tuple)) or not sig or sig[0] not in ("gemm", "conv") \
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sig[1:]):
                raise ProfileError(f"{where}.signature {sig!r}; expected [\"gemm\" or \"conv\", positive "
                                   f"integers...]")
            if not isinstance(ranks, list) or not ranks or not isinstance(lr, list) or len(lr) != len(ranks):
                raise ProfileError(f"{where}: ranks and log_ratio must be non-empty lists of one length")
            if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks) \
                    or any(b <= a for a, b in zip(ranks, ranks[1:])):
                raise ProfileError(f"{where}.ranks {ranks!r}; expected increasing integers >= 1")
            if not all(_finite_number(v) for v in lr):
                raise ProfileError(f"{where}.log_ratio {lr!r}; expected finite numbers")
            self._by_sig[tuple(sig)] = (np.log(np.asarray(ranks, dtype=float)), np.asarray(lr, dtype=float))
            ctxs = e.get("contexts")
            if ctxs is None:
                continue
            if not isinstance(ctxs, list) or not ctxs:
                raise ProfileError(f"{where}.contexts: {type(ctxs).__name__} given; expected a non-empty list of "
                                   f"{{context_bytes, log_ratio}}")
            cs, rows = [], []
            for k, c in enumerate(ctxs):
                cb = c.get("context_bytes") if isinstance(c, Mapping) else None
                clr = c.get("log_ratio") if isinstance(c, Mapping) else None
                if not isinstance(cb, list) or len(cb) != len(ranks) or not all(
                        _finite_number(v) and v > 0 for v in cb):
                    raise ProfileError(f"{where}.contexts[{k}].context_bytes {cb!r}; expected {len(ranks)} numbers "
                                       f"of bytes > 0 (one per rank)")
                if not isinstance(clr, list) or len(clr) != len(ranks) or not all(_finite_number(v) for v in clr):
                    raise ProfileError(f"{where}.contexts[{k}].log_ratio {clr!r}; expected {len(ranks)} finite "
                                       f"numbers (one per rank)")
                cs.append(np.log(np.asarray(cb, dtype=float)))
                rows.append(clr)
            self._contexts[tuple(sig)] = (np.asarray(cs, dtype=float), np.asarray(rows, dtype=float))

    def __len__(self) -> int:
        return len(self._by_sig)

    def correction(self, signature: tuple, rank: int, context_bytes: float = 0.0) -> tuple[float, float] | None:
        """``(log ratio, weight)`` for a pair of the dense shape ``signature`` at ``rank`` in a model whose
        working set is ``context_bytes`` (0: unknown, the entry's mean), or None when that shape was not
        calibrated. Weight 1 between the calibrated ranks, decaying beyond them."""
        got = self._by_sig.get(tuple(signature))
        if got is None:
            return None
        xs, ys = got
        x = math.log(max(int(rank), 1))
        d = max(xs[0] - x, x - xs[-1], 0.0)
        y = float(np.interp(x, xs, ys))
        ctx = self._contexts.get(tuple(signature))
        if ctx is not None and context_bytes > 0:
            lc = np.array([np.interp(x, xs, row) for row in ctx[0]])
            cy = np.array([np.interp(x, xs, row) for row in ctx[1]])
            w = np.exp(-0.5 * ((lc - math.log(context_bytes)) / self.context_scale) ** 2)
            y = float((self.CONTEXT_PRIOR * y + w @ cy) / (self.CONTEXT_PRIOR + w.sum()))
        return y, float(math.exp(-0.5 * (d / self.scale) ** 2))

    def to_dict(self) -> dict:
        def entry(sig: tuple, xs: np.ndarray, ys: np.ndarray) -> dict:
            e = {"signature": list(sig), "ranks": [int(round(math.exp(v))) for v in xs],
                 "log_ratio": [round(float(v), 6) for v in ys]}
            if sig in self._contexts:
                cs, rows = self._contexts[sig]
                e["contexts"] = [{"context_bytes": [int(round(math.exp(v))) for v in c],
                                  "log_ratio": [round(float(v), 6) for v in r]} for c, r in zip(cs, rows)]
            return e

        return {"scale": self.scale, "context_scale": self.context_scale,
                "entries": [entry(sig, xs, ys) for sig, (xs, ys) in self._by_sig.items()]}

    @classmethod
    def from_dict(cls, d: Any) -> "LowRankTable":
        """Rebuild a table; raises :class:`ProfileError` naming the bad field."""
        if not isinstance(d, Mapping):
            raise ProfileError(f"lowrank_table: {type(d).__name__} given; expected an object with entries")
        entries = d.get("entries", [])
        if not isinstance(entries, list):
            raise ProfileError(f"lowrank_table.entries: {type(entries).__name__} given; expected a list")
        return cls(entries, scale=d.get("scale", math.log(2.0)), context_scale=d.get("context_scale", math.log(2.0)))


_TABLES: dict[int, tuple[Any, LowRankTable]] = {}


def _lowrank_table_of(proc: Any) -> LowRankTable | None:
    d = getattr(proc, "lowrank_table", None)
    if not d:
        return None
    hit = _TABLES.get(id(d))
    if hit is None or hit[0] is not d:  # parsed once per table object (the dict is kept, so its id stays unique)
        if len(_TABLES) > 64:
            _TABLES.clear()
        hit = _TABLES[id(d)] = (d, LowRankTable.from_dict(d))
    return hit[1]


def predict_works_us(profile: Any, processor: str, works: Sequence[OpWork]) -> float:
    """Predicted latency (µs) of a block from the works of its steps: the processor's block overhead plus
    each op's :func:`predict_work_us`, except that a factor pair whose dense layer shape calibration timed in
    models (the processor's :class:`LowRankTable`) costs the regression of its two factors times the ratio
    measured at the calibrated ranks around its own."""
    proc = profile.processor(processor)
    return block_latency_us(works, lambda w, local=True: predict_work_us(profile, processor, w, local=local),
                            _lowrank_table_of(proc), float(getattr(proc, "block_overhead_us", 0.0) or 0.0))


def work_predictor(latency_models: Mapping[str, dict]) -> Any:
    """``predict(work, local=True) → µs`` from a processor's serialised latency models (the most specific key
    first, each model parsed once; ``local=False``: the regression without its local correction). Work without a
    model raises :class:`~deepx_opt.errors.CostModelError`."""
    cache: dict[str, LatencyModel] = {}

    def predict(w: OpWork, local: bool = True) -> float:
        key = next((k for k in model_keys(w) if k in latency_models), None)
        if key is None:
            raise CostModelError(f"no latency model for {w.kind!r} work (op {w.op_type!r}); modelled: "
                                 f"{', '.join(sorted(latency_models))}")
        if key not in cache:
            cache[key] = LatencyModel.from_dict(latency_models[key])
        return float(cache[key].predict(w, local=local)[0])

    return predict


def block_latency_us(works: Sequence[OpWork], predict: Any, table: LowRankTable | None = None,
                     overhead_us: float = 0.0) -> float:
    """What :func:`predict_works_us` computes, from a per-op predictor ``predict(work, local=True)`` (µs;
    ``local=False``: the regression alone), the processor's :class:`LowRankTable` (or None) and its block
    overhead."""
    per = [predict(w) for w in works]
    if table:
        for i, sig, rank in lowrank_pairs(works):
            c = table.correction(sig, rank, works[i].context_bytes)
            if c is None:
                continue
            ratio, weight = c
            base = sum(predict(w, local=False) for w in works[i:i + 2])
            plain = per[i] + per[i + 1]
            per[i], per[i + 1] = weight * base * math.exp(ratio) + (1.0 - weight) * plain, 0.0
    return float(overhead_us) + float(sum(per))


def predict_work_us(profile: Any, processor: str, work: OpWork, *, local: bool = True) -> float:
    """Predicted latency (µs) of one op's work on a processor of a profile (``local=False``: the regression
    without its local correction, see :meth:`LatencyModel.predict`).

    Raises
    ------
    CostModelError
        when the processor cannot run this kind of work, or the profile has no model for it.
    """
    proc = profile.processor(processor)
    if not proc.supports_kind(work.kind):
        raise CostModelError(
            f"processor {processor!r} of profile {profile.name!r} does not support {work.kind!r} work "
            f"(op {work.name or work.op_type!r}); its unsupported kinds: {', '.join(proc.unsupported_kinds)}"
        )
    if work.op_type and not proc.supports_op(work.op_type):
        raise CostModelError(
            f"processor {processor!r} of profile {profile.name!r} does not support op {work.op_type!r}; "
            f"supported ops: {', '.join(proc.supported_ops or [])}"
        )
    md = next((proc.latency_models[k] for k in model_keys(work) if k in proc.latency_models), None)
    if md is None:
        raise CostModelError(
            f"profile {profile.name!r} has no latency model for {work.kind!r} work on processor {processor!r} "
            f"(op {work.name or work.op_type!r}); modelled kinds: {', '.join(sorted(proc.latency_models)) or 'none'}"
        )
    return float(LatencyModel.from_dict(md).predict(work, local=local)[0])


def predict_block_us(profile: Any, processor: str, layer_attrs: Mapping[str, Any] | None = None, *,
                     ops: Sequence[Any] | None = None, shapes: Mapping[str, Sequence[int]] | None = None,
                     works: Sequence[OpWork] | None = None, fused_relu: bool = True,
                     context_bytes: float | None = None) -> float:
    """Predicted latency (µs) of a block on one processor: the sum over its ops.

    Give one of: ``works`` (precomputed); ``ops`` with ``shapes`` (every input tensor's shape, weights
    included — internal tensors are inferred); or ``layer_attrs`` (a ModelGraph node's attributes): with
    ``shapes`` its ``ops`` are costed one by one, without it the whole block is costed as one item of its
    ``kind`` with its ``flops`` and ``input_bytes + weight_bytes + output_bytes``. ``context_bytes``: the
    working set of the model the block runs in (models with ``cold`` features cost ops in a model that
    exceeds their cache threshold as colder): :func:`context_bytes_of` the whole model's shapes (0: the op
    alone, warm).

    Example
    -------
    >>> from deepx_opt.cost_models import load_profile
    >>> p = load_profile("tegrak1")
    >>> attrs = {"kind": "gemm", "flops": 2_000_000, "input_bytes": 4000, "weight_bytes": 4_000_000,
    ...          "output_bytes": 4000}
    >>> predict_block_us(p, "gpu", attrs) > 0
    True
    """
    if works is None:
        if ops is None and layer_attrs is not None and shapes is not None and layer_attrs.get("ops"):
            ops = layer_attrs["ops"]
        if ops is not None:
            if shapes is None:
                raise CostModelError("predict_block_us: ops given without shapes of their input tensors")
            outs = layer_attrs.get("outputs") if layer_attrs is not None else None
            ctx = float(context_bytes or 0.0)
            works = block_works(ops, shapes, fused_relu=fused_relu, outputs=outs, context_bytes=ctx)
        elif layer_attrs is not None:
            try:
                kind = layer_attrs["kind"]
                nbytes = sum(float(layer_attrs.get(k, 0)) for k in ("input_bytes", "weight_bytes", "output_bytes"))
                works = [OpWork(kind=kind, flops=float(layer_attrs["flops"]), bytes=nbytes,
                                op_type=str(layer_attrs.get("op", "")), name=str(layer_attrs.get("name", "")))]
            except KeyError as exc:
                raise CostModelError(f"layer attributes lack {exc.args[0]!r}; need kind and flops") from None
        else:
            raise CostModelError("predict_block_us needs works, ops+shapes or layer_attrs")
    if not works:
        raise CostModelError("block has no work to cost (empty op list)")
    return predict_works_us(profile, processor, works)
