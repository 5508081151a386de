"""One registry for ONNX lowering, and the canonical ops' shape and FLOP rules.

Two tables live here:

* ``@register("Conv", since=1)`` — a *lowering* per (domain, op_type, since_version): it turns one ONNX node
  into canonical :class:`~deepx_opt.graphs.model_graph.OpSpec` s (docs/ir.md), normalising every opset's
  variant (attributes that became inputs, changed defaults, auto_pad). It is resolved through
  ``onnx.defs.get_schema(max_inclusive_version=opset)``: the handler registered for the newest
  ``since`` not after the schema's ``since_version`` serves the node. A duplicate registration raises.
* ``CANONICAL`` — per canonical op: its work kind, output-shape rule and FLOP rule.

A miss raises :class:`~deepx_opt.errors.UnsupportedOpError` naming the op, the node, its domain and the
supported list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import helper

from deepx_opt.errors import ShapeInferenceError, UnsupportedOpError
from deepx_opt.graphs.model_graph import OpSpec, TensorInfo

__all__ = [
    "register",
    "get_lowering",
    "supported_ops",
    "LowerContext",
    "CANONICAL",
    "infer_op",
    "op_flops",
    "op_kind",
]

# ---------------------------------------------------------------------------------------------------------
# Lowering registry
# ---------------------------------------------------------------------------------------------------------

_LOWERINGS: dict[tuple[str, str], list[tuple[int, Callable]]] = {}


def register(op_type: str, since: int = 1, domain: str = "") -> Callable:
    """Register the lowering of ONNX ``op_type`` valid from opset ``since`` of ``domain``."""

    def deco(fn: Callable) -> Callable:
        entries = _LOWERINGS.setdefault((domain, op_type), [])
        if any(s == since for s, _ in entries):
            raise ValueError(f"lowering for {domain or 'ai.onnx'}::{op_type} since {since} registered twice")
        entries.append((since, fn))
        entries.sort(key=lambda e: e[0])
        return fn

    return deco


def supported_ops() -> list[str]:
    """Sorted names of the ONNX ops that can be imported (default domain)."""
    return sorted(op for dom, op in _LOWERINGS if dom == "")


def get_lowering(op_type: str, domain: str, opset: int, node_name: str = "") -> Callable:
    """Find the lowering for ``op_type`` under ``opset`` of ``domain``, or raise UnsupportedOpError."""
    dom = "" if domain in ("", "ai.onnx") else domain
    entries = _LOWERINGS.get((dom, op_type))
    where = f"node {node_name!r}" if node_name else "an unnamed node"
    if not entries:
        hint = ""
        if dom == "ai.onnx.ml":
            hint = (
                " It is an ai.onnx.ml post-processing op (as skl2onnx appends): cut the graph before it with"
                " --output NAME (API: load_onnx(..., outputs=[NAME]))."
            )
        raise UnsupportedOpError(
            f"unsupported op {op_type!r} ({where}, domain {domain or 'ai.onnx'!r}).{hint}"
            f" Supported ops (domain ai.onnx): {', '.join(supported_ops())}"
        )
    try:
        schema_since = onnx.defs.get_schema(op_type, max_inclusive_version=opset, domain=dom).since_version
    except onnx.defs.SchemaError:
        schema_since = opset
    usable = [fn for since, fn in entries if since <= schema_since]
    if not usable:
        raise UnsupportedOpError(
            f"op {op_type!r} ({where}) at opset {opset} is older than any supported version"
            f" (supported from opset {entries[0][0]})"
        )
    return usable[-1]


@dataclass
class LowerContext:
    """What a lowering sees of the model: constants, tensor infos, the opset, a name source."""

    node: onnx.NodeProto
    opset: int
    weights: dict[str, np.ndarray]
    tensors: dict[str, TensorInfo]
    _counter: list[int]

    # -- attributes ---------------------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        for a in self.node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def sattr(self, name: str, default: str) -> str:
        v = self.attr(name, default)
        return v.decode() if isinstance(v, bytes) else v

    # -- inputs -------------------------------------------------------------------------------------------
    def input(self, i: int) -> str:
        """Name of input ``i``, or "" when absent."""
        return self.node.input[i] if i < len(self.node.input) else ""

    def const(self, i: int) -> np.ndarray | None:
        name = self.input(i)
        return self.weights.get(name) if name else None

    def require_const(self, i: int, what: str) -> np.ndarray:
        c = self.const(i)
        if c is None:
            raise UnsupportedOpError(
                f"{self.node.op_type} node {self.node.name!r}: {what} (input {i}, {self.input(i)!r}) must be a"
                " constant known at import time; data-dependent shapes are not supported"
            )
        return c

    def info(self, i: int) -> TensorInfo:
        name = self.input(i)
        if name in self.tensors:
            return self.tensors[name]
        if name in self.weights:
            w = self.weights[name]
            return TensorInfo(tuple(int(d) for d in w.shape), str(w.dtype))
        raise ShapeInferenceError(f"{self.node.op_type} node {self.node.name!r}: unknown tensor {name!r}")

    def rank(self, i: int = 0) -> int:
        return len(self.info(i).shape)

    def fresh(self, stem: str) -> str:
        self._counter[0] += 1
        return f"{stem}__dx{self._counter[0]}"

    def op(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str] | None = None, **attrs) -> OpSpec:
        return OpSpec(
            op_type=op_type,
            inputs=list(inputs),
            outputs=list(outputs if outputs is not None else self.node.output[:1]),
            attrs=attrs,
            name=self.node.name,
        )

    def unsupported(self, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.node.op_type} node {self.node.name!r}: {why}")

    def require_unused_outputs(self, used: set[str], first_n: int = 1) -> None:
        extra = [o for o in self.node.output[first_n:] if o and o in used]
        if extra:
            raise self.unsupported(f"output(s) {extra} are used downstream; only the first output is supported")


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by several lowerings
# ---------------------------------------------------------------------------------------------------------


def _norm_axis(axis: int, rank: int, ctx: LowerContext) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1):
        raise ctx.unsupported(f"axis {axis} out of range for rank {rank}")
    return a


def _spatial_pads(ctx: LowerContext, in_hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int]) -> list[int]:
    """Explicit pads (top, left, bottom, right) from ``pads`` or ``auto_pad``."""
    auto_pad = ctx.sattr("auto_pad", "NOTSET")
    n = len(kernel)
    if auto_pad in ("NOTSET", ""):
        pads = list(ctx.attr("pads", [0] * (2 * n)))
        if len(pads) != 2 * n:
            raise ctx.unsupported(f"pads {pads} must have {2 * n} values")
        return [int(p) for p in pads]
    if auto_pad == "VALID":
        return [0] * (2 * n)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            out = math.ceil(size / s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            b, e = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
            begin.append(b)
            end.append(e)
        return begin + end
    raise ctx.unsupported(f"auto_pad {auto_pad!r}; accepted: NOTSET, VALID, SAME_UPPER, SAME_LOWER")


def _require_2d(ctx: LowerContext, what: str) -> None:
    r = ctx.rank(0)
    if r != 4:
        raise ctx.unsupported(f"{what} on a rank-{r} input; only 2-D spatial (N, C, H, W) inputs are supported")


def _reshape_to(ctx: LowerContext, shape: Sequence[int]) -> list[OpSpec]:
    return [ctx.op("Reshape", [ctx.input(0)], shape=[int(d) for d in shape])]


# ---------------------------------------------------------------------------------------------------------
# Lowerings (opsets 7-21)
# ---------------------------------------------------------------------------------------------------------


@register("Conv", since=1)
def _conv(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    _require_2d(ctx, "Conv")
    w = ctx.info(1)
    kernel = [int(k) for k in ctx.attr("kernel_shape", list(w.shape[2:]))]
    strides = [int(s) for s in ctx.attr("strides", [1, 1])]
    dil = [int(d) for d in ctx.attr("dilations", [1, 1])]
    pads = _spatial_pads(ctx, ctx.info(0).shape[2:], kernel, strides, dil)
    inputs = [ctx.input(0), ctx.input(1)] + ([ctx.input(2)] if ctx.input(2) else [])
    return [ctx.op("Conv", inputs, kernel_shape=kernel, strides=strides, pads=pads, dilations=dil,
                   group=int(ctx.attr("group", 1)))]


@register("Gemm", since=1)
def _gemm(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    inputs = [ctx.input(0), ctx.input(1)] + ([ctx.input(2)] if ctx.input(2) else [])
    return [ctx.op("Gemm", inputs, alpha=float(ctx.attr("alpha", 1.0)), beta=float(ctx.attr("beta", 1.0)),
                   transA=int(ctx.attr("transA", 0)), transB=int(ctx.attr("transB", 0)))]


@register("MatMul", since=1)
def _matmul(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return [ctx.op("MatMul", [ctx.input(0), ctx.input(1)])]


@register("BatchNormalization", since=1)
def _bn(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    if int(ctx.attr("training_mode", 0)):
        raise ctx.unsupported("training_mode=1; only inference BatchNormalization is supported")
    ctx.require_unused_outputs(used)
    return [ctx.op("BatchNormalization", list(ctx.node.input[:5]), epsilon=float(ctx.attr("epsilon", 1e-5)))]


for _name in ("Relu", "Sigmoid", "Tanh", "Identity"):
    register(_name, since=1)(lambda ctx, used, _n=_name: [ctx.op(_n, [ctx.input(0)])])


@register("LeakyRelu", since=1)
def _leaky(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return [ctx.op("LeakyRelu", [ctx.input(0)], alpha=float(ctx.attr("alpha", 0.01)))]


@register("Clip", since=1)
def _clip_attr(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return [ctx.op("Clip", [ctx.input(0)], min=float(ctx.attr("min", -np.inf)), max=float(ctx.attr("max", np.inf)))]


@register("Clip", since=11)
def _clip_inputs(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    lo = ctx.require_const(1, "min") if ctx.input(1) else None
    hi = ctx.require_const(2, "max") if ctx.input(2) else None
    return [ctx.op("Clip", [ctx.input(0)], min=float(lo) if lo is not None else -np.inf,
                   max=float(hi) if hi is not None else np.inf)]


def _softmax_lowering(op_type: str, legacy: bool) -> Callable:
    def lower(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
        rank = ctx.rank(0)
        axis = _norm_axis(int(ctx.attr("axis", 1 if legacy else -1)), rank, ctx)
        return [ctx.op(op_type, [ctx.input(0)], axis=axis, legacy=legacy and axis != rank - 1)]

    return lower


for _name in ("Softmax", "LogSoftmax"):
    register(_name, since=1)(_softmax_lowering(_name, legacy=True))
    register(_name, since=13)(_softmax_lowering(_name, legacy=False))


def _pool_common(ctx: LowerContext) -> dict:
    _require_2d(ctx, ctx.node.op_type)
    kernel = [int(k) for k in ctx.attr("kernel_shape")]
    strides = [int(s) for s in ctx.attr("strides", [1, 1])]
    dil = [int(d) for d in ctx.attr("dilations", [1, 1])]
    pads = _spatial_pads(ctx, ctx.info(0).shape[2:], kernel, strides, dil)
    return dict(kernel_shape=kernel, strides=strides, pads=pads, dilations=dil, ceil_mode=int(ctx.attr("ceil_mode", 0)))


@register("MaxPool", since=1)
def _maxpool(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    ctx.require_unused_outputs(used)
    if int(ctx.attr("storage_order", 0)):
        pass  # storage_order only concerns the Indices output, which must be unused
    return [ctx.op("MaxPool", [ctx.input(0)], **_pool_common(ctx))]


@register("AveragePool", since=1)
def _avgpool(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    attrs = _pool_common(ctx)
    if any(d != 1 for d in attrs.pop("dilations")):
        raise ctx.unsupported("dilations other than 1 in AveragePool")
    return [ctx.op("AveragePool", [ctx.input(0)], count_include_pad=int(ctx.attr("count_include_pad", 0)), **attrs)]


for _name in ("GlobalAveragePool", "GlobalMaxPool"):
    register(_name, since=1)(lambda ctx, used, _n=_name: (_require_2d(ctx, _n), [ctx.op(_n, [ctx.input(0)])])[1])


@register("LRN", since=1)
def _lrn(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return [ctx.op("LRN", [ctx.input(0)], size=int(ctx.attr("size")), alpha=float(ctx.attr("alpha", 1e-4)),
                   beta=float(ctx.attr("beta", 0.75)), bias=float(ctx.attr("bias", 1.0)))]


@register("Dropout", since=1)
def _dropout(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    ctx.require_unused_outputs(used)
    if ctx.input(2):
        tm = ctx.require_const(2, "training_mode")
        if bool(np.asarray(tm).item()):
            raise ctx.unsupported("training_mode=True; only inference Dropout is supported")
    return [ctx.op("Identity", [ctx.input(0)])]


@register("Flatten", since=1)
def _flatten(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    shape = ctx.info(0).shape
    axis = int(ctx.attr("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis <= len(shape):
        raise ctx.unsupported(f"axis {axis} out of range for rank {len(shape)}")
    return _reshape_to(ctx, [int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))])


def _resolve_reshape(ctx: LowerContext, target: Sequence[int], allowzero: bool) -> list[int]:
    src = ctx.info(0).shape
    out = []
    for i, d in enumerate(int(x) for x in target):
        if d == 0 and not allowzero:
            if i >= len(src):
                raise ctx.unsupported(f"shape {list(target)} copies dim {i} of a rank-{len(src)} input")
            d = src[i]
        out.append(d)
    if out.count(-1) > 1:
        raise ctx.unsupported(f"shape {list(target)} has more than one -1")
    total = int(np.prod(src, dtype=np.int64))
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise ctx.unsupported(f"cannot reshape {list(src)} to {list(target)}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise ctx.unsupported(f"cannot reshape {list(src)} ({total} elements) to {out}")
    return out


@register("Reshape", since=1)
def _reshape_attr(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return _reshape_to(ctx, _resolve_reshape(ctx, ctx.attr("shape"), False))


@register("Reshape", since=5)
def _reshape(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    target = ctx.require_const(1, "shape")
    return _reshape_to(ctx, _resolve_reshape(ctx, target.tolist(), bool(ctx.attr("allowzero", 0))))


@register("Transpose", since=1)
def _transpose(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    rank = ctx.rank(0)
    perm = [int(p) for p in ctx.attr("perm", list(range(rank))[::-1])]
    if sorted(perm) != list(range(rank)):
        raise ctx.unsupported(f"perm {perm} is not a permutation of 0..{rank - 1}")
    return [ctx.op("Transpose", [ctx.input(0)], perm=perm)]


def _squeeze_shape(ctx: LowerContext, axes: Sequence[int] | None) -> list[int]:
    shape = list(ctx.info(0).shape)
    if axes is None:
        return [d for d in shape if d != 1]
    norm = {_norm_axis(int(a), len(shape), ctx) for a in axes}
    for a in norm:
        if shape[a] != 1:
            raise ctx.unsupported(f"cannot squeeze axis {a} of size {shape[a]}")
    return [d for i, d in enumerate(shape) if i not in norm]


def _unsqueeze_shape(ctx: LowerContext, axes: Sequence[int]) -> list[int]:
    shape = list(ctx.info(0).shape)
    out_rank = len(shape) + len(axes)
    norm = sorted(_norm_axis(int(a), out_rank, ctx) for a in axes)
    for a in norm:
        shape.insert(a, 1)
    return shape


@register("Squeeze", since=1)
def _squeeze_attr(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return _reshape_to(ctx, _squeeze_shape(ctx, ctx.attr("axes", None)))


@register("Squeeze", since=13)
def _squeeze(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    axes = ctx.require_const(1, "axes").tolist() if ctx.input(1) else None
    return _reshape_to(ctx, _squeeze_shape(ctx, axes))


@register("Unsqueeze", since=1)
def _unsqueeze_attr(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return _reshape_to(ctx, _unsqueeze_shape(ctx, ctx.attr("axes")))


@register("Unsqueeze", since=13)
def _unsqueeze(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return _reshape_to(ctx, _unsqueeze_shape(ctx, ctx.require_const(1, "axes").tolist()))


@register("Concat", since=1)
def _concat(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    axis = _norm_axis(int(ctx.attr("axis", 1)), ctx.rank(0), ctx)
    return [ctx.op("Concat", [i for i in ctx.node.input if i], axis=axis)]


def _binary(op_type: str) -> Callable:
    def lower(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
        if ctx.opset < 7 and int(ctx.attr("broadcast", 0)):
            raise ctx.unsupported("legacy (opset < 7) broadcast attribute; re-export with opset >= 7")
        return [ctx.op(op_type, [ctx.input(0), ctx.input(1)])]

    return lower


for _name in ("Add", "Sub", "Mul", "Div"):
    register(_name, since=1)(_binary(_name))


@register("Sum", since=1)
def _sum(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    ins = [i for i in ctx.node.input if i]
    if len(ins) == 1:
        return [ctx.op("Identity", ins)]
    return [ctx.op("Sum", ins)]


@register("Pad", since=1)
def _pad_attr(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    return _pad_common(ctx, ctx.attr("pads", ctx.attr("paddings")), float(ctx.attr("value", 0.0)))


@register("Pad", since=11)
def _pad(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    pads = ctx.require_const(1, "pads").tolist()
    value = float(np.asarray(ctx.require_const(2, "constant_value")).item()) if ctx.input(2) else 0.0
    if ctx.input(3):
        axes = [_norm_axis(int(a), ctx.rank(0), ctx) for a in ctx.require_const(3, "axes").tolist()]
        rank = ctx.rank(0)
        full = [0] * (2 * rank)
        for j, a in enumerate(axes):
            full[a], full[rank + a] = pads[j], pads[len(axes) + j]
        pads = full
    return _pad_common(ctx, pads, value)


def _pad_common(ctx: LowerContext, pads: Sequence[int], value: float) -> list[OpSpec]:
    mode = ctx.sattr("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise ctx.unsupported(f"mode {mode!r}; accepted: constant, reflect, edge")
    if len(pads) != 2 * ctx.rank(0):
        raise ctx.unsupported(f"pads {list(pads)} must have {2 * ctx.rank(0)} values")
    if any(int(p) < 0 for p in pads):
        raise ctx.unsupported(f"negative pads {list(pads)} (cropping) are not supported")
    return [ctx.op("Pad", [ctx.input(0)], pads=[int(p) for p in pads], mode=mode, value=value)]


@register("Cast", since=1)
def _cast(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    to = ctx.attr("to")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(to))).name
    except Exception:
        raise ctx.unsupported(f"cast to ONNX type {to}") from None
    return [ctx.op("Cast", [ctx.input(0)], to=dtype)]


@register("ReduceMean", since=1)
def _reduce_mean(ctx: LowerContext, used: set[str]) -> list[OpSpec]:
    """Spatial mean over H and W (as exported for adaptive average pooling) → GlobalAveragePool."""
    if ctx.opset >= 18 and ctx.input(1):
        axes = ctx.require_const(1, "axes").tolist()
    else:
        axes = ctx.attr("axes", None)
    rank = ctx.rank(0)
    norm = sorted(_norm_axis(int(a), rank, ctx) for a in axes) if axes is not None else None
    if rank != 4 or norm != [2, 3]:
        raise ctx.unsupported(f"axes {axes} on rank {rank}; only the spatial mean (axes [2, 3] of N,C,H,W) is supported")
    out = ctx.node.output[0]
    if int(ctx.attr("keepdims", 1)):
        return [ctx.op("GlobalAveragePool", [ctx.input(0)], [out])]
    mid = ctx.fresh(out)
    n, c = ctx.info(0).shape[:2]
    return [ctx.op("GlobalAveragePool", [ctx.input(0)], [mid]), ctx.op("Reshape", [mid], [out], shape=[n, c])]


# ---------------------------------------------------------------------------------------------------------
# Canonical ops: kind, output shapes, FLOPs
# ---------------------------------------------------------------------------------------------------------


def _conv_out(size: int, k: int, s: int, d: int, pb: int, pe: int, ceil: bool = False) -> int:
    eff = (k - 1) * d + 1
    num = size + pb + pe - eff
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + pb:  # last window must start inside the input or left pad
        out -= 1
    return out


def _shape_conv(op: OpSpec, ins: list[TensorInfo]) -> list[tuple]:
    n, c, h, w = ins[0].shape
    cout, cin_g = ins[1].shape[:2]
    g = op.attrs["group"]
    if c != cin_g * g:
        raise ShapeInferenceError(f"Conv {op.name!r}: input has {c} channels, weight expects {cin_g}×group {g}")
    (kh, kw), (sh, sw), (dh, dw) = op.attrs["kernel_shape"], op.attrs["strides"], op.attrs["dilations"]
    t, l, b, r = op.attrs["pads"]
    return [(n, cout, _conv_out(h, kh, sh, dh, t, b), _conv_out(w, kw, sw, dw, l, r))]


def _shape_gemm(op: OpSpec, ins: list[TensorInfo]) -> list[tuple]:
    a, b = ins[0].shape, ins[1].shape
    if len(a) != 2 or len(b) != 2:
        raise ShapeInferenceError(f"Gemm {op.name!r}: needs 2-D inputs, got {list(a)} and {list(b)}")
    m, k = a[::-1] if op.attrs["transA"] else a
    k2, n = b[::-1] if op.attrs["transB"] else b
    if k != k2:
        raise ShapeInferenceError(f"Gemm {op.name!r}: inner dimensions differ ({k} vs {k2})")
    return [(m, n)]


def _shape_matmul(op: OpSpec, ins: list[TensorInfo]) -> list[tuple]:
    a, b = list(ins[0].shape), list(ins[1].shape)
    bad = ShapeInferenceError(f"MatMul {op.name!r}: shapes {a} and {b} do not match")
    if not a or not b:
        raise bad
    a2 = [1] + a if len(a) == 1 else a
    b2 = b + [1] if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise bad
    try:
        batch = list(np.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2])))
    except ValueError:
        raise bad from None
    out = batch + ([a2[-2]] if len(a) > 1 else []) + ([b2[-1]] if len(b) > 1 else [])
    return [tuple(out)]


def _shape_pool(op: OpSpec, ins: list[TensorInfo]) -> list[tuple]:
    n, c, h, w = ins[0].shape
    (kh, kw), (sh, sw) = op.attrs["kernel_shape"], op.attrs["strides"]
    dh, dw = op.attrs.get("dilations", [1, 1])
    t, l, b, r = op.attrs["pads"]
    ceil = bool(op.attrs["ceil_mode"])
    return [(n, c, _conv_out(h, kh, sh, dh, t, b, ceil), _conv_out(w, kw, sw, dw, l, r, ceil))]


def _broadcast(op: OpSpec, ins: list[TensorInfo]) -> list[tuple]:
    try:
        return [tuple(int(d) for d in np.broadcast_shapes(*[i.shape for i in ins]))]
    except ValueError:
        raise ShapeInferenceError(f"{op.op_type} {op.name!r}: shapes {[list(i.shape) for i in ins]} do not broadcast") from None


def _shape_concat(op: OpSpec, ins: list[TensorInfo]) -> list[tuple]:
    ax = op.attrs["axis"]
    base = list(ins[0].shape)
    for i in ins[1:]:
        if len(i.shape) != len(base) or any(a != b for j, (a, b) in enumerate(zip(i.shape, base)) if j != ax):
            raise ShapeInferenceError(f"Concat {op.name!r}: shapes {[list(t.shape) for t in ins]} differ off axis {ax}")
    base[ax] = sum(i.shape[ax] for i in ins)
    return [tuple(base)]


def _same(op: OpSpec, ins: list[TensorInfo]) -> list[tuple]:
    return [ins[0].shape]


def _numel(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


@dataclass(frozen=True)
class CanonicalOp:
    kind: str
    shape: Callable[[OpSpec, list[TensorInfo]], list[tuple]]
    flops: Callable[[OpSpec, list[TensorInfo], list[tuple]], int]
    out_dtype: Callable[[OpSpec, list[TensorInfo]], str] = lambda op, ins: ins[0].dtype


def _conv_flops(op, ins, outs):
    cin_g, kh, kw = ins[1].shape[1:]
    return 2 * _numel(outs[0]) * cin_g * kh * kw


def _gemm_flops(op, ins, outs):
    a = ins[0].shape
    k = a[0] if op.attrs["transA"] else a[1]
    return 2 * _numel(outs[0]) * k


def _matmul_flops(op, ins, outs):
    return 2 * _numel(outs[0]) * ins[0].shape[-1]


def _per_out(factor: int):
    return lambda op, ins, outs: factor * _numel(outs[0])


CANONICAL: dict[str, CanonicalOp] = {
    "Conv": CanonicalOp("conv", _shape_conv, _conv_flops),
    "Gemm": CanonicalOp("gemm", _shape_gemm, _gemm_flops),
    "MatMul": CanonicalOp("gemm", _shape_matmul, _matmul_flops),
    # element-wise: FLOPs per output element (BN: a multiply and an add once folded to scale/shift)
    "BatchNormalization": CanonicalOp("elementwise", _same, _per_out(2)),
    "Relu": CanonicalOp("elementwise", _same, _per_out(1)),
    "LeakyRelu": CanonicalOp("elementwise", _same, _per_out(2)),
    "Clip": CanonicalOp("elementwise", _same, _per_out(2)),
    "Sigmoid": CanonicalOp("elementwise", _same, _per_out(4)),
    "Tanh": CanonicalOp("elementwise", _same, _per_out(4)),
    "Identity": CanonicalOp("reshape", _same, _per_out(0)),
    "Add": CanonicalOp("elementwise", _broadcast, _per_out(1)),
    "Sub": CanonicalOp("elementwise", _broadcast, _per_out(1)),
    "Mul": CanonicalOp("elementwise", _broadcast, _per_out(1)),
    "Div": CanonicalOp("elementwise", _broadcast, _per_out(1)),
    "Sum": CanonicalOp("elementwise", _broadcast, lambda op, ins, outs: (len(ins) - 1) * _numel(outs[0])),
    # softmax: max, subtract, exp, sum, divide per element
    "Softmax": CanonicalOp("softmax", _same, _per_out(5)),
    "LogSoftmax": CanonicalOp("softmax", _same, _per_out(5)),
    # pooling: one compare/add per window element per output
    "MaxPool": CanonicalOp("pool", _shape_pool, lambda op, ins, outs: _numel(outs[0]) * _numel(op.attrs["kernel_shape"])),
    "AveragePool": CanonicalOp("pool", _shape_pool, lambda op, ins, outs: _numel(outs[0]) * _numel(op.attrs["kernel_shape"])),
    "GlobalAveragePool": CanonicalOp("pool", lambda op, ins: [ins[0].shape[:2] + (1, 1)], lambda op, ins, outs: _numel(ins[0].shape)),
    "GlobalMaxPool": CanonicalOp("pool", lambda op, ins: [ins[0].shape[:2] + (1, 1)], lambda op, ins, outs: _numel(ins[0].shape)),
    # LRN: a square and an add per window element, then bias, pow and divide
    "LRN": CanonicalOp("lrn", _same, lambda op, ins, outs: _numel(outs[0]) * (2 * op.attrs["size"] + 3)),
    "Reshape": CanonicalOp("reshape", lambda op, ins: [tuple(op.attrs["shape"])], _per_out(0)),
    "Transpose": CanonicalOp("reshape", lambda op, ins: [tuple(ins[0].shape[p] for p in op.attrs["perm"])], _per_out(0)),
    "Concat": CanonicalOp("concat", _shape_concat, _per_out(0)),
    "Pad": CanonicalOp(
        "pad",
        lambda op, ins: [tuple(d + op.attrs["pads"][i] + op.attrs["pads"][i + len(ins[0].shape)] for i, d in enumerate(ins[0].shape))],
        _per_out(0),
    ),
    "Cast": CanonicalOp("reshape", _same, _per_out(0), out_dtype=lambda op, ins: op.attrs["to"]),
}


def infer_op(op: OpSpec, ins: list[TensorInfo]) -> list[TensorInfo]:
    """Output TensorInfos of canonical ``op`` given its input infos."""
    spec = CANONICAL[op.op_type]
    shapes = spec.shape(op, ins)
    for s in shapes:
        if any(int(d) <= 0 for d in s):
            raise ShapeInferenceError(f"{op.op_type} {op.name!r}: computed an empty output shape {list(s)} from inputs {[list(i.shape) for i in ins]}")
    dtype = spec.out_dtype(op, ins)
    return [TensorInfo(tuple(int(d) for d in s), dtype) for s in shapes]


def op_flops(op: OpSpec, ins: list[TensorInfo], outs: list[TensorInfo]) -> int:
    """FLOPs of one canonical op (2×MAC for Conv/Gemm/MatMul; see CANONICAL for the others)."""
    return int(CANONICAL[op.op_type].flops(op, ins, [o.shape for o in outs]))


def op_kind(op: OpSpec, ins: list[TensorInfo]) -> str:
    """Work kind of a canonical op (cost models key on it); depthwise convs are ``dwconv``."""
    kind = CANONICAL[op.op_type].kind
    if kind == "conv" and op.attrs["group"] > 1 and op.attrs["group"] == ins[0].shape[1]:
        return "dwconv"
    return kind
