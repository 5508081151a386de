"""Write a :class:`~deepx_opt.graphs.model_graph.ModelGraph` (dense or factorised) as a runnable ONNX model.

Every canonical op of ``docs/ir.md`` maps to one ONNX node at opset 17 (a legacy ``Softmax`` on a non-last
axis becomes ``Flatten → Softmax → Reshape``; ``Reshape``/``Clip``/``Pad`` attributes become constant
inputs). With ``dynamic_batch=True`` (the default when every graph input has batch 1) the leading dimension
of inputs and outputs is symbolic and a ``Reshape`` that keeps the batch uses ``0`` for it, so calibration
data runs in one call.

Also :class:`OrtEvaluator`, a thin onnxruntime session over such a model used by RLC's estimator to run
calibration data (onnxruntime is the project's reference executor).

Example
-------
>>> from deepx_opt.graphs.rlc_onnx import to_onnx      # doctest: +SKIP
>>> onnx.save(to_onnx(apply_ranks(model, {"fc1": 8})), "small.onnx")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from deepx_opt.errors import BackendUnavailableError, InputError, UnsupportedOpError
from deepx_opt.graphs.model_graph import ModelGraph, OpSpec

__all__ = ["OPSET", "to_onnx", "can_batch", "OrtEvaluator"]

#: Default-domain opset of the written models.
OPSET = 17
_BATCH = "N"


def can_batch(model: ModelGraph) -> bool:
    """True when every graph input has a leading dimension of 1 that can be made symbolic."""
    return all(len(t.shape) >= 1 and t.shape[0] == 1 for t in model.inputs.values())


def _elem(dtype: str) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def to_onnx(
    model: ModelGraph,
    *,
    dynamic_batch: bool | None = None,
    extra_outputs: Iterable[str] = (),
    weights_as_inputs: Iterable[str] = (),
    producer: str = "deepx_opt.rlc",
) -> onnx.ModelProto:
    """The ONNX model of ``model``'s layers (their ``ops``) in topological order.

    Parameters
    ----------
    model : ModelGraph
    dynamic_batch : bool, optional
        Make the leading dimension symbolic (default: :func:`can_batch`).
    extra_outputs : iterable of str
        Activation tensors to expose as additional graph outputs (e.g. a layer's inputs for calibration).
    weights_as_inputs : iterable of str
        Weights to make graph inputs (fed at run time) instead of initializers.
    producer : str
        ``producer_name`` of the model.

    Returns
    -------
    onnx.ModelProto
        Checked by ``onnx.checker``.
    """
    batch = can_batch(model) if dynamic_batch is None else bool(dynamic_batch)
    if batch and not can_batch(model):
        raise InputError(
            f"model {model.name!r}: dynamic_batch needs a leading dimension of 1 on every input; "
            f"inputs: {{{', '.join(f'{k}: {v.shape}' for k, v in model.inputs.items())}}}"
        )
    feed_w = list(dict.fromkeys(weights_as_inputs))
    nodes: list[onnx.NodeProto] = []
    consts: dict[str, np.ndarray] = {}
    used_w: list[str] = []
    for v in model.layers():
        for i, op in enumerate(model.dag.nodes[v]["ops"]):
            for t in op.inputs:
                if t and t in model.weights and t not in used_w:
                    used_w.append(t)
            nodes.extend(_node(model, op, f"{v}/{i}", consts, batch))

    def vi(name: str, shape, dtype: str):
        dims = list(shape)
        if batch and dims:
            dims[0] = _BATCH
        return helper.make_tensor_value_info(name, _elem(dtype), dims)

    g_inputs = [vi(k, t.shape, t.dtype) for k, t in model.inputs.items()]
    for w in feed_w:
        arr = model.weights[w]
        g_inputs.append(helper.make_tensor_value_info(w, _elem(str(arr.dtype)), list(arr.shape)))
    outs = list(model.outputs) + [t for t in dict.fromkeys(extra_outputs) if t not in model.outputs]
    g_outputs = [vi(t, model.tensors[t].shape, model.tensors[t].dtype) for t in outs]
    inits = [numpy_helper.from_array(np.asarray(model.weights[w]), w) for w in used_w if w not in feed_w]
    inits += [numpy_helper.from_array(a, k) for k, a in consts.items()]
    graph = helper.make_graph(nodes, model.name or "model", g_inputs, g_outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer)
    m.ir_version = min(m.ir_version, 9)
    onnx.checker.check_model(m)
    return m


def _const(consts: dict, name: str, arr: np.ndarray) -> str:
    consts[name] = np.asarray(arr)
    return name


def _batch_shape(model: ModelGraph, op: OpSpec, shape, batch: bool) -> list[int]:
    shape = [int(s) for s in shape]
    src = model.tensors.get(op.inputs[0])
    if batch and shape and shape[0] == 1 and src is not None and src.shape and src.shape[0] == 1:
        shape[0] = 0  # ONNX Reshape: 0 copies the input's dimension (the batch)
    return shape


def _node(model: ModelGraph, op: OpSpec, uid: str, consts: dict, batch: bool) -> list[onnx.NodeProto]:
    t, a, ins, outs = op.op_type, op.attrs, list(op.inputs), list(op.outputs)
    name = op.name or uid
    ints = lambda x: [int(v) for v in x]  # noqa: E731
    if t == "Conv":
        return [helper.make_node(
            "Conv", ins, outs, name=name, kernel_shape=ints(a["kernel_shape"]), strides=ints(a["strides"]),
            pads=ints(a["pads"]), dilations=ints(a["dilations"]), group=int(a["group"]))]
    if t == "Gemm":
        return [helper.make_node("Gemm", ins, outs, name=name, alpha=float(a.get("alpha", 1.0)),
                                 beta=float(a.get("beta", 1.0)), transA=int(a.get("transA", 0)),
                                 transB=int(a.get("transB", 0)))]
    if t in ("MatMul", "Relu", "Sigmoid", "Tanh", "Identity", "Add", "Sub", "Mul", "Div", "Sum",
             "GlobalAveragePool", "GlobalMaxPool"):
        return [helper.make_node(t, ins, outs, name=name)]
    if t == "BatchNormalization":
        return [helper.make_node(t, ins, outs, name=name, epsilon=float(a.get("epsilon", 1e-5)))]
    if t == "LeakyRelu":
        return [helper.make_node(t, ins, outs, name=name, alpha=float(a["alpha"]))]
    if t == "Clip":
        dt = model.tensors[ins[0]].dtype if ins[0] in model.tensors else "float32"
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
        cin = [ins[0],
               _const(consts, f"{uid}/min", np.array(lo, dtype=dt)) if np.isfinite(lo) else "",
               _const(consts, f"{uid}/max", np.array(hi, dtype=dt)) if np.isfinite(hi) else ""]
        while cin and cin[-1] == "":
            cin.pop()
        return [helper.make_node("Clip", cin, outs, name=name)]
    if t in ("Softmax", "LogSoftmax"):
        axis = int(a.get("axis", -1))
        shape = model.tensors[ins[0]].shape
        rank = len(shape)
        if axis < 0:
            axis += rank
        if not a.get("legacy", False) or axis == rank - 1:
            return [helper.make_node(t, ins, outs, name=name, axis=axis)]
        flat = f"{uid}/flat"
        soft = f"{uid}/soft"
        shp = _const(consts, f"{uid}/shape", np.array(_batch_shape(model, op, shape, batch), dtype=np.int64))
        return [helper.make_node("Flatten", ins, [flat], name=f"{name}/flatten", axis=axis),
                helper.make_node(t, [flat], [soft], name=name, axis=1),
                helper.make_node("Reshape", [soft, shp], outs, name=f"{name}/reshape")]
    if t == "MaxPool":
        return [helper.make_node(t, ins, outs, name=name, kernel_shape=ints(a["kernel_shape"]),
                                 strides=ints(a["strides"]), pads=ints(a["pads"]),
                                 dilations=ints(a.get("dilations", [1] * len(a["kernel_shape"]))),
                                 ceil_mode=int(a.get("ceil_mode", 0)))]
    if t == "AveragePool":
        return [helper.make_node(t, ins, outs, name=name, kernel_shape=ints(a["kernel_shape"]),
                                 strides=ints(a["strides"]), pads=ints(a["pads"]),
                                 ceil_mode=int(a.get("ceil_mode", 0)),
                                 count_include_pad=int(a.get("count_include_pad", 0)))]
    if t == "LRN":
        return [helper.make_node(t, ins, outs, name=name, size=int(a["size"]), alpha=float(a["alpha"]),
                                 beta=float(a["beta"]), bias=float(a["bias"]))]
    if t == "Reshape":
        shp = _const(consts, f"{uid}/shape", np.array(_batch_shape(model, op, a["shape"], batch), dtype=np.int64))
        return [helper.make_node("Reshape", [ins[0], shp], outs, name=name)]
    if t == "Transpose":
        return [helper.make_node(t, ins, outs, name=name, perm=ints(a["perm"]))]
    if t == "Concat":
        return [helper.make_node(t, ins, outs, name=name, axis=int(a["axis"]))]
    if t == "Pad":
        dt = model.tensors[ins[0]].dtype if ins[0] in model.tensors else "float32"
        pins = [ins[0], _const(consts, f"{uid}/pads", np.array(ints(a["pads"]), dtype=np.int64))]
        mode = str(a.get("mode", "constant"))
        if mode == "constant":
            pins.append(_const(consts, f"{uid}/value", np.array(float(a.get("value", 0.0)), dtype=dt)))
        return [helper.make_node("Pad", pins, outs, name=name, mode=mode)]
    if t == "Cast":
        return [helper.make_node("Cast", ins, outs, name=name, to=_elem(str(a["to"])))]
    raise UnsupportedOpError(
        f"op {t!r} (node {name!r}) cannot be written to ONNX by deepx_opt.graphs.rlc_onnx; supported: the "
        "canonical ops of docs/ir.md"
    )


class OrtEvaluator:
    """An onnxruntime session over :func:`to_onnx` of a model, for running calibration data.

    Parameters
    ----------
    model : ModelGraph
    extra_outputs : iterable of str
        Intermediate tensors to return as well.
    weights_as_inputs : iterable of str
        Weights that :meth:`run` may override.
    threads : int
        onnxruntime intra-op threads (1 by default: the machines are shared).

    Example
    -------
    >>> ev = OrtEvaluator(model)                            # doctest: +SKIP
    >>> logits = ev.run(x)[model.outputs[0]]                # doctest: +SKIP
    """

    def __init__(self, model: ModelGraph, *, extra_outputs: Iterable[str] = (),
                 weights_as_inputs: Iterable[str] = (), threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is in the dev extra
            raise BackendUnavailableError(
                f"RLC's accuracy estimator runs calibration data with onnxruntime, which is not installed ({exc}); "
                "install it with `pip install onnxruntime`"
            ) from exc
        self.model = model
        self.batch = can_batch(model)
        self.weights_as_inputs = list(dict.fromkeys(weights_as_inputs))
        self.outputs = list(model.outputs) + [t for t in dict.fromkeys(extra_outputs) if t not in model.outputs]
        proto = to_onnx(model, dynamic_batch=self.batch, extra_outputs=extra_outputs,
                        weights_as_inputs=self.weights_as_inputs)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def run(self, feeds: Mapping[str, np.ndarray], overrides: Mapping[str, np.ndarray] | None = None,
            outputs: Iterable[str] | None = None, max_batch: int = 4096) -> dict[str, np.ndarray]:
        """Run ``feeds`` (graph input → array with the batch first) and return the named outputs.

        ``overrides`` gives values of ``weights_as_inputs`` (the model's own weights otherwise).
        """
        names = list(outputs) if outputs is not None else self.outputs
        w = {k: np.ascontiguousarray(self.model.weights[k]) for k in self.weights_as_inputs}
        if overrides:
            for k, arr in overrides.items():
                if k not in w:
                    raise InputError(f"weight {k!r} is not overridable here; accepted: {self.weights_as_inputs}")
                w[k] = np.ascontiguousarray(arr, dtype=self.model.weights[k].dtype)
        n = next(iter(feeds.values())).shape[0]
        step = max_batch if self.batch else max(1, next(iter(self.model.inputs.values())).shape[0])
        parts: list[list[np.ndarray]] = []
        for s in range(0, n, step):
            f = {k: v[s: s + step] for k, v in feeds.items()}
            f.update(w)
            parts.append(self.session.run(names, f))
        return {k: np.concatenate([p[i] for p in parts], axis=0) for i, k in enumerate(names)}
