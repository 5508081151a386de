"""Runtime Layer Compression (RLC): low-rank factorisation of weighted layers.

DeepX (Lane et al., IPSN 2016) shrinks a layer by replacing its weight matrix with a truncated SVD. Here a
weighted layer is seen as one matrix ``W`` of shape ``K × N`` (inputs × outputs) so that the layer computes
``y = x W + b``:

* ``Gemm(A, B, C)``: ``W = alpha · B`` (``Bᵀ`` when ``transB``); at rank ``r`` the layer runs
  ``MatMul(A, U_r) → Gemm(·, V_r, C)``.
* ``MatMul(A, B)`` with a constant 2-D ``B``: ``W = B``; at rank ``r``: ``MatMul(A, U_r) → MatMul(·, V_r)``.
* ``Conv(X, W, B)`` with ``group == 1`` (2-D): channel decomposition. ``W`` (``Cout × Cin × kh × kw``) is
  seen as the ``(Cin·kh·kw) × Cout`` matrix; at rank ``r`` the layer runs a conv with ``r`` filters and the
  original kernel/strides/pads/dilations, then a 1×1 conv with ``Cout`` filters and the bias. Grouped and
  depthwise convs stay dense.

A ``BatchNormalization`` that directly follows the main op of a Conv or Gemm block is folded into the
factors (its per-channel scale then counts in the SVD, which is what matters for the output); other epilogue
ops (``Relu``, a bias ``Add``, ``Reshape``...) are kept as they are. At full rank every factorisation
reproduces the dense layer up to float rounding.

Two ways to choose the rank-``r`` factors:

``"weight"``
    plain truncated SVD of ``W``: ``‖W − W_r‖₂ = σ_{r+1}`` (Eckart–Young).
``"data"``
    activation-weighted SVD: with ``X`` the layer's calibration inputs (for convs, their im2col patches),
    centred to ``Xc`` with mean ``μ``, and ``R`` the Cholesky factor of ``XcᵀXc/n + λI`` (``λ`` = ``damping``
    × mean diagonal), ``W_r = R⁻¹ (R W)_r`` minimises ``‖Xc (W − W_r)‖_F`` over rank-``r`` matrices; the bias
    absorbs the mean: ``b_r = b + μ (W − W_r)``. This minimises the error of the layer's *outputs* on the
    calibration data rather than of its weights.

Factors are cached per layer (one SVD serves every rank). :func:`apply_ranks` returns a new
:class:`~deepx_opt.graphs.model_graph.ModelGraph` whose chosen layers run the factorised ops, with new weight
tensors in ``weights`` and ``flops`` / ``params`` / ``weight_bytes`` updated, so any backend that runs the
canonical ops runs it unchanged.

Example
-------
>>> from deepx_opt.graphs import load_onnx                       # doctest: +SKIP
>>> from deepx_opt.graphs.compression import apply_ranks         # doctest: +SKIP
>>> small = apply_ranks(load_onnx("mlp.onnx"), {"fc1": 16})      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import scipy.linalg

from deepx_opt.errors import CompressionError, InputError
from deepx_opt.graphs.model_graph import ModelGraph, OpSpec, TensorInfo
from deepx_opt.graphs.ops import infer_op, op_flops

__all__ = [
    "METHODS",
    "LayerFactorizer",
    "factorizable",
    "not_factorizable_reason",
    "factorizers",
    "apply_ranks",
    "im2col",
    "low_rank_flops",
    "dense_flops",
]

#: Factorisation methods: plain weight SVD, activation-weighted (data-aware) SVD.
METHODS = ("weight", "data")

#: Matrices with at most this many elements get an exact SVD (LAPACK gesdd); larger ones the eigen-
#: decomposition of their Gram matrix on the smaller side, about 5× faster at AlexNet's FC sizes (a 4096² SVD
#: takes minutes on one core). The Gram route squares the condition number: singular values far below
#: the largest (σ < 1e-6 σ₁) come out inexact, which does not matter for the ranks RLC keeps, and the
#: full-rank factorisation stays exact (W V Vᵀ = W for orthogonal V).
EXACT_SVD_MAX_ELEMENTS = 1 << 20

#: Default Tikhonov damping of the data-aware SVD, relative to the mean diagonal of the input covariance.
#: Directions the calibration data never excites keep a small weight instead of none, so a factorisation
#: does not discard what the test data might still use.
DEFAULT_DAMPING = 1e-2


# --------------------------------------------------------------------------------------------------------
# which layers can be factorised
# --------------------------------------------------------------------------------------------------------


def not_factorizable_reason(model: ModelGraph, layer: str) -> str | None:
    """Why ``layer`` cannot be factorised, or ``None`` when it can.

    Parameters
    ----------
    model : ModelGraph
    layer : str
        A layer name of ``model``.

    Returns
    -------
    str or None
        A short reason (``"grouped conv (group=2)"``...) or ``None``.
    """
    if layer not in model.dag:
        raise CompressionError(f"layer {layer!r} is not in model {model.name!r}; layers: {model.layers()}")
    d = model.dag.nodes[layer]
    if not d.get("weighted"):
        return f"not a weighted layer (op {d.get('op')})"
    ops = d["ops"]
    if not ops:
        return "layer has no ops"
    main = ops[0]
    w = model.weights
    if main.op_type == "Gemm":
        if len(main.inputs) < 2 or main.inputs[1] not in w:
            return "Gemm whose B is not a constant"
        if main.inputs[0] in w:
            return "Gemm whose A is a constant"
        if int(main.attrs.get("transA", 0)):
            return "Gemm with transA=1"
        if w[main.inputs[1]].ndim != 2:
            return "Gemm weight is not 2-D"
        c = main.inputs[2] if len(main.inputs) > 2 else ""
        if c:
            n_out = w[main.inputs[1]].shape[0 if int(main.attrs.get("transB", 0)) else 1]
            if c not in w:
                return "Gemm whose C is an activation"
            if w[c].size not in (1, n_out):
                return f"Gemm whose C of shape {tuple(w[c].shape)} is not a per-output bias"
        return None
    if main.op_type == "MatMul":
        if main.inputs[1] not in w or main.inputs[0] in w:
            return "MatMul whose second input is not the only constant"
        if w[main.inputs[1]].ndim != 2:
            return f"MatMul weight of rank {w[main.inputs[1]].ndim} (only 2-D weights are factorised)"
        return None
    if main.op_type == "Conv":
        if main.inputs[1] not in w:
            return "Conv whose weight is not a constant"
        if w[main.inputs[1]].ndim != 4:
            return f"{w[main.inputs[1]].ndim - 2}-D conv (only 2-D convs are factorised)"
        g = int(main.attrs.get("group", 1))
        if g != 1:
            return f"grouped conv (group={g}) is left dense"
        return None
    return f"main op {main.op_type} is not Conv, Gemm or MatMul"


def factorizable(model: ModelGraph, layer: str) -> bool:
    """True when :func:`apply_ranks` can factorise ``layer``."""
    return not_factorizable_reason(model, layer) is None


# --------------------------------------------------------------------------------------------------------
# FLOP counting of the main op (2 × multiply-accumulates, the convention of docs/ir.md)
# --------------------------------------------------------------------------------------------------------


def _rows(model: ModelGraph, fz: "LayerFactorizer") -> int:
    """Number of output positions the matrix is applied to (batch × spatial, or batch × leading dims)."""
    out_shape = model.tensors[fz.main_output].shape
    if fz.kind == "conv":
        return int(out_shape[0] * np.prod(out_shape[2:], dtype=np.int64))
    return int(np.prod(out_shape[:-1], dtype=np.int64)) if len(out_shape) > 1 else 1


def dense_flops(rows: int, k: int, n: int) -> int:
    """FLOPs (2·MAC) of ``rows`` products with a dense ``k × n`` matrix."""
    return 2 * rows * k * n


def low_rank_flops(rows: int, k: int, n: int, rank: int) -> int:
    """FLOPs (2·MAC) of ``rows`` products with the factors ``k × rank`` and ``rank × n``."""
    return 2 * rows * rank * (k + n)


# --------------------------------------------------------------------------------------------------------
# im2col (conv calibration inputs)
# --------------------------------------------------------------------------------------------------------


def im2col(x: np.ndarray, kernel_shape, strides, pads, dilations) -> np.ndarray:
    """Patches of an NCHW tensor as rows: shape ``(N·Hout·Wout, C·kh·kw)``.

    The column order matches ``W.reshape(Cout, C·kh·kw)`` of an ONNX conv weight, so
    ``im2col(x, ...) @ W.reshape(Cout, -1).T`` is the conv output (before bias), positions in row-major
    ``(n, h, w)`` order.

    Examples
    --------
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> im2col(x, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)).shape
    (4, 4)
    """
    kh, kw = kernel_shape
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c, h, w = x.shape
    hout = (h - (dh * (kh - 1) + 1)) // sh + 1
    wout = (w - (dw * (kw - 1) + 1)) // sw + 1
    cols = np.empty((n, hout, wout, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i * dh: i * dh + sh * (hout - 1) + 1: sh, j * dw: j * dw + sw * (wout - 1) + 1: sw]
            cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(n * hout * wout, c * kh * kw)


# --------------------------------------------------------------------------------------------------------
# the per-layer factoriser
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Decomposition:
    """``W_r = left[:, :r] @ right[:r]`` with balanced singular values; ``s`` the (weighted) spectrum."""

    s: np.ndarray
    left: np.ndarray  # K × q, already multiplied by sqrt(s)
    right: np.ndarray  # q × N, already multiplied by sqrt(s)
    bias_shift_mean: np.ndarray | None = None  # μ (K,) of the calibration inputs, data-aware only


@dataclass
class LayerFactorizer:
    """The matrix view of one weighted layer and its cached SVDs.

    Build with :func:`factorizers` (or :meth:`from_layer`). ``weight`` is the ``K × N`` matrix (float64,
    BatchNormalization folded in when the block has one right after its main op) and ``bias`` its ``N``
    bias (or ``None``).

    Examples
    --------
    >>> fz = factorizers(model)["fc1"]                     # doctest: +SKIP
    >>> fz.max_rank, fz.singular_values()[:3]             # doctest: +SKIP
    """

    layer: str
    kind: str  # "gemm", "matmul" or "conv"
    weight: np.ndarray
    bias: np.ndarray | None
    main_op: OpSpec
    main_output: str
    block_output: str  # output of the folded BN, or the main output
    folded: int  # number of epilogue ops folded into the factors (0 or 1)
    dtype: str
    rows: int
    _cache: dict = field(default_factory=dict, repr=False)

    # ---- construction ----------------------------------------------------------------------------------

    @classmethod
    def from_layer(cls, model: ModelGraph, layer: str) -> "LayerFactorizer":
        """The factoriser of one layer; raises :class:`CompressionError` when it cannot be factorised."""
        why = not_factorizable_reason(model, layer)
        if why is not None:
            raise CompressionError(f"layer {layer!r} cannot be factorised: {why}")
        ops = model.dag.nodes[layer]["ops"]
        main = ops[0]
        w = model.weights
        raw = np.asarray(w[main.inputs[1]])
        dtype = str(raw.dtype)
        bias = None
        if main.op_type == "Gemm":
            kind = "gemm"
            mat = raw.astype(np.float64)
            mat = mat.T if int(main.attrs.get("transB", 0)) else mat
            mat = float(main.attrs.get("alpha", 1.0)) * mat
            c = main.inputs[2] if len(main.inputs) > 2 else ""
            if c and c in w:
                cb = np.asarray(w[c], dtype=np.float64) * float(main.attrs.get("beta", 1.0))
                if cb.size in (1, mat.shape[1]):
                    bias = np.broadcast_to(cb.reshape(-1), (mat.shape[1],)).copy()
        elif main.op_type == "MatMul":
            kind = "matmul"
            mat = raw.astype(np.float64)
        else:
            kind = "conv"
            cout = raw.shape[0]
            mat = raw.reshape(cout, -1).T.astype(np.float64)
            if len(main.inputs) > 2 and main.inputs[2]:
                bias = np.asarray(w[main.inputs[2]], dtype=np.float64).reshape(-1).copy()
        folded = 0
        block_output = main.outputs[0]
        if kind in ("gemm", "conv") and len(ops) > 1 and _can_fold_bn(model, main, ops[1], kind):
            bn = ops[1]
            scale, b, mean, var = (np.asarray(w[t], dtype=np.float64).reshape(-1) for t in bn.inputs[1:5])
            s = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
            mat = mat * s[None, :]
            base = bias if bias is not None else np.zeros(mat.shape[1])
            bias = s * (base - mean) + b
            folded = 1
            block_output = bn.outputs[0]
        fz = cls(
            layer=layer, kind=kind, weight=mat, bias=bias, main_op=main, main_output=main.outputs[0],
            block_output=block_output, folded=folded, dtype=dtype, rows=0,
        )
        fz.rows = _rows(model, fz)
        return fz

    # ---- sizes -----------------------------------------------------------------------------------------

    @property
    def in_features(self) -> int:
        """K: rows of the matrix (inputs, or ``Cin·kh·kw`` for a conv)."""
        return int(self.weight.shape[0])

    @property
    def out_features(self) -> int:
        """N: columns of the matrix (outputs, or ``Cout``)."""
        return int(self.weight.shape[1])

    @property
    def max_rank(self) -> int:
        """``min(K, N)``: the largest valid rank (full rank)."""
        return int(min(self.weight.shape))

    def saves(self, rank: int) -> bool:
        """True when rank ``rank`` has fewer parameters (and FLOPs) than the dense matrix: ``r(K+N) < KN``."""
        return rank * (self.in_features + self.out_features) < self.in_features * self.out_features

    def check_rank(self, rank) -> int:
        """``rank`` as an int, or :class:`CompressionError` naming the accepted range."""
        if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)):
            raise CompressionError(
                f"rank {rank!r} of layer {self.layer!r} is not an integer; accepted: 1..{self.max_rank}"
            )
        if not 1 <= int(rank) <= self.max_rank:
            raise CompressionError(
                f"rank {rank} of layer {self.layer!r} is out of range; accepted: 1..{self.max_rank} "
                f"(min of the {self.in_features}×{self.out_features} matrix)"
            )
        return int(rank)

    def dense_main_flops(self) -> int:
        return dense_flops(self.rows, self.in_features, self.out_features)

    def rank_flops(self, rank: int) -> int:
        return low_rank_flops(self.rows, self.in_features, self.out_features, rank)

    # ---- SVDs ------------------------------------------------------------------------------------------

    def singular_values(self, method: str = "weight") -> np.ndarray:
        """Singular values (descending) of ``W`` (``"weight"``) or of ``R W`` (``"data"``).

        For ``"weight"`` without cached factors only the values are computed (several times cheaper than
        the vectors on large layers).
        """
        if method in self._cache:
            return self._cache[method].s
        if method == "weight":
            if "weight_s" not in self._cache:
                w = self.weight
                if w.size <= EXACT_SVD_MAX_ELEMENTS:
                    s = scipy.linalg.svdvals(w, check_finite=False)
                else:
                    g = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T
                    s = np.sqrt(np.maximum(np.sort(scipy.linalg.eigvalsh(g, check_finite=False))[::-1], 0.0))
                self._cache["weight_s"] = s
            return self._cache["weight_s"]
        return self._decomposition(method).s

    def energy_rank(self, fraction: float, method: str = "weight") -> int:
        """Smallest rank keeping ``fraction`` of the spectral energy ``Σσ²``."""
        if not 0.0 < fraction <= 1.0:
            raise CompressionError(f"energy fraction {fraction!r} is out of range; accepted: (0, 1]")
        s2 = self.singular_values(method) ** 2
        total = float(s2.sum())
        if total == 0.0:
            return 1
        cum = np.cumsum(s2) / total
        return int(min(np.searchsorted(cum, fraction - 1e-12) + 1, self.max_rank))

    def set_calibration(self, x: np.ndarray, *, damping: float = DEFAULT_DAMPING) -> None:
        """Give the layer's calibration inputs (rows of ``K`` features) for the data-aware SVD.

        Parameters
        ----------
        x : ndarray, shape (n, K)
            The layer's inputs on calibration data (for a conv: :func:`im2col` patches).
        damping : float
            Relative Tikhonov damping ``λ`` (see the module docstring).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.in_features or x.shape[0] < 1:
            raise InputError(
                f"calibration inputs of layer {self.layer!r} have shape {x.shape}; accepted: (n, {self.in_features})"
            )
        if not damping > 0:
            raise CompressionError(f"damping {damping!r} is out of range; accepted: > 0")
        mu = x.mean(axis=0)
        xc = x - mu
        cov = xc.T @ xc / x.shape[0]
        self._cache["calib"] = (cov, mu, float(damping))
        self._cache.pop("data", None)

    @property
    def has_calibration(self) -> bool:
        return "calib" in self._cache

    def _decomposition(self, method: str) -> _Decomposition:
        if method not in METHODS:
            raise CompressionError(f"factorisation method {method!r} is unknown; accepted: {list(METHODS)}")
        if method in self._cache:
            return self._cache[method]
        w = self.weight
        k, n = w.shape
        exact = w.size <= EXACT_SVD_MAX_ELEMENTS
        mu = None
        if method == "weight":
            if exact:
                u, s, vt = scipy.linalg.svd(w, full_matrices=False, lapack_driver="gesdd")
                sq = np.sqrt(s)
                dec = _Decomposition(s=s, left=u * sq[None, :], right=vt * sq[:, None])
            elif n <= k:  # W_r = W V_r V_rᵀ with V the eigenvectors of WᵀW
                s, v = _eigh_desc(w.T @ w)
                dec = _Decomposition(s=s, left=w @ v, right=np.ascontiguousarray(v.T))
            else:  # W_r = U_r U_rᵀ W with U the eigenvectors of W Wᵀ
                s, u = _eigh_desc(w @ w.T)
                dec = _Decomposition(s=s, left=u, right=u.T @ w)
        else:
            if "calib" not in self._cache:
                raise CompressionError(
                    f"layer {self.layer!r}: the data-aware SVD needs calibration inputs (set_calibration); "
                    "accepted methods without them: ['weight']"
                )
            cov, mu, damping = self._cache["calib"]
            lam = damping * max(float(np.trace(cov)) / k, 1e-12)
            c = cov + lam * np.eye(k)
            if not exact and n <= k:
                # (RW)ᵀ(RW) = Wᵀ C W: the right singular vectors of RW without forming R;
                # W_r = R⁻¹ (RW)_r = W V_r V_rᵀ
                s, v = _eigh_desc(w.T @ (c @ w))
                dec = _Decomposition(s=s, left=w @ v, right=np.ascontiguousarray(v.T), bias_shift_mean=mu)
            else:
                r = scipy.linalg.cholesky(c, lower=False)  # C = RᵀR
                m = r @ w
                if exact:
                    u, s, vt = scipy.linalg.svd(m, full_matrices=False, lapack_driver="gesdd")
                    sq = np.sqrt(s)
                    left, right = u * sq[None, :], vt * sq[:, None]
                else:
                    s, u = _eigh_desc(m @ m.T)
                    left, right = u, u.T @ m
                left = scipy.linalg.solve_triangular(r, left, lower=False)
                dec = _Decomposition(s=s, left=left, right=right, bias_shift_mean=mu)
        self._cache[method] = dec
        return dec

    def factors(self, rank: int, method: str = "weight") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(U_r, V_r, b_r)``: ``K × r`` and ``r × N`` factors (float64) and the bias to use with them.

        ``U_r @ V_r`` is the best rank-``r`` approximation of ``W`` in the method's norm. ``b_r`` is the
        layer's bias, plus the mean correction of the data-aware method; ``None`` when the layer has no bias
        and needs none.
        """
        rank = self.check_rank(rank)
        dec = self._decomposition(method)
        u, v = dec.left[:, :rank], dec.right[:rank]
        b = self.bias
        if dec.bias_shift_mean is not None and rank < self.max_rank:
            shift = dec.bias_shift_mean @ (self.weight - u @ v)
            b = shift if b is None else b + shift
        return u, v, b

    def low_rank_weight(self, rank: int | None, method: str = "weight") -> tuple[np.ndarray, np.ndarray | None]:
        """``(W_r, b_r)``: the rank-``r`` matrix (``K × N``) and bias; ``rank=None`` gives the dense ones."""
        if rank is None:
            return self.weight, self.bias
        u, v, b = self.factors(rank, method)
        return u @ v, b

    # ---- ops -------------------------------------------------------------------------------------------

    def dense_ops(self, weight_name: str, bias_name: str | None) -> list[OpSpec]:
        """Main op (+ folded BN) as one dense op reading the folded ``K × N`` weight in its native layout.

        The weight tensor ``weight_name`` holds :meth:`native_weight` of a ``K × N`` matrix. Used to feed
        rank-``r`` reconstructions to an evaluator without changing its graph.
        """
        m = self.main_op
        out = self.block_output
        if self.kind == "conv":
            attrs = dict(m.attrs)
            ins = [m.inputs[0], weight_name] + ([bias_name] if bias_name else [])
            return [OpSpec("Conv", ins, [out], attrs, name=f"{self.layer}/dense")]
        if self.kind == "gemm":
            ins = [m.inputs[0], weight_name]
            if bias_name:
                ins.append(bias_name)
            attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
            return [OpSpec("Gemm", ins, [out], attrs, name=f"{self.layer}/dense")]
        if bias_name:
            mid = f"{self.layer}/dense/mid"
            return [OpSpec("MatMul", [m.inputs[0], weight_name], [mid], {}, name=f"{self.layer}/dense"),
                    OpSpec("Add", [mid, bias_name], [out], {}, name=f"{self.layer}/dense_bias")]
        return [OpSpec("MatMul", [m.inputs[0], weight_name], [out], {}, name=f"{self.layer}/dense")]

    def native_weight(self, mat: np.ndarray) -> np.ndarray:
        """A ``K × N`` matrix in the layout of :meth:`dense_ops`' weight (``Cout×Cin×kh×kw`` for convs)."""
        if self.kind == "conv":
            return np.ascontiguousarray(mat.T.reshape((self.out_features,) + self._conv_wshape()[1:]))
        return np.ascontiguousarray(mat)

    def _conv_wshape(self) -> tuple[int, ...]:
        kh, kw = self.main_op.attrs["kernel_shape"]
        return (self.out_features, self.in_features // (kh * kw), int(kh), int(kw))

    def low_rank_ops(self, rank: int, method: str = "weight", *,
                     shape_only: bool = False) -> tuple[list[OpSpec], dict[str, np.ndarray]]:
        """The two ops replacing the main op (and a folded BN) at rank ``rank``.

        With ``shape_only`` the weights are read-only zero-memory stand-ins of the right shapes and no SVD
        is computed (used to cost options before any is chosen).

        Returns
        -------
        ops : list of OpSpec
            ``MatMul → Gemm`` / ``MatMul → MatMul`` / ``Conv(r filters) → Conv 1×1``.
        weights : dict
            New weight tensors (in the layer's dtype).
        """
        m = self.main_op
        dt = np.dtype(self.dtype) if np.dtype(self.dtype).kind == "f" else np.dtype(np.float32)
        if shape_only:
            # zero-memory stand-ins with the right shapes: enough for shapes, FLOPs, params and bytes
            rank = self.check_rank(rank)
            u = np.broadcast_to(np.zeros((), dt), (self.in_features, rank))
            v = np.broadcast_to(np.zeros((), dt), (rank, self.out_features))
            has_b = self.bias is not None or (method == "data" and rank < self.max_rank)
            b = np.broadcast_to(np.zeros((), dt), (self.out_features,)) if has_b else None
        else:
            u, v, b = self.factors(rank, method)
        tag = f"{self.layer}/rlc_{method}_r{rank}"
        wu, wv, wb = f"{tag}/U", f"{tag}/V", f"{tag}/bias"
        mid = f"{tag}/mid"
        new_w: dict[str, np.ndarray] = {}
        if self.kind == "conv":
            kh, kw = self.main_op.attrs["kernel_shape"]
            cin = self.in_features // (kh * kw)
            new_w[wu] = _as(u.T.reshape(rank, cin, kh, kw), dt, shape_only)
            new_w[wv] = _as(v.T.reshape(self.out_features, rank, 1, 1), dt, shape_only)
            first = OpSpec("Conv", [m.inputs[0], wu], [mid], dict(m.attrs, group=1), name=f"{tag}/conv_r")
            ins2 = [mid, wv]
            if b is not None:
                new_w[wb] = _as(b, dt, shape_only)
                ins2.append(wb)
            second = OpSpec(
                "Conv", ins2, [self.block_output],
                {"kernel_shape": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "group": 1},
                name=f"{tag}/conv_1x1",
            )
            return [first, second], new_w
        new_w[wu] = _as(u, dt, shape_only)
        new_w[wv] = _as(v, dt, shape_only)
        first = OpSpec("MatMul", [m.inputs[0], wu], [mid], {}, name=f"{tag}/matmul_u")
        if self.kind == "gemm":
            ins2 = [mid, wv]
            if b is not None:  # C (times beta, BN folded) as a per-output bias
                new_w[wb] = _as(b, dt, shape_only)
                ins2.append(wb)
            second = OpSpec("Gemm", ins2, [self.block_output], {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
                            name=f"{tag}/gemm_v")
            return [first, second], new_w
        if b is not None:  # data-aware mean correction of a bias-less MatMul: add it explicitly
            new_w[wb] = _as(b, dt, shape_only)
            mid2 = f"{tag}/mid2"
            return (
                [first, OpSpec("MatMul", [mid, wv], [mid2], {}, name=f"{tag}/matmul_v"),
                 OpSpec("Add", [mid2, wb], [self.block_output], {}, name=f"{tag}/bias")],
                new_w,
            )
        second = OpSpec("MatMul", [mid, wv], [self.block_output], {}, name=f"{tag}/matmul_v")
        return [first, second], new_w


def _as(a: np.ndarray, dt: np.dtype, shape_only: bool) -> np.ndarray:
    if shape_only:
        return np.broadcast_to(np.zeros((), dt), a.shape)
    return np.ascontiguousarray(a).astype(dt)


def _eigh_desc(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (descending) and vectors from a Gram matrix ``MᵀM`` (or ``MMᵀ``)."""
    evals, vecs = scipy.linalg.eigh(gram, check_finite=False)
    order = np.argsort(evals)[::-1]
    return np.sqrt(np.maximum(evals[order], 0.0)), np.ascontiguousarray(vecs[:, order])


def _can_fold_bn(model: ModelGraph, main: OpSpec, bn: OpSpec, kind: str) -> bool:
    if bn.op_type != "BatchNormalization" or not bn.inputs or bn.inputs[0] != main.outputs[0]:
        return False
    if not all(t in model.weights for t in bn.inputs[1:5]):
        return False
    n_out = model.weights[main.inputs[1]].shape[0]
    if kind == "gemm":
        n_out = model.weights[main.inputs[1]].shape[0 if int(main.attrs.get("transB", 0)) else 1]
        if len(model.tensors[main.outputs[0]].shape) != 2:
            return False
    return all(model.weights[t].size == n_out for t in bn.inputs[1:5])


def factorizers(model: ModelGraph, layers=None) -> dict[str, LayerFactorizer]:
    """A :class:`LayerFactorizer` for every factorisable layer (or for the named ``layers``).

    Layers that cannot be factorised are skipped when ``layers`` is None and raise
    :class:`CompressionError` when named.
    """
    if layers is None:
        return {v: LayerFactorizer.from_layer(model, v) for v in model.layers() if factorizable(model, v)}
    return {v: LayerFactorizer.from_layer(model, v) for v in layers}


# --------------------------------------------------------------------------------------------------------
# apply_ranks
# --------------------------------------------------------------------------------------------------------


def apply_ranks(
    model: ModelGraph,
    ranks: Mapping[str, int | None],
    *,
    method: str = "weight",
    factorizers_: Mapping[str, LayerFactorizer] | None = None,
    shape_only: bool = False,
) -> ModelGraph:
    """A new ModelGraph whose chosen layers run their rank-``r`` factorisation.

    Parameters
    ----------
    model : ModelGraph
        The dense model (not modified).
    ranks : mapping layer → rank
        ``None`` leaves a layer dense. A rank must be in ``1..min(K, N)`` of the layer's matrix.
    method : {"weight", "data"}
        Which factors (see the module docstring); ``"data"`` needs factorisers with calibration inputs.
    factorizers_ : mapping, optional
        Cached :class:`LayerFactorizer` objects (from :func:`factorizers`) so that a rank sweep costs one SVD.
    shape_only : bool
        New weights are zero-memory stand-ins and no SVD is computed: shapes, FLOPs, params and bytes are
        right, the values are not. For costing options; never for running.

    Returns
    -------
    ModelGraph
        Chosen layers get new ``ops`` (two factor ops, then the epilogue minus a folded BN), ``rank``,
        ``rlc_method``, and updated ``weight_names``, ``params``, ``weight_bytes``, ``flops``, ``epilogue``.
        New weights are added to ``weights``; unused old weights are dropped.

    Raises
    ------
    CompressionError
        An unknown layer, a layer that cannot be factorised, or a rank out of range.
    """
    fzs = dict(factorizers_ or {})
    new = model.copy()
    for layer, rank in ranks.items():
        if rank is None:
            continue
        fz = fzs.get(layer)
        if fz is None:
            fz = LayerFactorizer.from_layer(model, layer)
            fzs[layer] = fz
        rank = fz.check_rank(rank)
        d = new.dag.nodes[layer]
        old_ops = list(d["ops"])
        fops, fweights = fz.low_rank_ops(rank, method, shape_only=shape_only)
        ops = fops + old_ops[1 + fz.folded:]
        new.weights.update(fweights)
        if fz.folded:
            new.tensors.pop(fz.main_output, None)
        flops = 0
        for op in ops:
            ins = [_info(new, t) for t in op.inputs if t]
            outs = infer_op(op, ins)
            for t, info in zip(op.outputs, outs):
                if t in new.tensors and new.tensors[t].shape != info.shape:
                    raise CompressionError(  # a bug of ours, never the user's: say so plainly
                        f"layer {layer!r} at rank {rank}: factorised op {op.name!r} gives {t!r} the shape "
                        f"{info.shape}, the dense layer {new.tensors[t].shape}"
                    )
                new.tensors[t] = info
            flops += op_flops(op, ins, outs)
        old_names = list(d.get("weight_names", []))
        names = []
        for op in ops:
            for t in op.inputs:
                if t and t in new.weights and t not in names:
                    names.append(t)
        params = int(sum(new.weights[t].size for t in names))
        wbytes = int(sum(new.weights[t].nbytes for t in names))
        d.update(
            ops=ops,
            weight_names=names,
            params=params,
            weight_bytes=wbytes,
            flops=int(flops),
            epilogue=[op.op_type for op in old_ops[1 + fz.folded:]],
            rank=rank,
            max_rank=fz.max_rank,
            rlc_method=method,
        )
        still_used = {t for v in new.dag.nodes for t in new.dag.nodes[v].get("weight_names", [])}
        for t in old_names:
            if t not in still_used and not _used_by_ops(new, t):
                new.weights.pop(t, None)
    return new


def _used_by_ops(model: ModelGraph, name: str) -> bool:
    return any(name in op.inputs for v in model.dag.nodes for op in model.dag.nodes[v]["ops"])


def _info(model: ModelGraph, name: str) -> TensorInfo:
    if name in model.tensors:
        return model.tensors[name]
    arr = model.weights[name]
    return TensorInfo(tuple(int(d) for d in arr.shape), str(arr.dtype))
